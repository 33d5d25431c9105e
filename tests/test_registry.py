"""The model registry: every registered model trains, scores and round-trips through model.pt, and a
model registered from outside the package (here, from this test) runs end to end like ours."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf
from torch import nn

from itsr.build import module_class
from itsr.config import ConfigError, validate
from itsr.data.images import Preprocessing
from itsr.detector import ThresholdDetector
from itsr.model_file import MODEL_FILE, load_model, save_model
from itsr.models import MODEL_CLASSES, AnomalyModel, register_model
from itsr.models.base import adam, weighted_mean
from itsr.predict import score_paths
from itsr.run import CONFIG_DIR, train_and_evaluate
from itsr.scoring import reconstruction_error
from tests.conftest import compose_cfg, tiny_overrides


@register_model
class LinearAutoencoder(AnomalyModel):
    """A model that lives outside itsr: a linear autoencoder, with the AE's config keys."""

    def __init__(self, input_dim: int, hidden, latent_dim: int, lr: float, betas):
        super().__init__()
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.encoder = nn.Linear(input_dim, latent_dim)
        self.decoder = nn.Sequential(nn.Linear(latent_dim, input_dim), nn.Sigmoid())

    def training_step(self, batch, batch_idx):
        x, w = batch["x"], batch["weight"]
        loss = weighted_mean(reconstruction_error(x, self(x)), w)
        optimizer = self.optimizers()
        optimizer.zero_grad()
        self.manual_backward(loss)
        optimizer.step()
        self.accumulate_losses({"reconstruction": loss})

    def configure_optimizers(self):
        return adam(self.parameters(), self.hparams.lr, self.hparams.betas)


def configs_of(cls: type) -> list[str]:
    """The conf/model/*.yaml files whose module is this class."""
    names = sorted(p.stem for p in (Path(CONFIG_DIR) / "model").glob("*.yaml"))
    return [
        n
        for n in names
        if "module" in compose_cfg([f"model={n}"]).model and module_class(compose_cfg([f"model={n}"])) is cls
    ]


PACKAGED = sorted(name for name, cls in MODEL_CLASSES.items() if cls.__module__.startswith("itsr."))


@pytest.mark.parametrize("name", PACKAGED)
def test_every_registered_model_has_a_config_trains_and_reloads_from_model_pt(name, toy_datamodule, tmp_path) -> None:
    cls = MODEL_CLASSES[name]
    configs = configs_of(cls)
    assert configs, f"{name} is registered but no conf/model/*.yaml builds it"
    cfg = compose_cfg([*tiny_overrides(configs[0], hidden=8)])
    options = OmegaConf.to_container(cfg.model.module, resolve=True)
    options.pop("_target_")
    module = cls(input_dim=toy_datamodule.input_dim, **options)
    before = module.score(toy_datamodule.train.x, 64)["rec_error"].mean()
    pl.Trainer(max_epochs=5, logger=False, enable_progress_bar=False, enable_checkpointing=False).fit(
        module, datamodule=toy_datamodule
    )
    scores = module.score(toy_datamodule.train.x, 64)
    assert scores["rec_error"].mean() < before  # training lowers the reconstruction error
    assert ("log_likelihood" in scores) == cls.has_likelihood
    detector = ThresholdDetector.fit(scores["rec_error"], scores.get("log_likelihood"), 90, 10)
    save_model(tmp_path / MODEL_FILE, module, configs[0], detector, Preprocessing((4, 4), "gray"))
    loaded, loaded_detector, payload = load_model(tmp_path / MODEL_FILE)
    assert payload["module"] == name and type(loaded) is cls  # found again through the registry
    assert torch.equal(loaded.score(toy_datamodule.train.x, 64)["rec_error"], scores["rec_error"])
    assert loaded_detector.thresholds == detector.thresholds


def test_a_model_registered_outside_the_package_runs_and_scores_end_to_end(tmp_path) -> None:
    overrides = tiny_overrides("ae") + [
        "model.module._target_=tests.test_registry.LinearAutoencoder",
        "dataset.epochs.ae=2",
        "checkpoint.every_n_epochs=1",
    ]
    metrics = train_and_evaluate(compose_cfg(overrides), tmp_path / "run")
    assert metrics["metrics"]["observed"]["rec"]["auroc"] > 0.5  # 0 vs 2 from a linear code: better than chance
    assert json.loads((tmp_path / "run" / "metrics.json").read_text()) == metrics
    module, detector, payload = load_model(tmp_path / "run" / MODEL_FILE)
    assert payload["module"] == "LinearAutoencoder" and isinstance(module, LinearAutoencoder)
    assert detector.criteria == ("rec",)

    from PIL import Image

    images = tmp_path / "images"
    images.mkdir()
    for i, value in enumerate((0, 128, 255)):
        Image.new("L", (28, 28), value).save(images / f"{i}.png")
    result = score_paths(tmp_path / "run", [images])
    assert len(result["paths"]) == 3 and result["criterion"] == "rec"


def test_an_unregistered_module_is_refused_at_start_naming_the_fix() -> None:
    cfg = compose_cfg([*tiny_overrides("ae"), "model.module._target_=torch.nn.Linear"])
    with pytest.raises(
        ConfigError, match=r"model.module._target_=torch.nn.Linear: not a registered model.*@register_model"
    ):
        validate(cfg)


def test_a_model_file_of_an_unknown_class_is_refused_naming_the_known_ones(tmp_path) -> None:
    torch.save(
        {
            "format": 1,
            "model": "x",
            "module": "Nope",
            "hparams": {},
            "state_dict": {},
            "thresholds": {},
            "preprocessing": {},
        },
        tmp_path / MODEL_FILE,
    )
    from itsr.model_file import ModelFileError

    with pytest.raises(ModelFileError, match="no registered model 'Nope'; known: .*AutoencoderModule"):
        load_model(tmp_path / MODEL_FILE)


def test_a_model_file_written_before_the_registry_still_loads(toy_datamodule, tmp_path) -> None:
    """Files from before the registry say "ae" or "aae" where the class name now stands."""
    from itsr.models import AdversarialAutoencoderModule

    cfg = compose_cfg(tiny_overrides("aae", hidden=8))
    options = OmegaConf.to_container(cfg.model.module, resolve=True)
    options.pop("_target_")
    module = AdversarialAutoencoderModule(input_dim=toy_datamodule.input_dim, **options)
    scores = module.score(toy_datamodule.train.x, 64)
    detector = ThresholdDetector.fit(scores["rec_error"], scores["log_likelihood"], 90, 10)
    save_model(tmp_path / MODEL_FILE, module, "aae", detector, Preprocessing((4, 4), "gray"))
    payload = torch.load(tmp_path / MODEL_FILE, weights_only=True)
    payload["module"] = "aae"  # as the format-1 files before the registry wrote it
    torch.save(payload, tmp_path / MODEL_FILE)
    loaded, _, _ = load_model(tmp_path / MODEL_FILE)
    assert type(loaded) is AdversarialAutoencoderModule
    assert torch.equal(loaded.score(toy_datamodule.train.x, 64)["log_likelihood"], scores["log_likelihood"])


def test_refining_by_batches_is_refused_for_a_model_that_does_not_trim_its_batches() -> None:
    """by=batch works through AnomalyModel.batch_weights; a registered model whose training_step weighs by
    batch["weight"] directly would train untrimmed under the label ae+itsr-batch: refused at start."""
    linear = [*tiny_overrides("ae"), "model.module._target_=tests.test_registry.LinearAutoencoder", "refine=itsr"]
    with pytest.raises(ConfigError, match=r"model.refinement.by=batch: LinearAutoencoder .*batch_weights"):
        validate(compose_cfg([*linear, "model.refinement.by=batch"]))
    validate(compose_cfg([*linear, "model.refinement.by=score"]))  # the other ways need no such step
    validate(compose_cfg([*tiny_overrides("ae"), "refine=itsr", "model.refinement.by=batch"]))

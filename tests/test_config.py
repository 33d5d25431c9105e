"""Every config option composes and validates; bad values fail at start-up naming the key."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from itsr.config import ConfigError, validate
from itsr.run import CONFIG_DIR
from tests.conftest import compose_cfg

GROUPS = {
    g: sorted(p.stem for p in (Path(CONFIG_DIR) / g).glob("*.yaml"))
    for g in ("dataset", "model", "trainer", "logger", "experiment")
}


@pytest.mark.parametrize(("dataset", "model"), list(itertools.product(GROUPS["dataset"], GROUPS["model"])))
def test_every_dataset_and_model_composes_with_paper_defaults(dataset: str, model: str) -> None:
    cfg = compose_cfg(
        [f"dataset={dataset}", f"model={model}"] + (["dataset.root=/images"] if dataset == "folder" else [])
    )
    validate(cfg)
    OmegaConf.to_container(cfg.model, resolve=True)  # every interpolation resolves
    assert cfg.alpha == 0.05 and cfg.scoring.rec_percentile == 90 and cfg.scoring.lik_percentile == 10


@pytest.mark.parametrize("group", ["trainer", "logger", "experiment"])
def test_every_other_option_composes(group: str) -> None:
    for option in GROUPS[group]:
        validate(compose_cfg([f"{group}={option}"]))


def test_paper_schedules_are_the_defaults() -> None:
    mnist_itsr = compose_cfg(["model=itsr", "dataset=mnist"]).model.refinement
    assert (mnist_itsr.pretrain_epochs, mnist_itsr.rounds, mnist_itsr.round_epochs, mnist_itsr.retrain_epochs) == (
        500,
        10,
        100,
        1000,
    )
    assert mnist_itsr.nu == 0.02 and mnist_itsr.retrain_percentile == 80 and mnist_itsr.kernel == "rbf"
    assert compose_cfg(["model=itsr", "dataset=fmnist"]).model.refinement.retrain_epochs == 500
    assert compose_cfg(["model=ae", "dataset=mnist"]).model.max_epochs == 4000
    assert compose_cfg(["model=ae", "dataset=fmnist"]).model.max_epochs == 10000
    assert compose_cfg(["model=aae"]).model.max_epochs == 1000
    aae = compose_cfg(["model=aae"]).model.module
    assert aae.latent_dim == 2 and list(aae.hidden) == [1000, 1000] and list(aae.disc_hidden) == [1000, 1000]
    assert compose_cfg(["model=ae"]).model.module.latent_dim == 32


def test_named_settings_and_overridable_classes() -> None:
    boot = compose_cfg(["dataset=fmnist_boot"]).dataset
    assert (boot.name, boot.normal_class, boot.anomaly_class) == ("fmnist", 0, 9)
    pull = compose_cfg(["dataset=fmnist"]).dataset
    assert (pull.normal_class, pull.anomaly_class) == (0, 2)
    custom = compose_cfg(["dataset=mnist", "dataset.normal_class=7", "dataset.anomaly_class=1"])
    validate(custom)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("alpha=0.5", "alpha must lie in"),
        ("alpha=-0.01", "alpha must lie in"),
        ("dataset.anomaly_class=0", "must differ"),
        ("dataset.normal_class=12", "dataset.normal_class must be a class index in 0..9"),
        ("dataset.name=cifar", "dataset.name must be one of"),
        ("batch_size=0", "batch_size must be a positive integer"),
        ("flush_denormal=maybe", "flush_denormal must be true or false, got 'maybe'"),
        ("cpu_bf16_matmul=fast", "cpu_bf16_matmul must be one of"),
        ("data_on_device=1", "data_on_device must be true or false, got 1"),
        ("model=ae model.max_epochs=0", "model.max_epochs must be a positive integer"),
        ("model.refinement.rounds=0", "model.refinement.rounds must be a positive integer"),
        ("model.refinement.nu=0", "model.refinement.nu must lie in"),
        ("model.refinement.w_anomaly=0.5", "model.refinement.w_anomaly must be < 0"),
        ("scoring.rec_percentile=101", "scoring.rec_percentile"),
        ("scoring.threshold_population=weighted", "scoring.threshold_population must be one of"),
        ("dataset=folder", "dataset.root is required"),
        ("seed=-1", r"seed must be an integer in 0\.\.4294967295, got -1"),
        ("seed=2.5", "seed must be an integer"),
        ("dataset.normal_class=true", "dataset.normal_class must be a class index in 0..9 .*got True"),
        ("model=aae batch_size=1", "batch_size must be at least 2 for model=aae"),
        ("dataset=folder dataset.root=/x dataset.color=cmyk", "dataset.color must be one of"),
        ("dataset=folder dataset.root=/x dataset.size=[28]", r"dataset.size must be \[height, width\]"),
        ("model=iforest +model.detector.n_trees=5", "model.detector.n_trees: not an option of pyod.models.iforest"),
        ("model=knn alpha=0", r"model.detector.contamination must lie in \(0.0, 0.5\] \(PyOD\), got 0;"),
        ("model=ecod model.detector._target_=pyod.models.nope.Nope", "model.detector._target_='pyod.models.nope.Nope'"),
    ],
)
def test_bad_values_fail_naming_the_key(override: str, message: str) -> None:
    cfg = compose_cfg(override.split())
    with pytest.raises(ConfigError, match=message):
        validate(cfg)

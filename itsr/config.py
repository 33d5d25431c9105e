"""Start-up checks of a composed config: a wrong value fails here, before any data or training."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from itsr.bf16_matmul import CHOICES as CPU_BF16_MATMUL_CHOICES
from itsr.build import build_callbacks, build_datamodule, is_peer_config, module_class, schedule_epochs
from itsr.errors import ConfigError, OptionError, check_choice, check_positive_int
from itsr.evaluation import THRESHOLD_POPULATIONS
from itsr.models.registry import MODEL_CLASSES
from itsr.scoring import check_percentile
from itsr.settings import PAPER_SETTINGS, register_setting_resolver, setting_name  # noqa: F401 (re-exported)

PYOD_CONTAMINATION = (0.0, 0.5)  # PyOD's BaseDetector accepts contamination in (0, 0.5]
SEED_MAX = 2**32 - 1  # numpy's and Lightning's seed range is [0, 2**32 - 1]


register_setting_resolver()  # Hydra resolves dataset.setting while composing


def _positive_int(cfg: DictConfig, key: str) -> None:
    try:
        check_positive_int(key, OmegaConf.select(cfg, key))
    except OptionError as error:
        raise ConfigError(str(error)) from error


def validate(cfg: DictConfig) -> None:
    """The run's own keys are checked here; every component checks its arguments as it is built, and
    building the light ones (the DataModule, the callbacks) here makes those checks run at start-up."""
    if type(cfg.seed) is not int or not 0 <= cfg.seed <= SEED_MAX:
        raise ConfigError(f"seed must be an integer in 0..{SEED_MAX}, got {cfg.seed!r}")
    refinement = cfg.model.get("refinement")
    if refinement is not None and "_target_" not in refinement:  # conf/by/ set `by` with nothing to refine
        by, name = refinement.get("by"), cfg.model.name
        raise ConfigError(
            f"by={by}: model={name} runs without refinement, so there are no candidates to find; add "
            f"refine=itsr (e.g. `model={name} refine=itsr by={by}`), or drop by="
        )
    for key in ("batch_size", "score_batch_size", "checkpoint.every_n_epochs"):
        _positive_int(cfg, key)
    if cfg.threads is not None:
        _positive_int(cfg, "threads")
    for key in ("flush_denormal", "data_on_device"):
        if not isinstance(cfg[key], bool):
            raise ConfigError(f"{key} must be true or false, got {cfg[key]!r}")
    try:
        check_choice("cpu_bf16_matmul", cfg.cpu_bf16_matmul, CPU_BF16_MATMUL_CHOICES)
    except OptionError as error:
        raise ConfigError(str(error)) from error
    try:
        for key in ("rec_percentile", "lik_percentile"):
            check_percentile(key, cfg.scoring[key])
        check_choice("threshold_population", cfg.scoring.threshold_population, THRESHOLD_POPULATIONS)
    except OptionError as error:
        raise ConfigError(f"scoring.{error}") from error
    build_datamodule(cfg)  # no data is read: the constructor checks its arguments
    if is_peer_config(cfg):
        _validate_peer(cfg)
        return
    if cfg.model.get("module") is None:
        raise ConfigError(f"model={cfg.model.name}: model.module (a LightningModule) or model.detector is required")
    cls = module_class(cfg)
    if cls not in MODEL_CLASSES.values():
        raise ConfigError(
            f"model.module._target_={cfg.model.module._target_}: not a registered model, so its model.pt could "
            "not be loaded again; subclass itsr.models.AnomalyModel and decorate it with @register_model"
        )
    min_batch = cls.min_batch_size
    if cfg.batch_size < min_batch:
        raise ConfigError(
            f"batch_size must be at least {min_batch} for model={cfg.model.name} (its encoder uses batch norm, "
            f"which cannot train on one sample); got {cfg.batch_size}"
        )
    refinement = cfg.model.get("refinement")
    if refinement is not None and refinement.get("by") == "batch" and not cls.batch_refinement:
        raise ConfigError(
            f"model.refinement.by=batch: {cls.__name__} (model={cfg.model.name}) does not take its training "
            "weights from AnomalyModel.batch_weights, so no batch would be trimmed; use "
            "model.refinement.by=svm or score, or call batch_weights in its training_step and set "
            "batch_refinement = True"
        )
    if schedule_epochs(build_callbacks(cfg), None) is None:
        _positive_int(cfg, "model.max_epochs")


def _validate_peer(cfg: DictConfig) -> None:
    """A PyOD peer: its class exists, every key of model.detector is one of its options, and its
    contamination is one PyOD accepts; values PyOD checks itself fail at fit, naming the model."""
    from itsr.peers.detector import PeerError, constructor_options, detector_options

    if cfg.model.get("detector") is None or "_target_" not in cfg.model.detector:
        raise ConfigError(f"model={cfg.model.name}: model.detector._target_ is required (a PyOD class)")
    target, options = detector_options(cfg.model.detector)
    try:
        allowed = constructor_options(target)
    except PeerError as error:
        raise ConfigError(str(error)) from error
    unknown = sorted(set(options) - set(allowed)) if allowed is not None else []
    if unknown:
        raise ConfigError(
            f"model.detector.{unknown[0]}: not an option of {target} (model={cfg.model.name}); "
            f"its options: {', '.join(allowed)}"
        )
    refinement = cfg.model.get("refinement")
    if refinement is not None and refinement.get("by") in ("svm", "batch"):
        why = (
            "has no latent codes for a one-class SVM" if refinement.by == "svm" else "is fitted at once, not in batches"
        )
        raise ConfigError(
            f"model.refinement.by={refinement.by}: model={cfg.model.name} {why}; "
            "use model.refinement.by=score (the top nu of its own training scores)"
        )
    low, high = PYOD_CONTAMINATION
    contamination = options.get("contamination")
    if contamination is not None and (not isinstance(contamination, (int, float)) or not low < contamination <= high):
        raise ConfigError(
            f"model.detector.contamination must lie in ({low}, {high}] (PyOD), got {contamination!r}; it "
            "follows alpha, so with alpha=0 set it, e.g. model.detector.contamination=0.05"
        )

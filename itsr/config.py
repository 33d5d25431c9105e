"""Start-up checks of a composed config: a wrong value fails here, before any data or training."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from itsr.evaluation import THRESHOLD_POPULATIONS
from itsr.peers import PEERS, is_peer

KNOWN_DATASETS = ("mnist", "fmnist", "folder")
KNOWN_MODELS = ("ae", "aae", "itsr", *PEERS)
ALPHA_RANGE = "[0, 0.5)"
PYOD_CONTAMINATION = (0.0, 0.5)  # PyOD's BaseDetector accepts contamination in (0, 0.5]


class ConfigError(ValueError):
    """A config value is out of range; the message names the key and what is allowed."""


def _positive_int(cfg: DictConfig, key: str) -> None:
    value = cfg
    for part in key.split("."):
        value = value[part]
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{key} must be a positive integer, got {value!r}")


def validate(cfg: DictConfig) -> None:
    ds = cfg.dataset
    if ds.name not in KNOWN_DATASETS:
        raise ConfigError(f"dataset.name must be one of {KNOWN_DATASETS}, got {ds.name!r}")
    if ds.name == "folder":
        _validate_folder(cfg)
    else:
        _validate_benchmark(cfg)
    _validate_training(cfg)


def _validate_folder(cfg: DictConfig) -> None:
    ds = cfg.dataset
    if OmegaConf.is_missing(ds, "root") or not ds.root:
        raise ConfigError("dataset.root is required with dataset=folder: dataset.root=/path/to/your/images")
    if ds.color not in ("gray", "rgb"):
        raise ConfigError(f"dataset.color must be gray or rgb, got {ds.color!r}")
    if len(ds.size) != 2 or any(not isinstance(v, int) or v < 1 for v in ds.size):
        raise ConfigError(f"dataset.size must be [height, width] of positive integers, got {list(ds.size)}")


def _validate_benchmark(cfg: DictConfig) -> None:
    ds = cfg.dataset
    for key in ("normal_class", "anomaly_class"):
        if not isinstance(ds[key], int) or not 0 <= ds[key] < ds.num_classes:
            raise ConfigError(
                f"dataset.{key} must be a class index in 0..{ds.num_classes - 1} "
                f"({', '.join(ds.class_names)}), got {ds[key]!r}"
            )
    if ds.normal_class == ds.anomaly_class:
        raise ConfigError(f"dataset.normal_class and dataset.anomaly_class must differ, both are {ds.normal_class}")
    if not isinstance(cfg.alpha, (int, float)) or not 0.0 <= cfg.alpha < 0.5:
        raise ConfigError(f"alpha must lie in {ALPHA_RANGE}, got {cfg.alpha!r}")


def _validate_training(cfg: DictConfig) -> None:
    if cfg.model.name not in KNOWN_MODELS:
        raise ConfigError(f"model.name must be one of {KNOWN_MODELS}, got {cfg.model.name!r}")
    for key in ("batch_size", "score_batch_size", "curves.every_n_epochs", "checkpoint.every_n_epochs"):
        _positive_int(cfg, key)
    if is_peer(cfg.model.name):
        _validate_peer(cfg)
    elif cfg.model.get("refinement") is None:
        _positive_int(cfg, "model.max_epochs")
    else:
        for key in ("pretrain_epochs", "rounds", "round_epochs", "retrain_epochs"):
            _positive_int(cfg, f"model.refinement.{key}")
        ref = cfg.model.refinement
        if not 0.0 < ref.nu <= 1.0:
            raise ConfigError(f"model.refinement.nu must lie in (0, 1], got {ref.nu}")
        if ref.w_anomaly >= 0:
            raise ConfigError(f"model.refinement.w_anomaly must be < 0 (Sec. 4.2), got {ref.w_anomaly}")
    for key in ("rec_percentile", "lik_percentile"):
        if not 0.0 <= cfg.scoring[key] <= 100.0:
            raise ConfigError(f"scoring.{key} must lie in [0, 100], got {cfg.scoring[key]}")
    if cfg.scoring.threshold_population not in THRESHOLD_POPULATIONS:
        raise ConfigError(
            f"scoring.threshold_population must be one of {THRESHOLD_POPULATIONS}, "
            f"got {cfg.scoring.threshold_population!r}"
        )
    if cfg.threads is not None:
        _positive_int(cfg, "threads")


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
    low, high = PYOD_CONTAMINATION
    contamination = options.get("contamination")
    if contamination is not None and (not isinstance(contamination, (int, float)) or not low < contamination <= high):
        raise ConfigError(
            f"model.detector.contamination must lie in ({low}, {high}] (PyOD), got {contamination!r}; it "
            "follows alpha, so with alpha=0 set it, e.g. model.detector.contamination=0.05"
        )

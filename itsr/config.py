"""Start-up checks of a composed config: a wrong value fails here, before any data or training."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from itsr.errors import UserError
from itsr.evaluation import THRESHOLD_POPULATIONS
from itsr.peers import PEERS, is_peer

KNOWN_DATASETS = ("mnist", "fmnist", "folder")
KNOWN_MODELS = ("ae", "aae", "itsr", *PEERS)
ALPHA_RANGE = "[0, 0.5)"
PYOD_CONTAMINATION = (0.0, 0.5)  # PyOD's BaseDetector accepts contamination in (0, 0.5]
SEED_MAX = 2**32 - 1  # numpy's and Lightning's seed range is [0, 2**32 - 1]
BATCH_NORM_MODELS = ("aae", "itsr")  # encoders with batch norm (Sec. 5): a batch of one has no variance
BATCH_NORM_MIN_BATCH = 2


# The paper's settings by (dataset, normal class, anomaly class); reports set them beside the paper.
PAPER_SETTINGS = {
    ("mnist", 0, 2): "mnist_0v2",
    ("fmnist", 0, 2): "fmnist_tshirt_v_pullover",
    ("fmnist", 0, 9): "fmnist_tshirt_v_boot",
}
SETTING_RESOLVER = "itsr.setting"


class ConfigError(ValueError, UserError):
    """A config value is out of range; the message names the key and what is allowed."""


def setting_name(dataset: str, normal_class, anomaly_class) -> str:
    """The setting's key follows the classes, so a class override is never reported (or averaged)
    as the paper's setting: the paper's name for its pairs, else e.g. `mnist_1v7`. Total on any
    input, since Hydra resolves it for the run directory before `validate` can refuse a bad class."""
    key = (dataset, normal_class, anomaly_class)
    if all(type(v) is int for v in key[1:]) and key in PAPER_SETTINGS:
        return PAPER_SETTINGS[key]
    return f"{dataset}_{normal_class}v{anomaly_class}"


if not OmegaConf.has_resolver(SETTING_RESOLVER):
    OmegaConf.register_new_resolver(SETTING_RESOLVER, setting_name)


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
        if type(ds[key]) is not int or not 0 <= ds[key] < ds.num_classes:  # bool is an int: refuse true
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
    if type(cfg.seed) is not int or not 0 <= cfg.seed <= SEED_MAX:
        raise ConfigError(f"seed must be an integer in 0..{SEED_MAX}, got {cfg.seed!r}")
    for key in ("batch_size", "score_batch_size", "curves.every_n_epochs", "checkpoint.every_n_epochs"):
        _positive_int(cfg, key)
    if cfg.model.name in BATCH_NORM_MODELS and cfg.batch_size < BATCH_NORM_MIN_BATCH:
        raise ConfigError(
            f"batch_size must be at least {BATCH_NORM_MIN_BATCH} for model={cfg.model.name}: its encoder uses batch "
            f"norm, which cannot train on one sample; got {cfg.batch_size}"
        )
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

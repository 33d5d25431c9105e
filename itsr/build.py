"""Construction from the config: every component is a `_target_` entry built with hydra.utils.instantiate.

conf/dataset/<name>.yaml names its DataModule (`dataset.datamodule`), conf/model/<name>.yaml its
LightningModule (`model.module`) and any callbacks of its own (`model.callbacks`, e.g. ITSR's
refinement), conf/config.yaml the callbacks of every run (`callbacks`). A new dataset or model is a
module plus a YAML file; nothing here lists them. Each class checks its own arguments (raising
itsr.errors.OptionError); this module turns such a refusal into a ConfigError that names the key the
user sets, following interpolations (`alpha: ${alpha}` reports `alpha`, not `dataset.datamodule.alpha`).
"""

from __future__ import annotations

import re

from hydra.errors import InstantiationException
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

from itsr.errors import ConfigError, OptionError
from itsr.hooks import participants

INTERPOLATION = re.compile(r"^\$\{([\w.]+)\}$")  # a value that is exactly one reference to another key
MISSING_KEY = re.compile(r"Missing mandatory value: ([\w.]+)")


def _raw_source(raw, option: str, key: str) -> str | None:
    """The config key an option's value comes from: the referenced key when the value is `${key}`,
    else the option's own full key; searched depth-first in the unresolved node."""
    if not isinstance(raw, dict):
        return None
    if option in raw:
        value = raw[option]
        match = INTERPOLATION.match(value) if isinstance(value, str) else None
        return match.group(1) if match else f"{key}.{option}"
    for child, value in raw.items():
        found = _raw_source(value, option, f"{key}.{child}")
        if found is not None:
            return found
    return None


def build(node: DictConfig, key: str, **kwargs):
    """instantiate(node), with a refused argument reported by the config key it came from."""
    key = node._get_full_key(None) or key  # an interpolated node (model.callbacks.refinement) by its own key
    try:
        return instantiate(node, _convert_="all", **kwargs)
    except InstantiationException as error:
        cause = error.__cause__
        if isinstance(cause, OptionError):
            raw = OmegaConf.to_container(node, resolve=False)
            source = _raw_source(raw, cause.option, key) or f"{key}.{cause.option}"
            raise ConfigError(f"{source} {cause.rule}, got {cause.value!r}") from cause
        if isinstance(cause, (ValueError, TypeError)):
            raise ConfigError(f"{key}: {cause}") from cause
        raise
    except MissingMandatoryValue as error:
        match = MISSING_KEY.search(str(error))
        missing = match.group(1) if match else key
        raw = OmegaConf.to_container(node._get_root(), resolve=False)
        for part in missing.split("."):
            raw = raw.get(part) if isinstance(raw, dict) else None
        reference = INTERPOLATION.match(raw) if isinstance(raw, str) else None
        missing = reference.group(1) if reference else missing  # `root: ${dataset.root}` is dataset.root
        raise ConfigError(f"{missing} is required (it is ??? in the config): set it, e.g. {missing}=...") from error


def build_datamodule(cfg: DictConfig):
    """The dataset's DataModule, with the scoring's hold-out slice (scoring.holdout_fraction) set aside."""
    dm = build(cfg.dataset.datamodule, "dataset.datamodule")
    fraction = cfg.scoring.get("holdout_fraction", 0.0)
    try:
        dm.hold_out(fraction)
    except OptionError as error:
        raise ConfigError(f"scoring.holdout_fraction {error.rule}, got {error.value!r}") from error
    return dm


def build_callbacks(cfg: DictConfig) -> list:
    """The model's own callbacks (ITSR's refinement) first, then the run's (curves, checkpoints)."""
    out = []
    for group, key in ((cfg.model.get("callbacks"), "model.callbacks"), (cfg.get("callbacks"), "callbacks")):
        for name, node in (group or {}).items():
            if node is not None:
                out.append(build(node, f"{key}.{name}"))
    return out


def build_module(cfg: DictConfig, input_dim: int):
    return build(cfg.model.module, "model.module", input_dim=input_dim)


def module_class(cfg: DictConfig) -> type:
    """The class model.module names, without building it (for rules that need only its traits)."""
    try:
        return get_class(cfg.model.module._target_)
    except Exception as error:  # not importable, or not a class
        raise ConfigError(f"model.module._target_={cfg.model.module._target_!r}: {error}") from error


def is_peer_config(cfg: DictConfig) -> bool:
    """A PyOD peer is a model config with a `detector` instead of a `module` (conf/model/iforest.yaml)."""
    return cfg.model.get("detector") is not None


def schedule_epochs(callbacks: list, default: int | None) -> int | None:
    """The training length: a callback that owns a schedule (ITSR's refinement) says it, else the model's."""
    return next((c.total_epochs for c in participants(callbacks)), default)

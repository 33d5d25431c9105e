"""Experiment loggers: the CSV default, and W&B with one run per Hydra job, grouped per sweep."""

from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)


def default_group(run_dir: Path) -> str:
    """A multirun's jobs share their sweep directory as group; a single run is its own group."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        hydra_cfg = HydraConfig.get()
        if hydra_cfg.mode == RunMode.MULTIRUN:
            return str(hydra_cfg.sweep.dir)
    except ValueError:  # not started by Hydra (tests, library use)
        pass
    return run_dir.name


def build_logger(cfg: DictConfig, run_dir: Path):
    overrides: dict = {"save_dir": str(run_dir)}
    if "group" in cfg.logger and cfg.logger.group is None:
        overrides["group"] = default_group(run_dir)
    logger = instantiate(cfg.logger, **overrides)
    try:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    except Exception as error:  # an unresolvable key must not stop training; say which
        log.warning("config not logged: %s", error)
    return logger


def _flatten(prefix: str, obj) -> dict[str, float]:
    if isinstance(obj, dict):
        out = {}
        for key, value in obj.items():
            out |= _flatten(f"{prefix}/{key}" if prefix else str(key), value)
        return out
    return {prefix: float(obj)} if isinstance(obj, (int, float)) and not isinstance(obj, bool) else {}


def log_results(logger, metrics: dict, figures: list[Path]) -> None:
    """Final test metrics per split and criterion, and the run's figures where the logger takes images."""
    logger.log_metrics(_flatten("test", metrics["metrics"]) | _flatten("thresholds", metrics["thresholds"]))
    if hasattr(logger, "log_image"):
        for path in figures:
            if path.is_file():
                logger.log_image(key=f"figures/{path.stem}", images=[str(path)])


@contextmanager
def finishing(logger):
    """Close a W&B run however the job ends, so the next job of a multirun starts its own run
    instead of writing into this one; a failed job's run is marked failed."""
    from pytorch_lightning.loggers import WandbLogger

    failed = True
    try:
        yield
        failed = False
    finally:
        if isinstance(logger, WandbLogger):
            import wandb

            wandb.finish(exit_code=1 if failed else 0)

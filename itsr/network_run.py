"""Our networks (AE, AAE, ITSR) in the run pipeline: a LightningModule trained by a Trainer, with the
config's callbacks (ITSR's refinement, curves, checkpoints), resumable from the run directory.

Implements itsr.interface.RunModel; the pipeline itself is itsr.run.train_and_evaluate.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf

from itsr.bf16_matmul import bf16_matmuls, compile_conflict, route, slow_route_warning
from itsr.build import build_callbacks, build_module, schedule_epochs
from itsr.errors import ConfigError
from itsr.evaluation import error_by_group
from itsr.figures import write_run_figures
from itsr.hooks import participants
from itsr.model_file import MODEL_FILE, save_model
from itsr.progress import RunProgress
from itsr.provenance import cpu_bf16_native
from itsr.results import callback_score_columns, run_identity
from itsr.runtime import AtomicCheckpointIO, RecordConfig, check_resume, fit_stopped, resolve_ckpt_path, slurm_plugins

log = logging.getLogger(__name__)


class NetworkRun:
    """One network's run; `module` exists once fit() has built it for the data's input size."""

    score_names = ("rec_error", "log_likelihood")
    restart_refusal = "ckpt_path=null would start afresh over it"

    def __init__(self, cfg: DictConfig, config: dict, extra_callbacks: tuple = ()):
        self.cfg = cfg
        self.callbacks = [*build_callbacks(cfg), *extra_callbacks, RecordConfig(config)]
        self.max_epochs = schedule_epochs(self.callbacks, cfg.model.max_epochs)
        self.precision = str(cfg.trainer.precision)
        self.device = "cpu"
        self.bf16_matmul = None  # how bf16 matrix products ran on the CPU (itsr.bf16_matmul.route), once fit
        self.module = None

    def checkpoint(self, run_dir: Path, config: dict) -> str | None:
        ckpt_path = resolve_ckpt_path(self.cfg.ckpt_path, run_dir)
        if ckpt_path is not None:
            check_resume(Path(ckpt_path), config)
        return ckpt_path

    def fit(self, dm, run_dir: Path, logger, ckpt_path: str | None) -> None:
        cfg = self.cfg
        if cfg.data_on_device and cfg.trainer.accelerator in ("gpu", "cuda") and torch.cuda.is_available():
            dm.place_on("cuda")
        self.module = build_module(cfg, dm.input_dim)
        if cfg.compile.enabled:
            self.module.compile_networks(**OmegaConf.to_container(cfg.compile.options, resolve=True))
        callbacks = list(self.callbacks)
        if cfg.progress.enabled:  # first: it clears its terminal line before the others' epoch-end hooks log
            schedule = next((c.schedule for c in participants(callbacks)), None)
            callbacks.insert(0, RunProgress(cfg.progress.every_n_epochs, schedule))
        trainer = pl.Trainer(
            **OmegaConf.to_container(cfg.trainer, resolve=True),
            plugins=[AtomicCheckpointIO(), *(slurm_plugins() or [])],
            max_epochs=self.max_epochs,
            callbacks=callbacks,
            logger=logger,
            default_root_dir=str(run_dir),
        )
        # the device the Trainer resolved (accelerator=auto included) decides how bf16 products run
        native = cpu_bf16_native()
        self.bf16_matmul = route(cfg.cpu_bf16_matmul, self.precision, trainer.strategy.root_device.type, native)
        conflict = compile_conflict(self.bf16_matmul, cfg.compile.enabled)
        if conflict:
            raise ConfigError(conflict)
        slow = slow_route_warning(self.bf16_matmul, native)
        if slow:
            log.warning(slow)
        # Lightning stops its loop on SIGTERM; fit_stopped turns that into RunStopped
        with fit_stopped(run_dir), bf16_matmuls(self.bf16_matmul):
            trainer.fit(self.module, datamodule=dm, ckpt_path=ckpt_path)
        # Lightning's teardown moves the module back to the CPU after a GPU fit: score where it trained
        device = trainer.strategy.root_device
        self.module.to(device)
        self.device = str(device)

    def score(self, x: torch.Tensor, batch_size: int) -> dict[str, torch.Tensor]:
        return self.module.score(x, batch_size)

    def training_scores(self, x: torch.Tensor, batch_size: int) -> dict[str, torch.Tensor]:
        return self.module.training_scores(x, batch_size)

    def fit_threshold_detector(self, scores, rec_percentile, lik_percentile, mask=None, training: bool = True):
        return self.module.fit_threshold_detector(scores, rec_percentile, lik_percentile, mask, training)

    def identity(self) -> dict:
        return run_identity(self.cfg, epochs=self.max_epochs, batch_size=self.cfg.batch_size)

    def train_summary(self, scores: dict[str, torch.Tensor], is_anomaly: torch.Tensor) -> dict:
        return {"train_errors": error_by_group(scores["rec_error"], is_anomaly)}

    def train_score_columns(self, dm) -> dict[str, list]:
        return callback_score_columns(self.callbacks, dm)

    def save(self, run_dir: Path, result, dm) -> None:
        save_model(
            run_dir / MODEL_FILE,
            self.module,
            self.cfg.model.name,
            result.detector,
            dm.preprocessing,
            result.holdout_detector,
        )

    def write_figures(self, run_dir: Path, result, dm) -> None:
        write_run_figures(run_dir, self.cfg, result, dm)

    def add_results(self, metrics: dict, run_dir: Path) -> None:
        if self.bf16_matmul is not None:
            metrics["provenance"]["bf16_matmul"] = self.bf16_matmul
        for callback in participants(self.callbacks):  # ITSR's refinement adds its rounds and retraining figures
            callback.add_results(metrics, run_dir)

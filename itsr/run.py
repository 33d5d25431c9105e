"""Hydra entry point: compose, build, fit, score, write results into the run directory.

    python -m itsr.run                                   # ITSR on MNIST 0 vs 2, alpha = 5%, paper epochs
    python -m itsr.run experiment=quick                  # the same, short (minutes on 2 cores)
    python -m itsr.run -m dataset=mnist,fmnist alpha=0.05,0.01,0.001   # a grid, one directory per job

A run directory holds metrics.json, test_scores.csv, curves.csv, (ITSR) refinement.csv, figures
and checkpoints/. metrics.json is written last and atomically: if it exists, the run finished.
Construction lives in itsr.build, the results contract in itsr.results, the runtime (threads,
SLURM, resume, signals) in itsr.runtime.
"""

from __future__ import annotations

import time
from pathlib import Path

import hydra
import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from itsr.atomic import write_json_atomic
from itsr.build import build_callbacks, build_datamodule, build_module, is_peer_config, schedule_epochs
from itsr.config import validate
from itsr.errors import RunDirRefused
from itsr.evaluation import evaluate
from itsr.figures import write_run_figures
from itsr.hooks import participants
from itsr.library_warnings import silence_third_party_noise
from itsr.model_file import MODEL_FILE, save_model
from itsr.progress import RunProgress
from itsr.provenance import provenance, write_config
from itsr.results import (
    HOLDOUT_SCORES_FILE,
    METRICS_FILE,
    TEST_SCORES_FILE,
    TRAIN_SCORES_FILE,
    callback_score_columns,
    console_summary,
    headline_bacc,
    nan_to_none,
    run_metrics,
    score_lists,
    write_holdout_scores,
    write_test_scores,
    write_train_scores,
)
from itsr.runtime import (
    AtomicCheckpointIO,
    RecordConfig,
    check_resume,
    configure_torch,
    failures_noted,
    fit_stopped,
    in_slurm_job,
    resolve_ckpt_path,
    resolved_config,
    run_dir_lock,
    slurm_plugins,
    stop_on_signal,
)
from itsr.tracking import build_logger, finishing, log_results

CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "conf")


def finished_run_message(run_dir: Path, why: str) -> str:
    return (
        f"{run_dir} holds a finished run ({METRICS_FILE}) and {why}; "
        "choose another hydra.run.dir, or move that run away first"
    )


def train_and_evaluate(cfg: DictConfig, run_dir: Path, extra_callbacks: tuple = ()) -> dict:
    """One run, from a composed config to metrics.json in run_dir; returns the metrics.

    extra_callbacks: further Lightning callbacks (tests use one to simulate a killed job).
    """
    validate(cfg)
    silence_third_party_noise()
    with run_dir_lock(run_dir), stop_on_signal(run_dir, in_slurm_job()):
        if is_peer_config(cfg):  # a PyOD detector: no Lightning training, the same run directory contract
            from itsr.peers.run import fit_and_evaluate_peer

            if (run_dir / METRICS_FILE).exists():  # a peer has no checkpoint: a rerun would start afresh over it
                raise RunDirRefused(finished_run_message(run_dir, "a peer run cannot resume, so it would start afresh"))
            return fit_and_evaluate_peer(cfg, run_dir)
        return _train_and_evaluate(cfg, run_dir, extra_callbacks)


def _train_and_evaluate(cfg: DictConfig, run_dir: Path, extra_callbacks: tuple) -> dict:
    """train_and_evaluate, holding the run directory."""
    started = time.time()
    ckpt_path = resolve_ckpt_path(cfg.ckpt_path, run_dir)
    config = resolved_config(cfg)
    if ckpt_path is not None:
        check_resume(Path(ckpt_path), config)
    elif (run_dir / METRICS_FILE).exists():
        raise RunDirRefused(finished_run_message(run_dir, "ckpt_path=null would start afresh over it"))
    configure_torch(cfg.threads, cfg.flush_denormal)
    pl.seed_everything(cfg.seed, workers=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_config(run_dir, config)

    dm = build_datamodule(cfg)
    dm.prepare_data()
    dm.setup("fit")
    if cfg.data_on_device and cfg.trainer.accelerator in ("gpu", "cuda") and torch.cuda.is_available():
        dm.place_on("cuda")
    module = build_module(cfg, dm.input_dim)
    if cfg.compile.enabled:
        module.compile_networks(**OmegaConf.to_container(cfg.compile.options, resolve=True))
    callbacks = [*build_callbacks(cfg), *extra_callbacks, RecordConfig(config)]
    max_epochs = schedule_epochs(callbacks, cfg.model.max_epochs)
    if cfg.progress.enabled:  # first: it clears its terminal line before the others' epoch-end hooks log
        schedule = next((c.schedule for c in participants(callbacks)), None)
        callbacks.insert(0, RunProgress(cfg.progress.every_n_epochs, schedule))
    logger = build_logger(cfg, run_dir)
    with finishing(logger):
        trainer = pl.Trainer(
            **OmegaConf.to_container(cfg.trainer, resolve=True),
            plugins=[AtomicCheckpointIO(), *(slurm_plugins() or [])],
            max_epochs=max_epochs,
            callbacks=callbacks,
            logger=logger,
            default_root_dir=str(run_dir),
        )
        with fit_stopped(run_dir):
            trainer.fit(module, datamodule=dm, ckpt_path=ckpt_path)

        sc = cfg.scoring
        result = evaluate(
            module, dm, cfg.score_batch_size, sc.rec_percentile, sc.lik_percentile, sc.threshold_population
        )
        if dm.test:
            test = {split: score_lists(result.scores[split]) for split in dm.test}
            write_test_scores(run_dir / TEST_SCORES_FILE, test, dm)
        train = score_lists(result.scores["train"])
        write_train_scores(run_dir / TRAIN_SCORES_FILE, train, dm, callback_score_columns(callbacks, dm))
        if dm.holdout is not None:
            write_holdout_scores(run_dir / HOLDOUT_SCORES_FILE, score_lists(result.scores["holdout"]), dm)
        save_model(
            run_dir / MODEL_FILE, module, cfg.model.name, result.detector, dm.preprocessing, result.holdout_detector
        )
        write_run_figures(run_dir, cfg, result, dm)
        metrics = run_metrics(cfg, dm, result, max_epochs, started, str(module.device), torch.get_num_threads())
        metrics["provenance"] = provenance(config, str(module.device), str(cfg.trainer.precision))
        for callback in participants(callbacks):  # ITSR's refinement adds its rounds and retraining figures
            callback.add_results(metrics, run_dir)
        metrics = nan_to_none(metrics)
        write_json_atomic(run_dir / METRICS_FILE, metrics)
        log_results(logger, metrics, sorted(run_dir.glob("*.png")))
        return metrics


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")
def main(cfg: DictConfig) -> float | None:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    with failures_noted(run_dir):
        metrics = train_and_evaluate(cfg, run_dir)
    print(console_summary(cfg, metrics, run_dir))
    return headline_bacc(metrics)


if __name__ == "__main__":
    main()

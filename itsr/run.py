"""Hydra entry point: compose, build, fit, score, write results into the run directory.

    python -m itsr.run                                   # ITSR on MNIST 0 vs 2, alpha = 5%, paper epochs
    python -m itsr.run experiment=quick                  # the same, short (minutes on 2 cores)
    python -m itsr.run -m dataset=mnist,fmnist alpha=0.05,0.01,0.001   # a grid, one directory per job

A run directory holds metrics.json, test_scores.csv, curves.csv, (ITSR) refinement.csv, figures
and checkpoints/. metrics.json is written last and atomically: if it exists, the run finished.
One pipeline for networks and PyOD peers: what differs lives behind itsr.interface.RunModel
(itsr.network_run, itsr.peers.run). Construction lives in itsr.build, the results contract in
itsr.results, the runtime (threads, SLURM, resume, signals) in itsr.runtime.
"""

from __future__ import annotations

import time
from pathlib import Path

import hydra
import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from itsr.atomic import write_json_atomic
from itsr.build import build_datamodule, is_peer_config
from itsr.config import validate
from itsr.errors import RunDirRefused
from itsr.evaluation import evaluate
from itsr.interface import RunModel
from itsr.library_warnings import silence_third_party_noise
from itsr.network_run import NetworkRun
from itsr.provenance import code_version, provenance, write_config
from itsr.results import METRICS_FILE, console_summary, headline_bacc, nan_to_none, run_metrics, write_run_scores
from itsr.runtime import (
    clear_earlier_failure,
    configure_torch,
    failures_noted,
    in_slurm_job,
    resolved_config,
    run_dir_lock,
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
    """One run, from a composed config to metrics.json in run_dir; returns the metrics. The same pipeline
    for our networks and the PyOD peers (itsr.interface.RunModel).

    extra_callbacks: further Lightning callbacks (tests use one to simulate a killed job).
    """
    validate(cfg)
    silence_third_party_noise()
    with run_dir_lock(run_dir), stop_on_signal(run_dir, in_slurm_job()):
        return _train_and_evaluate(cfg, run_dir, extra_callbacks)


def build_run_model(cfg: DictConfig, config: dict, extra_callbacks: tuple) -> RunModel:
    if is_peer_config(cfg):  # a PyOD detector: no Lightning training (PyOD loads only for a peer run)
        from itsr.peers.run import PeerRun

        return PeerRun(cfg)
    return NetworkRun(cfg, config, extra_callbacks)


def _train_and_evaluate(cfg: DictConfig, run_dir: Path, extra_callbacks: tuple) -> dict:
    """train_and_evaluate, holding the run directory."""
    started = time.time()
    code_at_start = code_version()  # before training: the code this run (or this resumed part) ran
    config = resolved_config(cfg)
    model = build_run_model(cfg, config, extra_callbacks)
    ckpt_path = model.checkpoint(run_dir, config)
    if ckpt_path is None and (run_dir / METRICS_FILE).exists():
        raise RunDirRefused(finished_run_message(run_dir, model.restart_refusal))
    configure_torch(cfg.threads, cfg.flush_denormal)
    pl.seed_everything(cfg.seed, workers=True)  # also numpy's and torch's global RNGs, which Deep SVDD uses
    run_dir.mkdir(parents=True, exist_ok=True)
    write_config(run_dir, config)
    clear_earlier_failure(run_dir)

    dm = build_datamodule(cfg)
    dm.prepare_data()
    dm.setup("fit")
    logger = build_logger(cfg, run_dir)
    with finishing(logger):
        model.fit(dm, run_dir, logger, ckpt_path)
        sc = cfg.scoring
        result = evaluate(
            model, dm, cfg.score_batch_size, sc.rec_percentile, sc.lik_percentile, sc.threshold_population
        )
        write_run_scores(run_dir, dm, result.scores, model.score_names, model.train_score_columns(dm))
        model.save(run_dir, result, dm)
        model.write_figures(run_dir, result, dm)
        train_summary = model.train_summary(result.scores["train"], dm.train.is_anomaly)
        metrics = run_metrics(
            dm, model.identity(), result, train_summary, started, model.device, torch.get_num_threads()
        )
        metrics["provenance"] = provenance(config, model.device, model.precision, code_at_start)
        model.add_results(metrics, run_dir)
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

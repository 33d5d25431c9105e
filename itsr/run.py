"""Hydra entry point: compose, build, fit, score, write results into the run directory.

    python -m itsr.run                                   # ITSR on MNIST 0 vs 2, alpha = 5%, paper epochs
    python -m itsr.run experiment=quick                  # the same, short (minutes on 2 cores)
    python -m itsr.run -m dataset=mnist,fmnist alpha=0.05,0.01,0.001   # a grid, one directory per job

A run directory holds metrics.json, test_scores.csv, curves.csv, (ITSR) refinement.csv, figures
and checkpoints/. metrics.json is written last and atomically: if it exists, the run finished.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import os
import sys
import time
from pathlib import Path

import hydra
import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ModelCheckpoint

from itsr.config import validate
from itsr.curves import TrainingCurves
from itsr.data.datamodule import AnomalyDataModule, BenchmarkDataModule, FolderDataModule
from itsr.data.fetch import DataUnavailableError
from itsr.data.images import MNIST_PREPROCESSING, Preprocessing
from itsr.errors import RunDirRefused, UserError
from itsr.evaluation import Evaluation, error_by_group, evaluate
from itsr.export import MODEL_FILE, save_model
from itsr.figures import latent_scatter, score_scatter, training_error_histogram
from itsr.io import write_bytes_atomic, write_csv_atomic, write_json_atomic
from itsr.noise import silence_third_party_noise
from itsr.peers import is_peer
from itsr.progress import RunProgress
from itsr.refinement import ITSRRefinement
from itsr.results import FAILURE_FILE, METRICS_FORMAT
from itsr.runtime import (
    AtomicCheckpointIO,
    RecordConfig,
    RunStopped,
    check_resume,
    fit_stopped,
    jobs_not_run,
    resolved_config,
    run_dir_lock,
    stop_on_signal,
)
from itsr.tracking import build_logger, finishing, log_results

log = logging.getLogger(__name__)

CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "conf")
LAST_CHECKPOINT = "last"  # ckpt_path=last: resume, and fail if there is nothing to resume
AUTO_RESUME = "auto"  # ckpt_path=auto: resume when the run directory has a checkpoint, else start


def available_cores() -> int:
    """Cores this job owns: SLURM's allocation inside a SLURM job, else the process's CPU set."""
    slurm = os.environ.get("SLURM_CPUS_PER_TASK")
    if slurm and slurm.isdigit():
        return int(slurm)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def default_threads() -> int:
    """The cores this job owns, shared with the jobs that a parallel launcher runs beside it
    (one busy neighbour cut a 2-thread matmul from 138 to 16 GFLOP/s here; 1 thread kept 80)."""
    cores = available_cores()
    try:
        parallel_jobs = int(HydraConfig.get().launcher.get("n_jobs") or 1)
    except ValueError:  # not started by Hydra
        parallel_jobs = 1
    if parallel_jobs < 0:  # joblib's -1: as many jobs as cores
        parallel_jobs = cores
    return max(1, cores // max(1, parallel_jobs))


def slurm_plugins() -> list | None:
    """Inside a SLURM job, let submitit own requeueing (USR2, then ckpt_path=auto resumes) and keep
    Lightning's SLURM environment from installing a second requeue handler."""
    from pytorch_lightning.plugins.environments import SLURMEnvironment

    return [SLURMEnvironment(auto_requeue=False)] if SLURMEnvironment.detect() else None


def in_slurm_job() -> bool:
    from pytorch_lightning.plugins.environments import SLURMEnvironment

    return SLURMEnvironment.detect()


def preprocessing_of(cfg: DictConfig) -> Preprocessing:
    if cfg.dataset.name == "folder":
        return Preprocessing(tuple(cfg.dataset.size), cfg.dataset.color, resize=True)
    return MNIST_PREPROCESSING


def build_datamodule(cfg: DictConfig) -> AnomalyDataModule:
    if cfg.dataset.name == "folder":
        ds = cfg.dataset
        return FolderDataModule(
            root=ds.root,
            preprocessing=preprocessing_of(cfg),
            batch_size=cfg.batch_size,
            seed=cfg.seed,
            test_root=ds.test_root,
            test_csv=ds.test_csv,
            train_labels_csv=ds.train_labels_csv,
        )
    return BenchmarkDataModule(
        name=cfg.dataset.name,
        normal_class=cfg.dataset.normal_class,
        anomaly_class=cfg.dataset.anomaly_class,
        alpha=cfg.alpha,
        seed=cfg.seed,
        data_dir=cfg.data_dir,
        batch_size=cfg.batch_size,
        download=cfg.download,
    )


def build_refinement(cfg: DictConfig) -> ITSRRefinement | None:
    ref = cfg.model.get("refinement")
    if ref is None:
        return None
    return ITSRRefinement(**OmegaConf.to_container(ref, resolve=True), score_batch_size=cfg.score_batch_size)


def _nan_to_none(obj):
    """JSON has no NaN: an undefined metric (e.g. no positives in a split) is written as null."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_nan_to_none(v) for v in obj]
    return obj


def run_identity(cfg: DictConfig, epochs: int | None, batch_size: int | None) -> dict:
    """The `config` block of metrics.json that every model shares: what the report groups runs by."""
    return {
        "dataset": cfg.dataset.name,
        "setting": cfg.dataset.setting,
        "normal_class": cfg.dataset.get("normal_class"),
        "anomaly_class": cfg.dataset.get("anomaly_class"),
        "alpha": cfg.alpha,
        "seed": cfg.seed,
        "model": cfg.model.name,
        "epochs": epochs,
        "batch_size": batch_size,
    }


def write_scores_csv(path: Path, columns: dict[str, list]) -> None:
    """Columns of equal length as CSV; floats keep full precision."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(zip(*columns.values()))
    write_bytes_atomic(path, buffer.getvalue().encode())


def write_test_scores(path: Path, result: Evaluation, dm: AnomalyDataModule) -> None:
    """Per-sample test scores: anyone can re-threshold or recompute every metric from them."""
    columns: dict[str, list] = {"split": [], "label": [], "anomaly": [], "rec_error": []}
    has_lik = "log_likelihood" in result.scores["train"]
    if has_lik:
        columns["log_likelihood"] = []
    for split, images in dm.test.items():
        columns["split"] += [split] * len(images)
        columns["label"] += images.labels.tolist()
        columns["anomaly"] += images.is_anomaly.int().tolist()
        for name in ("rec_error", "log_likelihood") if has_lik else ("rec_error",):
            columns[name] += result.scores[split][name].tolist()
    write_scores_csv(path, columns)


def write_train_scores(path: Path, result: Evaluation, dm: AnomalyDataModule, refinement) -> None:
    """Per-sample training scores after training (Fig. 4b, Fig. 5 d-f); for ITSR also the final
    candidate set, the final weight and the error when pretraining ended."""
    train = result.scores["train"]
    columns = {
        "label": dm.train.labels.tolist(),
        "anomaly": dm.train.is_anomaly.int().tolist(),
        "rec_error": train["rec_error"].tolist(),
    }
    if "log_likelihood" in train:
        columns["log_likelihood"] = train["log_likelihood"].tolist()
    if refinement is not None and refinement.candidates is not None:
        columns["candidate"] = refinement.candidates.astype(int).tolist()
        columns["weight"] = dm.sample_weights.cpu().tolist()
        if refinement.pretrained_rec_error is not None:
            columns["rec_error_pretrained"] = refinement.pretrained_rec_error.tolist()
    write_scores_csv(path, columns)


def write_figures(run_dir: Path, cfg: DictConfig, result: Evaluation, dm: AnomalyDataModule) -> None:
    setting = f"{cfg.model.name.upper()}, {cfg.dataset.setting}, alpha={cfg.alpha}"
    train = result.scores["train"]
    training_error_histogram(
        train["rec_error"], dm.train.is_anomaly, f"Training errors: {setting}", run_dir / "train_errors.png"
    )
    if "log_likelihood" in train and dm.test:
        split = next(iter(dm.test))  # "observed" for the benchmarks
        observed = result.scores[split]
        score_scatter(
            observed["rec_error"],
            observed["log_likelihood"],
            dm.test[split].is_anomaly,
            result.thresholds.t_rec,
            result.thresholds.t_prior,
            f"Test split {split}: {setting}",
            run_dir / "test_scores_scatter.png",
        )
        latent_scatter(train["code"], dm.train.is_anomaly, f"Training codes: {setting}", run_dir / "latent.png")


def resolve_ckpt_path(ckpt_path: str | None, run_dir: Path) -> str | None:
    """None, a path, "last" (must exist) or "auto" (resume if there is something to resume).

    "auto" is the default, so a job that SLURM requeues after pre-emption or a time limit starts again
    in the same directory and continues from its last checkpoint instead of starting over.
    """
    if ckpt_path is None:
        return None
    last = run_dir / "checkpoints" / "last.ckpt"
    if ckpt_path == AUTO_RESUME:
        return str(last) if last.exists() else None
    path = last if ckpt_path == LAST_CHECKPOINT else Path(ckpt_path)
    if not path.is_file():
        raise RunDirRefused(
            f"ckpt_path={ckpt_path!r}: no checkpoint at {path}. To resume a run, start it again in its "
            "own directory (hydra.run.dir=<that run dir>) with ckpt_path=last, or give a .ckpt path."
        )
    return str(path)


def train_and_evaluate(cfg: DictConfig, run_dir: Path, extra_callbacks: tuple = ()) -> dict:
    """One run, from a composed config to metrics.json in run_dir; returns the metrics.

    extra_callbacks: further Lightning callbacks (tests use one to simulate a killed job).
    """
    validate(cfg)
    silence_third_party_noise()
    with run_dir_lock(run_dir), stop_on_signal(run_dir, in_slurm_job()):
        return _train_and_evaluate(cfg, run_dir, extra_callbacks)


def _train_and_evaluate(cfg: DictConfig, run_dir: Path, extra_callbacks: tuple) -> dict:
    """train_and_evaluate, holding the run directory."""
    if is_peer(cfg.model.name):  # a PyOD detector: no Lightning training, the same run directory contract
        from itsr.peers.run import fit_and_evaluate_peer

        return fit_and_evaluate_peer(cfg, run_dir)
    started = time.time()
    ckpt_path = resolve_ckpt_path(cfg.ckpt_path, run_dir)
    config = resolved_config(cfg)
    if ckpt_path is not None:
        check_resume(Path(ckpt_path), config)
    elif (run_dir / "metrics.json").exists():
        raise RunDirRefused(
            f"{run_dir} holds a finished run (metrics.json) and ckpt_path=null would start afresh over it; "
            "choose another hydra.run.dir, or move that run away first"
        )
    torch.set_num_threads(cfg.threads or default_threads())
    pl.seed_everything(cfg.seed, workers=True)
    run_dir.mkdir(parents=True, exist_ok=True)

    dm = build_datamodule(cfg)
    dm.prepare_data()
    dm.setup("fit")
    if cfg.data_on_device and cfg.trainer.accelerator in ("gpu", "cuda") and torch.cuda.is_available():
        dm.place_on("cuda")
    module = instantiate(cfg.model.module, input_dim=dm.input_dim, _convert_="all")
    if cfg.compile.enabled:
        module.compile_networks(**OmegaConf.to_container(cfg.compile.options, resolve=True))
    refinement = build_refinement(cfg)
    max_epochs = refinement.schedule.total_epochs if refinement else cfg.model.max_epochs

    checkpoints = ModelCheckpoint(
        dirpath=run_dir / "checkpoints",
        filename="epoch{epoch}",
        auto_insert_metric_name=False,
        every_n_epochs=cfg.checkpoint.every_n_epochs,
        save_top_k=1,  # with no monitor: the newest one
        save_last="link",  # last.ckpt points at it, no second copy on disk
    )
    curves = TrainingCurves(
        every_n_epochs=cfg.curves.every_n_epochs,
        path=run_dir / "curves.csv",
        score_batch_size=cfg.score_batch_size,
        rec_percentile=cfg.scoring.rec_percentile,
        lik_percentile=cfg.scoring.lik_percentile,
        phase_of_epoch=refinement.schedule.phase_of_epoch if refinement else None,
    )
    callbacks = [c for c in (refinement, curves, *extra_callbacks, RecordConfig(config), checkpoints) if c is not None]
    if cfg.progress.enabled:  # first: it clears its terminal line before the others' epoch-end hooks log
        callbacks.insert(0, RunProgress(cfg.progress.every_n_epochs, refinement.schedule if refinement else None))
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

        result = evaluate(
            module,
            dm,
            cfg.score_batch_size,
            cfg.scoring.rec_percentile,
            cfg.scoring.lik_percentile,
            cfg.scoring.threshold_population,
        )
        if dm.test:
            write_test_scores(run_dir / "test_scores.csv", result, dm)
        write_train_scores(run_dir / "train_scores.csv", result, dm, refinement)
        save_model(
            run_dir / MODEL_FILE,
            module,
            cfg.model.name,
            result.thresholds,
            result.scores["train"],
            preprocessing_of(cfg),
            {"rec": cfg.scoring.rec_percentile, "lik": cfg.scoring.lik_percentile},
        )
        write_figures(run_dir, cfg, result, dm)
        metrics = {
            "format_version": METRICS_FORMAT,
            "config": run_identity(cfg, epochs=max_epochs, batch_size=cfg.batch_size),
            "n_train": len(dm.train),
            "n_train_anomalies": dm.n_train_anomalies,
            "thresholds": {"t_rec": result.thresholds.t_rec, "t_prior": result.thresholds.t_prior},
            "metrics": result.metrics,
            "train_errors": error_by_group(result.scores["train"]["rec_error"], dm.train.is_anomaly),
            "wall_time_s": round(time.time() - started, 1),
            "device": str(module.device),
            "torch_threads": torch.get_num_threads(),
        }
        if refinement is not None:
            metrics["config"]["schedule"] = refinement.schedule.__dict__
            metrics["refinement"] = refinement.history
            metrics["retraining"] = refinement.retraining
            write_csv_atomic(run_dir / "refinement.csv", refinement.history)
        metrics = _nan_to_none(metrics)
        write_json_atomic(run_dir / "metrics.json", metrics)
        log_results(logger, metrics, sorted(run_dir.glob("*.png")))
        return metrics


def results_table(metrics: dict) -> str:
    """A small console table; reports are built from metrics.json, never from this text."""
    lines = [f"{'split':<11} {'criterion':<9} {'TPR':>6} {'TNR':>6} {'BACC':>6} {'AUROC':>6} {'AP':>6}"]
    for split, by_criterion in metrics["metrics"].items():
        for criterion, m in by_criterion.items():
            cells = " ".join(
                f"{m[k]:6.3f}" if m[k] is not None else "   n/a" for k in ("tpr", "tnr", "bacc", "auroc", "ap")
            )
            lines.append(f"{split:<11} {criterion:<9} {cells}")
    return "\n".join(lines)


def user_error(error: Exception) -> UserError | None:
    """Errors that come from the user's input (a value, a file, a directory), as a UserError that
    Hydra prints without a traceback; None for anything else (a bug keeps its traceback)."""
    if isinstance(error, UserError):
        return error
    if isinstance(error, (ValueError, DataUnavailableError, FileNotFoundError, PermissionError, NotADirectoryError)):
        return UserError(f"{type(error).__name__}: {error}")
    if isinstance(error, OSError) and error.filename:  # e.g. a full disk while writing a result
        return UserError(f"{error.filename}: {error.strerror or error}")
    return None


def log_in_grid(error: Exception) -> None:
    """Hydra prints only a grid's first error at its end: each failed job says its own as it fails."""
    if HydraConfig.get().mode == RunMode.MULTIRUN:
        log.error("%s", error)


def report_stopped(stop: RunStopped) -> None:
    """Say that the run stopped and how to resume it; in a grid, also which jobs did not run."""
    hydra_cfg = HydraConfig.get()
    lines = [f"error: {stop}"]
    if hydra_cfg.mode == RunMode.MULTIRUN:
        later = jobs_not_run(Path(hydra_cfg.sweep.dir), hydra_cfg.job.num)
        lines.append(
            f"the grid stopped at job #{hydra_cfg.job.num}; the jobs after it did not run" + (":" if later else "")
        )
        lines += [f"  {job}" for job in later or []]
        lines.append(
            f"to finish the grid, run the same command with hydra.sweep.dir={hydra_cfg.sweep.dir}: "
            "finished jobs keep their results, the stopped one resumes"
        )
    print("\n".join(lines), file=sys.stderr, flush=True)


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")
def main(cfg: DictConfig) -> float | None:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        metrics = train_and_evaluate(cfg, run_dir)
    except RunDirRefused as error:
        # the directory belongs to another run or a running job: leave no note in it
        log_in_grid(error)
        raise
    except RunStopped as stop:
        write_json_atomic(run_dir / FAILURE_FILE, {"error": "RunStopped", "message": str(stop)})
        report_stopped(stop)
        raise
    except Exception as error:
        # A failed job of a grid leaves a note the report shows; the other jobs go on (Hydra raises
        # only once the whole grid has run).
        write_json_atomic(run_dir / FAILURE_FILE, {"error": type(error).__name__, "message": str(error)})
        refusal = user_error(error)
        if refusal is None:
            raise
        log_in_grid(refusal)
        raise refusal from error  # HYDRA_FULL_ERROR=1 still shows where it came from
    (run_dir / FAILURE_FILE).unlink(missing_ok=True)
    print(f"\n{cfg.model.name} on {cfg.dataset.setting}, alpha={cfg.alpha}, seed={cfg.seed}")
    print(results_table(metrics))
    if metrics.get("refinement"):
        last = metrics["refinement"][-1]
        print(
            f"ITSR candidates after round {last['round']}: {last['n_candidates']}, of which "
            f"{last['n_true_anomalies_in_candidates']} of {metrics['n_train_anomalies']} planted anomalies "
            f"(precision {last['precision']:.2f}, recall {last['recall']:.2f})"
        )
    print(f"run directory: {run_dir}")
    return headline_bacc(metrics)


def headline_bacc(metrics: dict) -> float | None:
    """The first test split's BACC by the last criterion, for Hydra sweepers; None without a test set
    (dataset=folder without labels has no "observed" split)."""
    splits = metrics["metrics"]
    if not splits:
        return None
    by_criterion = next(iter(splits.values()))
    return by_criterion[list(by_criterion)[-1]]["bacc"] if by_criterion else None


if __name__ == "__main__":
    main()

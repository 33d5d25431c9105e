"""The run directory contract: the files a run writes and the layout of metrics.json.

Light on purpose (no torch, Lightning or Hydra): the report reads thousands of run directories
through these names without loading a training stack.
"""

from __future__ import annotations

import csv
import io
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING

from itsr.atomic import write_bytes_atomic
from itsr.hooks import participants

if TYPE_CHECKING:  # type names only: this module stays importable without torch, Lightning or Hydra
    import torch
    from omegaconf import DictConfig

    from itsr.data.datamodule import AnomalyDataModule
    from itsr.evaluation import Evaluation

METRICS_FILE = "metrics.json"  # written last and atomically: if it exists, the run finished
METRICS_FORMAT = 1  # bump when the layout of metrics.json changes; the report checks it
FAILURE_FILE = "failed.json"  # a failed job's note (error type and message), shown by the report
TEST_SCORES_FILE = "test_scores.csv"  # per-sample test scores: every metric can be recomputed from them
TRAIN_SCORES_FILE = "train_scores.csv"  # per-sample training scores after training
HOLDOUT_SCORES_FILE = "holdout_scores.csv"  # per-sample scores of the held-out slice (scoring.holdout_fraction)
CURVES_FILE = "curves.csv"  # test metrics and training errors every N epochs (Figs. 1, 4)
HOLDOUT_SUFFIX = "_holdout"  # curves.csv columns under the held-out slice's thresholds (issue 23)
REFINEMENT_FILE = "refinement.csv"  # ITSR: one row per detection round


def nan_to_none(obj):
    """JSON has no NaN: an undefined metric (e.g. no positives in a split) is written as null."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [nan_to_none(v) for v in obj]
    return obj


def method_label(cfg: DictConfig) -> str:
    """The method a run is reported as: the model's name, refined ones marked by how A was found.

    model=itsr and model=aae refine=itsr (by=svm) are both "itsr", the paper's method; any other refined
    model is "<model>+itsr-<by>", e.g. "knn+itsr-score", "ae+itsr-svm".
    """
    name = cfg.model.name
    refinement = cfg.model.get("refinement")
    if refinement is None:
        return name
    by = refinement.get("by", "svm")
    if by == "auto":  # as itsr.refinement.resolve_by: the SVM where there are codes, i.e. not for a PyOD peer
        by = "score" if cfg.model.get("detector") is not None else "svm"
    base = "aae" if name == "itsr" else name
    return "itsr" if (base, by) == ("aae", "svm") else f"{base}+itsr-{by}"


def run_identity(cfg: DictConfig, epochs: int | None, batch_size: int | None) -> dict:
    """The `config` block of metrics.json that every model shares: what the report groups runs by."""
    return {
        "dataset": cfg.dataset.name,
        "setting": cfg.dataset.setting,
        "normal_class": cfg.dataset.get("normal_class"),
        "anomaly_class": cfg.dataset.get("anomaly_class"),
        "alpha": cfg.alpha,
        "seed": cfg.seed,
        "model": method_label(cfg),
        "epochs": epochs,
        "batch_size": batch_size,
    }


def metrics_head(dm: AnomalyDataModule, config: dict, thresholds: dict, metrics_by_split: dict) -> dict:
    """What every run's metrics.json starts with, networks and peers alike: the format, the run's identity
    (`config`), the training set's size, the thresholds and the test metrics per split and criterion."""
    return {
        "format_version": METRICS_FORMAT,
        "config": config,
        "n_train": len(dm.train),
        "n_train_anomalies": dm.n_train_anomalies,
        "thresholds": thresholds,
        "metrics": metrics_by_split,
    }


def run_metrics(
    dm: AnomalyDataModule,
    identity: dict,
    result: Evaluation,
    train_summary: dict,
    started: float,
    device: str,
    threads: int,
) -> dict:
    """metrics.json of any run (network or peer), before the model adds its own entries (ITSR its
    refinement history, a peer its timings)."""
    metrics = (
        metrics_head(dm, identity, result.detector.reported_thresholds(), result.metrics)
        | train_summary
        | {
            "criterion": result.detector.default_criterion,  # the model's own rule, which headline_bacc reads
            "wall_time_s": round(time.time() - started, 1),
            "device": device,
            "torch_threads": threads,
        }
    )
    if result.holdout_detector is not None:
        metrics |= holdout_results(dm, result.holdout_detector.reported_thresholds(), result.metrics_holdout)
    return metrics


def write_run_scores(
    run_dir: Path, dm: AnomalyDataModule, scores: dict, names: tuple[str, ...], train_columns: dict[str, list]
) -> None:
    """test_scores.csv, train_scores.csv (with the refinement's columns) and holdout_scores.csv."""
    if dm.test:
        write_test_scores(
            run_dir / TEST_SCORES_FILE, {split: score_lists(scores[split], names) for split in dm.test}, dm
        )
    write_train_scores(run_dir / TRAIN_SCORES_FILE, score_lists(scores["train"], names), dm, train_columns)
    if dm.holdout is not None:
        write_holdout_scores(run_dir / HOLDOUT_SCORES_FILE, score_lists(scores["holdout"], names), dm)


def holdout_results(dm: AnomalyDataModule, thresholds: dict, metrics_by_split: dict) -> dict:
    """metrics.json's calibrated rule: the held-out slice, its thresholds and the test metrics under them."""
    held = dm.holdout
    return {
        "holdout": {"fraction": dm.holdout_fraction, "n": len(held), "n_anomalies": int(held.is_anomaly.sum())},
        "thresholds_holdout": thresholds,
        "metrics_holdout": metrics_by_split,
    }


def write_holdout_scores(path: Path, scores: dict[str, list], dm: AnomalyDataModule) -> None:
    """Per-sample scores of the held-out slice: the calibrated thresholds are their percentiles."""
    columns = {"label": dm.holdout.labels.tolist(), "anomaly": dm.holdout.is_anomaly.int().tolist(), **scores}
    write_scores_csv(path, columns)


def write_scores_csv(path: Path, columns: dict[str, list]) -> None:
    """Columns of equal length as CSV; floats keep full precision."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(zip(*columns.values()))
    write_bytes_atomic(path, buffer.getvalue().encode())


def write_test_scores(path: Path, scores: dict[str, dict[str, list]], dm: AnomalyDataModule) -> None:
    """Per-sample test scores (scores[split][score name]), for networks and peers alike: anyone can
    re-threshold or recompute every metric from them."""
    names = list(next(iter(scores.values())))
    columns: dict[str, list] = {"split": [], "label": [], "anomaly": [], **{name: [] for name in names}}
    for split, images in dm.test.items():
        columns["split"] += [split] * len(images)
        columns["label"] += images.labels.tolist()
        columns["anomaly"] += images.is_anomaly.int().tolist()
        for name in names:
            columns[name] += list(scores[split][name])
    write_scores_csv(path, columns)


def write_train_scores(path: Path, scores: dict[str, list], dm: AnomalyDataModule, extra: dict | None = None) -> None:
    """Per-sample training scores after training (Fig. 4b, Fig. 5 d-f), plus the columns the refinement adds
    (the final candidate set; ITSR also the final weight and the error when pretraining ended)."""
    columns = {"label": dm.train.labels.tolist(), "anomaly": dm.train.is_anomaly.int().tolist(), **scores}
    write_scores_csv(path, columns | (extra or {}))


def callback_score_columns(callbacks: list, dm: AnomalyDataModule) -> dict[str, list]:
    """train_scores.csv's columns from the callbacks that take part in the run (ITSR's refinement)."""
    columns: dict[str, list] = {}
    for callback in participants(callbacks):
        columns |= callback.train_score_columns(dm)
    return columns


def score_lists(scores: dict[str, torch.Tensor], names=("rec_error", "log_likelihood")) -> dict[str, list]:
    """A model's per-sample scores as plain lists for the CSVs (codes left out)."""
    return {name: scores[name].tolist() for name in names if name in scores}


def number_or_na(value: float | None, spec: str = ".3f") -> str:
    """A number formatted by spec, or "n/a" for a value that is undefined (None or NaN in metrics.json)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return format(value, spec)


def results_table(metrics: dict, key: str = "metrics") -> str:
    """A small console table; reports are built from metrics.json, never from this text."""
    lines = [f"{'split':<11} {'criterion':<9} {'TPR':>6} {'TNR':>6} {'BACC':>6} {'AUROC':>6} {'AP':>6}"]
    for split, by_criterion in metrics[key].items():
        for criterion, m in by_criterion.items():
            cells = " ".join(f"{number_or_na(m[k]):>6}" for k in ("tpr", "tnr", "bacc", "auroc", "ap"))
            lines.append(f"{split:<11} {criterion:<9} {cells}")
    if not metrics["metrics"]:
        lines.append("(no labelled test set: scores and thresholds are in the run directory)")
    return "\n".join(lines)


def candidate_summary(metrics: dict) -> str:
    """ITSR's last candidate set in one line; precision and recall only where training labels exist."""
    last = metrics["refinement"][-1]
    line = f"ITSR candidates after round {last['round']}: {last['n_candidates']}"
    if not metrics["n_train_anomalies"]:
        return line + " (no known anomalies in the training set: precision and recall are undefined)"
    return line + (
        f", of which {last['n_true_anomalies_in_candidates']} of {metrics['n_train_anomalies']} known anomalies "
        f"(precision {number_or_na(last['precision'], '.2f')}, recall {number_or_na(last['recall'], '.2f')})"
    )


def console_summary(cfg: DictConfig, metrics: dict, run_dir: Path) -> str:
    """What a finished run prints: the table, ITSR's candidate set, the run directory."""
    lines = [f"\n{cfg.model.name} on {cfg.dataset.setting}, alpha={cfg.alpha}, seed={cfg.seed}", results_table(metrics)]
    if metrics.get("metrics_holdout") is not None:
        held = metrics["holdout"]
        lines.append(f"thresholds from the held-out slice ({held['n']} unlabeled training images, never trained on):")
        lines.append(results_table(metrics, "metrics_holdout"))
    if metrics.get("refinement"):
        lines.append(candidate_summary(metrics))
    lines.append(f"run directory: {run_dir}")
    return "\n".join(lines)


def headline_bacc(metrics: dict) -> float | None:
    """The first test split's BACC by the model's own criterion, for Hydra sweepers; None without a test set
    (dataset=folder without labels has no "observed" split). Runs written before metrics.json named its
    criterion listed it last."""
    splits = metrics["metrics"]
    if not splits:
        return None
    by_criterion = next(iter(splits.values()))
    if not by_criterion:
        return None
    return by_criterion[metrics.get("criterion") or list(by_criterion)[-1]]["bacc"]

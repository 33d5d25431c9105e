"""Scores a trained model on the training set and the test splits and turns them into metrics."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from itsr.data.datamodule import AnomalyDataModule
from itsr.models.base import AnomalyModel
from itsr.scoring import Thresholds, evaluate_split, fit_thresholds


@dataclass
class Evaluation:
    thresholds: Thresholds
    scores: dict[str, dict[str, torch.Tensor]]  # split ("train", "observed", ...) -> score name -> [N]
    metrics: dict[str, dict[str, dict[str, float]]]  # test split -> criterion -> metric -> value


def evaluate(
    model: AnomalyModel,
    datamodule: AnomalyDataModule,
    batch_size: int,
    rec_percentile: float,
    lik_percentile: float,
) -> Evaluation:
    """Thresholds from the whole (contaminated) training set, whatever its sample weights; then the
    metrics of every criterion on every test split."""
    scores = {"train": model.score(datamodule.train.x, batch_size)}
    for split, images in datamodule.test.items():
        scores[split] = model.score(images.x, batch_size)
    train = scores["train"]
    thresholds = fit_thresholds(train["rec_error"], train.get("log_likelihood"), rec_percentile, lik_percentile)
    metrics = {
        split: evaluate_split(
            thresholds,
            datamodule.test[split].is_anomaly,
            scores[split]["rec_error"],
            scores[split].get("log_likelihood"),
        )
        for split in datamodule.test
    }
    return Evaluation(thresholds, scores, metrics)


def error_by_group(rec_error: torch.Tensor, is_anomaly: torch.Tensor) -> dict[str, float]:
    """Mean and std of the reconstruction error of normal vs anomalous images (Figs. 1, 4)."""
    out: dict[str, float] = {}
    for group, mask in (("normal", ~is_anomaly), ("anomalous", is_anomaly)):
        values = rec_error[mask].double()
        out[f"rec_{group}_mean"] = float(values.mean()) if values.numel() else float("nan")
        out[f"rec_{group}_std"] = float(values.std()) if values.numel() > 1 else float("nan")
    return out

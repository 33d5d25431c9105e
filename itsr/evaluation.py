"""Scores a trained model on the training set and the test splits and turns them into metrics.

One function for every detector of the run contract (itsr.interface.ScoringModel): our networks and the
PyOD peers alike get their thresholds, calibrated thresholds and metrics here.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from itsr.data.datamodule import AnomalyDataModule
from itsr.detector import ThresholdDetector
from itsr.errors import check_choice
from itsr.interface import ScoringModel
from itsr.scoring import Thresholds


@dataclass
class Evaluation:
    detector: ThresholdDetector
    scores: dict[str, dict[str, torch.Tensor]]  # split ("train", "holdout", "observed", ...) -> score name -> [N]
    metrics: dict[str, dict[str, dict[str, float]]]  # test split -> criterion -> metric -> value
    # the calibrated rule (issue 23): the same percentiles of the held-out slice's scores; None without one
    holdout_detector: ThresholdDetector | None = None
    metrics_holdout: dict[str, dict[str, dict[str, float]]] | None = None

    @property
    def thresholds(self) -> Thresholds:
        return self.detector.thresholds


THRESHOLD_POPULATIONS = ("all", "retained")


def threshold_mask(weights: torch.Tensor | None, population: str) -> torch.Tensor | None:
    """Which training samples the thresholds are taken from (None: all of them).

    "all": every sample of the (contaminated) training set X, the paper's x in X (Sec. 5).
    "retained": only the samples with weight 1 at the end, i.e. X without ITSR's candidates, which
    the model was never, or negatively, trained on. For the AE and AAE both are the same set.
    """
    check_choice("threshold_population", population, THRESHOLD_POPULATIONS)
    if population == "all" or weights is None:
        return None
    retained = weights.cpu() == 1
    return retained if bool(retained.any()) else None


def evaluate(
    model: ScoringModel,
    datamodule: AnomalyDataModule,
    batch_size: int,
    rec_percentile: float,
    lik_percentile: float,
    threshold_population: str = "all",
) -> Evaluation:
    """The detector fitted on the training scores (see threshold_mask); then the metrics of every
    criterion on every test split. With a held-out slice, a second detector from its scores and the
    same metrics under it."""
    scores = {"train": model.training_scores(datamodule.train.x, batch_size)}
    for split, images in datamodule.test.items():
        scores[split] = model.score(images.x, batch_size)
    mask = threshold_mask(getattr(datamodule, "sample_weights", None), threshold_population)
    detector = model.fit_threshold_detector(scores["train"], rec_percentile, lik_percentile, mask)
    result = Evaluation(detector, scores, test_metrics(detector, datamodule, scores))
    holdout = getattr(datamodule, "holdout", None)
    if holdout is not None:
        scores["holdout"] = model.score(holdout.x, batch_size)
        result.holdout_detector = model.fit_threshold_detector(
            scores["holdout"], rec_percentile, lik_percentile, training=False
        )
        result.metrics_holdout = test_metrics(result.holdout_detector, datamodule, scores)
    return result


def test_metrics(detector: ThresholdDetector, datamodule: AnomalyDataModule, scores: dict) -> dict:
    """Every criterion's metrics on every labelled test split, under one detector's thresholds."""
    return {
        split: detector.evaluate_scores(datamodule.test[split].is_anomaly, scores[split]) for split in datamodule.test
    }


def error_by_group(rec_error: torch.Tensor, is_anomaly: torch.Tensor, prefix: str = "rec") -> dict[str, float]:
    """Mean and std of the reconstruction error (a peer: its score) of normal vs anomalous images (Figs. 1, 4)."""
    out: dict[str, float] = {}
    for group, mask in (("normal", ~is_anomaly), ("anomalous", is_anomaly)):
        values = rec_error[mask].double()
        out[f"{prefix}_{group}_mean"] = float(values.mean()) if values.numel() else float("nan")
        out[f"{prefix}_{group}_std"] = float(values.std()) if values.numel() > 1 else float("nan")
    return out

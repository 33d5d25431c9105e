"""Anomaly scores, thresholds and detection metrics as pure functions on tensors.

Conventions (paper Sec. 3, 4.1, 5): an anomaly is the positive class; a higher reconstruction error
and a lower prior log-likelihood mean "more anomalous". Thresholds are percentiles of the scores of
the (contaminated) training set the model saw.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from scipy.stats import rankdata
from sklearn.metrics import average_precision_score, roc_auc_score

from itsr.errors import OptionError

LOG_2PI = math.log(2.0 * math.pi)
# A denominator below this is treated as a degenerate (constant) training score distribution.
MIN_SCALE = 1e-12

CRITERIA = ("rec", "lik", "combined")
PERCENTILE_RANGE = (0.0, 100.0)


def reconstruction_error(x: torch.Tensor, x_rec: torch.Tensor) -> torch.Tensor:
    """Pixelwise mean squared error per sample, L(x, x') of Sec. 3; shape [N]."""
    return (x_rec - x).pow(2).flatten(1).mean(dim=1)


def standard_normal_log_likelihood(z: torch.Tensor) -> torch.Tensor:
    """log p(z) under the AAE's prior N(0, I) (Sec. 5), computed in log space for stability; [N]."""
    return -0.5 * (z.pow(2).sum(dim=1) + z.shape[1] * LOG_2PI)


def check_percentile(option: str, q: float) -> None:
    """The one rule for a percentile: a number in [0, 100] (NaN is refused)."""
    low, high = PERCENTILE_RANGE
    if isinstance(q, bool) or not isinstance(q, (int, float)) or not low <= q <= high:
        raise OptionError(option, f"must lie in [{low:g}, {high:g}]", q)


def percentile(values: torch.Tensor, q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation, as numpy's default."""
    if values.numel() == 0:
        raise ValueError("cannot take a percentile of an empty score set")
    check_percentile("percentile", q)
    return float(torch.quantile(values.double().flatten(), q / 100.0))


@dataclass(frozen=True)
class Thresholds:
    """Decision thresholds and the training medians that scale the combined score.

    t_rec: anomaly if rec_error > t_rec (p90 of training errors, Sec. 3).
    t_prior: anomaly if log_likelihood < t_prior (p10 of training log-likelihoods, Sec. 4.1);
    None for a model without a latent prior (the AE).
    """

    t_rec: float
    rec_median: float
    t_prior: float | None = None
    lik_median: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def fit_thresholds(
    train_rec_error: torch.Tensor,
    train_log_likelihood: torch.Tensor | None = None,
    rec_percentile: float = 90.0,
    lik_percentile: float = 10.0,
) -> Thresholds:
    """Thresholds from the training scores (the same set the model was trained on)."""
    t_prior = lik_median = None
    if train_log_likelihood is not None:
        t_prior = percentile(train_log_likelihood, lik_percentile)
        lik_median = percentile(train_log_likelihood, 50.0)
    return Thresholds(
        t_rec=percentile(train_rec_error, rec_percentile),
        rec_median=percentile(train_rec_error, 50.0),
        t_prior=t_prior,
        lik_median=lik_median,
    )


def criterion_scores(
    thresholds: Thresholds, rec_error: torch.Tensor, log_likelihood: torch.Tensor | None = None
) -> dict[str, torch.Tensor]:
    """One score per criterion, higher = more anomalous, positive exactly when the rule fires.

    Each score is measured in units of the distance from the training median to its threshold:
    0 at the threshold, -1 at the training median. The combined score is the larger of the two, so
    it is positive exactly when either rule fires (the OR rule of Sec. 4.1), and it stays a
    continuous, tie-free score for AUROC and AP.
    """
    rec_scale = max(thresholds.t_rec - thresholds.rec_median, MIN_SCALE)
    scores = {"rec": (rec_error.double() - thresholds.t_rec) / rec_scale}
    if log_likelihood is not None:
        if thresholds.t_prior is None or thresholds.lik_median is None:
            raise ValueError("log-likelihood scores given, but the thresholds have no t_prior")
        lik_scale = max(thresholds.lik_median - thresholds.t_prior, MIN_SCALE)
        scores["lik"] = (thresholds.t_prior - log_likelihood.double()) / lik_scale
        scores["combined"] = torch.maximum(scores["rec"], scores["lik"])
    return scores


def decisions(
    thresholds: Thresholds, rec_error: torch.Tensor, log_likelihood: torch.Tensor | None = None
) -> dict[str, torch.Tensor]:
    """Boolean anomaly decisions per criterion, with the paper's strict inequalities."""
    out = {"rec": rec_error > thresholds.t_rec}
    if log_likelihood is not None:
        out["lik"] = log_likelihood < thresholds.t_prior
        out["combined"] = out["rec"] | out["lik"]
    return out


def detection_metrics(is_anomaly: torch.Tensor, predicted: torch.Tensor, score: torch.Tensor) -> dict[str, float]:
    """TPR, TNR, BACC of the decisions; AUROC and AP of the threshold-free score.

    A split without positives (or negatives) has no TPR (or TNR): that rate, BACC, AUROC and AP
    are NaN rather than a misleading number.
    """
    truth = is_anomaly.bool().flatten()
    pred = predicted.bool().flatten()
    n_pos = int(truth.sum())
    n_neg = int((~truth).sum())
    tpr = float((pred & truth).sum()) / n_pos if n_pos else math.nan
    tnr = float((~pred & ~truth).sum()) / n_neg if n_neg else math.nan
    both = n_pos > 0 and n_neg > 0
    # scikit-learn ranks the raw scores. torchmetrics' binary_auroc / binary_average_precision treat
    # scores outside [0, 1] as logits and squash them with a sigmoid, so every score above about 37
    # tied at 1.0 (27% to 75% of the anomalies of a quick AE run): the ranks decide, not the squashing.
    target, values = truth.numpy(), score.double().flatten().numpy()
    if np.isnan(values).any():  # no order to rank: the threshold-free metrics are undefined
        both = False
    elif np.isinf(values).any():  # scikit-learn refuses infinities; their ranks are well defined
        values = rankdata(values)
    return {
        "tpr": tpr,
        "tnr": tnr,
        "bacc": (tpr + tnr) / 2.0,
        "auroc": float(roc_auc_score(target, values)) if both else math.nan,
        "ap": float(average_precision_score(target, values)) if both else math.nan,
    }


def evaluate_split(
    thresholds: Thresholds,
    is_anomaly: torch.Tensor,
    rec_error: torch.Tensor,
    log_likelihood: torch.Tensor | None = None,
) -> dict[str, dict[str, float]]:
    """Metrics of every criterion the model has on one test split."""
    scores = criterion_scores(thresholds, rec_error, log_likelihood)
    preds = decisions(thresholds, rec_error, log_likelihood)
    return {name: detection_metrics(is_anomaly, preds[name], scores[name]) for name in scores}

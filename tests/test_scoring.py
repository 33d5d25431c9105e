"""Scores, thresholds and metrics against scikit-learn and torch.distributions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, balanced_accuracy_score, roc_auc_score

from itsr.scoring import (
    criterion_scores,
    decisions,
    detection_metrics,
    evaluate_split,
    fit_thresholds,
    percentile,
    reconstruction_error,
    standard_normal_log_likelihood,
)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_match_scikit_learn(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    truth = torch.rand(500, generator=g) < 0.3
    score = torch.randn(500, generator=g) + truth.float()
    pred = score > 0.4
    m = detection_metrics(truth, pred, score)
    assert m["bacc"] == pytest.approx(balanced_accuracy_score(truth.numpy(), pred.numpy()))
    assert m["auroc"] == pytest.approx(roc_auc_score(truth.numpy(), score.numpy()), abs=1e-6)
    assert m["ap"] == pytest.approx(average_precision_score(truth.numpy(), score.numpy()), abs=1e-6)
    tp = (pred & truth).sum().item()
    assert m["tpr"] == pytest.approx(tp / truth.sum().item())


def test_split_without_anomalies_gives_nan_not_a_number_that_misleads() -> None:
    truth = torch.zeros(10, dtype=torch.bool)
    m = detection_metrics(truth, torch.ones(10, dtype=torch.bool), torch.rand(10))
    assert m["tnr"] == 0.0
    assert math.isnan(m["tpr"]) and math.isnan(m["bacc"]) and math.isnan(m["auroc"])


def test_log_likelihood_matches_multivariate_normal() -> None:
    z = torch.randn(64, 2, dtype=torch.float64) * 3
    ref = torch.distributions.MultivariateNormal(torch.zeros(2, dtype=torch.float64), torch.eye(2, dtype=torch.float64))
    assert torch.allclose(standard_normal_log_likelihood(z), ref.log_prob(z))
    far = torch.tensor([[1e4, -1e4]])
    assert torch.isfinite(standard_normal_log_likelihood(far)).all()


def test_reconstruction_error_is_pixelwise_mse() -> None:
    x = torch.zeros(2, 1, 2, 2)
    y = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]], [[[1.0, 1.0], [1.0, 1.0]]]])
    assert torch.allclose(reconstruction_error(x, y), torch.tensor([0.25, 1.0]))


def test_percentile_matches_numpy() -> None:
    v = torch.rand(101)
    for q in (10, 50, 80, 90):
        assert percentile(v, q) == pytest.approx(float(np.percentile(v.numpy(), q)))
    with pytest.raises(ValueError):
        percentile(torch.tensor([]), 50)


def test_combined_score_is_positive_exactly_when_either_rule_fires() -> None:
    g = torch.Generator().manual_seed(0)
    rec, lik = torch.rand(1000, generator=g), torch.randn(1000, generator=g)
    th = fit_thresholds(rec, lik, 90, 10)
    assert th.t_rec == pytest.approx(float(np.percentile(rec.numpy(), 90)))
    assert th.t_prior == pytest.approx(float(np.percentile(lik.numpy(), 10)))
    test_rec, test_lik = torch.rand(500, generator=g) * 1.3, torch.randn(500, generator=g) * 1.5
    scores = criterion_scores(th, test_rec, test_lik)
    preds = decisions(th, test_rec, test_lik)
    assert torch.equal(preds["combined"], (test_rec > th.t_rec) | (test_lik < th.t_prior))
    for name in ("rec", "lik", "combined"):
        assert torch.equal(scores[name] > 0, preds[name])
    # about 10% + 10% - overlap of the training set is flagged by the OR rule
    train_flagged = decisions(th, rec, lik)["combined"].float().mean()
    assert 0.15 < float(train_flagged) < 0.2


def test_evaluate_split_has_one_entry_per_criterion() -> None:
    rec, lik = torch.rand(100), torch.randn(100)
    th = fit_thresholds(rec, lik)
    truth = torch.arange(100) % 2 == 0
    assert set(evaluate_split(th, truth, rec, lik)) == {"rec", "lik", "combined"}
    ae = fit_thresholds(rec)
    assert ae.t_prior is None
    assert set(evaluate_split(ae, truth, rec)) == {"rec"}


def pairwise_auroc(truth: np.ndarray, score: np.ndarray) -> float:
    """Mann-Whitney: P(score of an anomaly > score of a normal), ties counted half."""
    pos, neg = score[truth], score[~truth]
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return float((greater + 0.5 * ties) / (len(pos) * len(neg)))


def test_auroc_and_ap_rank_raw_scores_far_outside_the_unit_interval() -> None:
    # scores from 40 to 1000: a sigmoid (torchmetrics' reading of scores outside [0, 1]) ties them all
    g = torch.Generator().manual_seed(0)
    truth = torch.rand(400, generator=g) < 0.3
    score = 40.0 + 500.0 * torch.rand(400, generator=g, dtype=torch.float64) + 400.0 * truth.double()
    m = detection_metrics(truth, score > 300, score)
    assert m["auroc"] == pytest.approx(pairwise_auroc(truth.numpy(), score.numpy()), abs=1e-12)
    assert m["auroc"] > 0.9
    # the metrics depend on the order only: a monotone rescaling into [0, 1] changes nothing
    rescaled = detection_metrics(truth, score > 300, (score - 40.0) / 1000.0)
    assert rescaled["auroc"] == pytest.approx(m["auroc"], abs=1e-12)
    assert rescaled["ap"] == pytest.approx(m["ap"], abs=1e-12)


def test_auroc_counts_tied_scores_half() -> None:
    truth = torch.tensor([True, True, False, False, True, False])
    score = torch.tensor([5.0, 100.0, 5.0, -80.0, 5.0, 100.0])
    m = detection_metrics(truth, score > 0, score)
    assert m["auroc"] == pytest.approx(pairwise_auroc(truth.numpy(), score.numpy()), abs=1e-12)
    infinite = detection_metrics(truth, score > 0, torch.where(score > 50, math.inf, score))
    assert infinite["auroc"] == pytest.approx(m["auroc"], abs=1e-12), "infinite scores rank like the largest"

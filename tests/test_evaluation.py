"""Evaluation: from which training samples the thresholds are taken."""

from __future__ import annotations

import pytest
import torch

from itsr.evaluation import evaluate
from itsr.models import AdversarialAutoencoderModule
from itsr.scoring import percentile


def test_retained_thresholds_leave_out_the_candidates(toy_datamodule) -> None:
    torch.manual_seed(0)
    module = AdversarialAutoencoderModule(16, [8], 2, [8], 1e-3, 1e-3, 1e-3, [0.9, 0.999], [0.5, 0.999])
    weights = torch.ones(len(toy_datamodule.train))
    weights[-10:] = -1.0  # the anomalies of the toy set, as ITSR's negative-weight candidates
    weights[:5] = 0.0
    toy_datamodule.set_sample_weights(weights)
    every = evaluate(module, toy_datamodule, 64, 90, 10, "all")
    retained = evaluate(module, toy_datamodule, 64, 90, 10, "retained")
    train = retained.scores["train"]
    keep = weights == 1
    assert retained.thresholds.t_rec == pytest.approx(percentile(train["rec_error"][keep], 90))
    assert retained.thresholds.t_prior == pytest.approx(percentile(train["log_likelihood"][keep], 10))
    assert every.thresholds.t_rec == pytest.approx(percentile(train["rec_error"], 90))
    assert every.thresholds.t_rec != retained.thresholds.t_rec
    with pytest.raises(ValueError, match="threshold_population must be one of"):
        evaluate(module, toy_datamodule, 64, 90, 10, "weighted")

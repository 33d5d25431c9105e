"""ThresholdDetector: thresholds come from the population it was fitted on, also when refitted or reloaded."""

from __future__ import annotations

import pytest
import torch

from itsr.detector import ThresholdDetector


def two_populations() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """900 retained samples with low errors and high likelihoods, 100 candidates far off both."""
    gen = torch.Generator().manual_seed(0)
    rec = torch.cat([torch.rand(900, generator=gen), 10 + torch.rand(100, generator=gen)])
    lik = torch.cat([-torch.rand(900, generator=gen), -10 - torch.rand(100, generator=gen)])
    retained = torch.arange(1000) < 900
    return rec, lik, retained


def test_refit_draws_from_the_fitted_population_not_from_every_training_sample() -> None:
    rec, lik, retained = two_populations()
    detector = ThresholdDetector.fit(rec, lik, 90, 10, mask=retained)
    assert detector.thresholds.t_rec < 1 and detector.thresholds.t_prior > -1  # the candidates did not count
    refitted = detector.refit(rec_percentile=95, lik_percentile=5)
    assert refitted.thresholds.t_rec < 1 and refitted.thresholds.t_prior > -1
    assert refitted.thresholds.t_rec > detector.thresholds.t_rec  # a higher percentile, a higher T_rec
    everyone = ThresholdDetector.fit(rec, lik, 90, 10).refit(rec_percentile=95, lik_percentile=5)
    assert everyone.thresholds.t_rec > 10 and everyone.thresholds.t_prior < -10  # p95 of all 1000 is a candidate


def test_the_population_survives_the_model_file_round_trip() -> None:
    rec, lik, retained = two_populations()
    detector = ThresholdDetector.fit(rec, lik, 90, 10, mask=retained)
    reloaded = ThresholdDetector.from_dict(detector.to_dict())
    assert torch.equal(reloaded.population, retained)
    assert reloaded.refit(rec_percentile=95).thresholds == detector.refit(rec_percentile=95).thresholds


def test_a_model_file_written_before_the_population_field_refits_on_all_samples() -> None:
    rec, lik, _ = two_populations()
    payload = ThresholdDetector.fit(rec, lik, 90, 10).to_dict()
    del payload["threshold_population"]
    reloaded = ThresholdDetector.from_dict(payload)
    assert reloaded.population is None and reloaded.refit(rec_percentile=95).thresholds.t_rec > 10


def test_a_single_score_detector_has_the_peers_two_rules_on_one_score() -> None:
    """A PyOD peer's rules: `score` above p90 of the training scores, `contamination` above p95 (PyOD's
    threshold_ at contamination 0.05); the further rule is listed first, the paper's rule last (the default)."""
    train = torch.arange(1000, dtype=torch.float64)
    detector = ThresholdDetector.fit_single_score(train, 90, "score", {"contamination": 95})
    assert detector.criteria == ("contamination", "score") and detector.default_criterion == "score"
    assert detector.reported_thresholds() == {"contamination": pytest.approx(949.05), "score": pytest.approx(899.1)}
    new = {"score": torch.tensor([0.0, 900.0, 950.0])}
    assert detector.decide_of(new)["score"].tolist() == [False, True, True]
    assert detector.decide_of(new)["contamination"].tolist() == [False, False, True]
    for name, values in detector.scores_of(new).items():  # positive exactly when the rule flags
        assert torch.equal(values > 0, detector.decide_of(new)[name])
    reloaded = ThresholdDetector.from_dict(detector.to_dict())
    assert reloaded.reported_thresholds() == detector.reported_thresholds() and reloaded.criteria == detector.criteria
    higher = reloaded.refit(rec_percentile=99)  # --rec-percentile moves the `score` rule only
    assert higher.reported_thresholds()["score"] > 980 and higher.extra_rules == detector.extra_rules


def test_the_sweepers_headline_is_the_bacc_of_the_criterion_metrics_json_names() -> None:
    """headline_bacc reads metrics.json's `criterion` (the model's own rule); older files listed it last."""
    from itsr.results import headline_bacc

    by_criterion = {"contamination": {"bacc": 0.6}, "score": {"bacc": 0.9}}
    assert headline_bacc({"metrics": {"observed": by_criterion}, "criterion": "contamination"}) == 0.6
    assert headline_bacc({"metrics": {"observed": by_criterion}}) == 0.9
    assert headline_bacc({"metrics": {}}) is None
    detector = ThresholdDetector.fit(torch.rand(100), torch.rand(100), 90, 10)
    assert detector.default_criterion == "combined"  # the paper's OR rule where there is a prior (Sec. 4.1)
    assert ThresholdDetector.fit(torch.rand(100), None, 90, 10).default_criterion == "rec"

"""ITSR's refinement: candidate detection, retraining weights, schedule, callback, exact resume."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from itsr.refinement import (
    ITSRRefinement,
    RefinementSchedule,
    candidate_quality,
    detect_candidates,
    retraining_weights,
)


def planted_codes(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    normal = rng.normal(0.0, 1.0, size=(950, 2))
    # sparse and far from the mode, as Sec. 4.2 expects of anomalies under a unimodal prior
    angle, radius = rng.uniform(0, 2 * np.pi, 50), rng.uniform(4.0, 6.0, 50)
    outliers = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)
    return np.concatenate([normal, outliers]), np.r_[np.zeros(950, bool), np.ones(50, bool)]


def test_svm_flags_planted_outliers_and_candidates_only_grow() -> None:
    codes, truth = planted_codes()
    candidates = np.zeros(len(codes), dtype=bool)
    sizes = []
    for _ in range(4):
        new = detect_candidates(codes, candidates, nu=0.02)
        assert not (new & candidates).any(), "new candidates are new"
        grown = candidates | new
        assert (grown >= candidates).all()
        candidates = grown
        sizes.append(int(candidates.sum()))
    assert sizes == sorted(sizes) and sizes[-1] > sizes[0]
    quality = candidate_quality(candidates, truth)
    assert quality["recall"] >= 0.9, quality


def test_fit_on_all_refits_on_every_code() -> None:
    codes, _ = planted_codes()
    first = detect_candidates(codes, np.zeros(len(codes), bool), nu=0.05, fit_on="all")
    again = detect_candidates(codes, first, nu=0.05, fit_on="all")
    # the same SVM on the same codes finds the same outliers: nothing new
    assert again.sum() == 0
    with pytest.raises(ValueError, match="fit_on"):
        detect_candidates(codes, first, nu=0.05, fit_on="weighted")


def test_retraining_threshold_and_weights_on_a_hand_made_example() -> None:
    rec = np.array([0.1, 0.2, 0.9, 0.3, 0.5, 0.7, 0.05])
    candidates = np.array([False, True, True, True, True, True, False])
    weights, t = retraining_weights(rec, candidates, percentile=80, w_anomaly=-0.5)
    # errors in A: 0.2 0.3 0.5 0.7 0.9 -> p80 (linear) = 0.74
    assert t == pytest.approx(0.74)
    assert weights.tolist() == [1.0, 0.0, -0.5, 0.0, 0.0, 0.0, 1.0]
    with pytest.raises(ValueError, match="w_anomaly"):
        retraining_weights(rec, candidates, 80, w_anomaly=0.0)


def test_schedule_by_epoch() -> None:
    s = RefinementSchedule(pretrain_epochs=500, rounds=10, round_epochs=100, retrain_epochs=1000)
    assert s.total_epochs == 2500 and s.retrain_start == 1500
    assert [s.detection_round_after(e) for e in (499, 500, 600, 1400, 1500)] == [None, 1, 2, 10, None]
    assert (s.phase_of_epoch(499), s.phase_of_epoch(500), s.phase_of_epoch(1500)) == (
        "pretraining",
        "refinement",
        "retraining",
    )
    with pytest.raises(ValueError, match="model.refinement.rounds"):
        RefinementSchedule(1, 0, 1, 1)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("nu", 0.0, "nu"),
        ("nu", 1.5, "nu"),
        ("w_anomaly", 1.0, "w_anomaly"),
        ("retrain_percentile", 120, "retrain_percentile"),
    ],
)
def test_callback_rejects_bad_values_naming_the_key(key, value, message) -> None:
    kwargs = dict(
        pretrain_epochs=1,
        rounds=1,
        round_epochs=1,
        retrain_epochs=1,
        nu=0.02,
        kernel="rbf",
        gamma="scale",
        fit_on="remaining",
        retrain_percentile=80,
        w_anomaly=-1.0,
        score_batch_size=64,
    )
    kwargs[key] = value
    with pytest.raises(ValueError, match=f"model.refinement.{message}"):
        ITSRRefinement(**kwargs)


def test_callback_state_round_trip() -> None:
    cb = ITSRRefinement(1, 2, 1, 1, 0.02, "rbf", "scale", "remaining", 80, -1.0, 64)
    cb.candidates = np.array([True, False, True])
    cb.rounds_done, cb.phase = 2, "refinement"
    cb.history = [{"round": 1}, {"round": 2}]
    other = ITSRRefinement(1, 2, 1, 1, 0.02, "rbf", "scale", "remaining", 80, -1.0, 64)
    other.load_state_dict(cb.state_dict())
    assert other.candidates.tolist() == [True, False, True]
    assert (other.rounds_done, other.phase, other.history) == (2, "refinement", cb.history)
    assert isinstance(cb.state_dict()["candidates"], torch.Tensor), "safe to load with weights_only"


def test_nystroem_approximation_finds_planted_outliers_like_the_exact_svm() -> None:
    codes, truth = planted_codes()
    exact = detect_candidates(codes, np.zeros(len(codes), bool), nu=0.1, method="exact")
    approx = detect_candidates(codes, np.zeros(len(codes), bool), nu=0.1, method="nystroem")
    assert candidate_quality(exact, truth)["recall"] >= 0.9
    assert candidate_quality(approx, truth)["recall"] >= 0.9
    with pytest.raises(ValueError, match="model.refinement.svm"):
        detect_candidates(codes, np.zeros(len(codes), bool), nu=0.05, method="fast")

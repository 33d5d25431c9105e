"""Refinement for any model (`refine=itsr`): one refinement for networks and peers, ITSR as a special case."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from itsr.refinement import resolve_by, top_scoring
from itsr.results import method_label
from itsr.run import train_and_evaluate
from itsr.scoring import detection_metrics
from tests.conftest import compose_cfg, run_itsr, tiny_overrides
from tests.test_run import ITSR_TINY

RUN_KEYS = ("thresholds", "metrics", "n_train", "n_train_anomalies", "refinement", "retraining", "train_errors")


def test_top_scoring_takes_the_highest_scores_outside_the_candidate_set() -> None:
    scores = np.array([9.0, 1.0, 8.0, 7.0, 2.0, 6.0, 3.0, 5.0, 4.0, 0.0])
    candidates = np.zeros(10, dtype=bool)
    candidates[0] = True  # already in A: never taken again, and it does not count towards the pool
    new = top_scoring(scores, candidates, nu=0.34)  # round(0.34 * 9) = 3 of the 9 remaining
    assert np.flatnonzero(new).tolist() == [2, 3, 5]
    assert not top_scoring(scores, candidates, nu=0.01).any()  # round(0.09) = 0: nothing to take
    with pytest.raises(FloatingPointError):
        top_scoring(np.array([1.0, np.nan]), np.zeros(2, dtype=bool), nu=0.5)


def test_by_auto_is_the_svm_for_networks_and_the_score_for_peers() -> None:
    assert resolve_by("auto", has_codes=True) == "svm" and resolve_by("auto", has_codes=False) == "score"
    assert resolve_by("score", has_codes=True) == "score"
    labels = {
        tuple(o): method_label(compose_cfg(o))
        for o in (
            ["model=itsr"],
            ["model=aae", "refine=itsr"],
            ["model=aae", "refine=itsr", "model.refinement.by=score"],
            ["model=ae", "refine=itsr"],
            ["model=knn", "refine=itsr"],
            ["model=knn"],
        )
    }
    assert list(labels.values()) == ["itsr", "itsr", "aae+itsr-score", "ae+itsr-svm", "knn+itsr-score", "knn"]


@pytest.mark.parametrize("model", ["ae", "aae", "itsr", "knn"])
def test_by_on_the_command_line_is_model_refinement_by(model: str) -> None:
    """`by=X` (conf/by/) is the same config as `model.refinement.by=X`, and it changes what the default gives."""
    refine = [] if model == "itsr" else ["refine=itsr"]
    by = "score" if model == "knn" else "batch"  # a value other than the default, auto (knn takes no batch)
    short = compose_cfg([f"model={model}", *refine, f"by={by}"])
    long = compose_cfg([f"model={model}", *refine, f"model.refinement.by={by}"])
    default = compose_cfg([f"model={model}", *refine])
    assert OmegaConf.to_container(short.model) == OmegaConf.to_container(long.model)
    assert short.model.refinement.by == by and default.model.refinement.by == "auto"
    if "callbacks" in short.model:  # a network's refinement callback reads the same node
        assert short.model.callbacks.refinement.by == by


def test_by_without_refinement_is_refused_naming_refine_itsr(tmp_path) -> None:
    out = run_itsr("model=ae", "by=svm", f"hydra.run.dir={tmp_path / 'run'}", timeout=120)
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert "by=svm: model=ae runs without refinement" in out.stderr and "model=ae refine=itsr by=svm" in out.stderr
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_model_aae_with_refine_itsr_is_model_itsr(tmp_path) -> None:
    """One refinement, not two: ITSR is the AAE with refine=itsr, number for number."""
    itsr = train_and_evaluate(compose_cfg(tiny_overrides("itsr") + ITSR_TINY), tmp_path / "itsr")
    overrides = tiny_overrides("aae") + ["refine=itsr", "model.refinement.by=svm"] + ITSR_TINY
    refined = train_and_evaluate(compose_cfg(overrides), tmp_path / "aae_refined")
    assert refined["config"]["model"] == itsr["config"]["model"] == "itsr"
    for key in RUN_KEYS:
        assert refined[key] == itsr[key], key
    assert refined["config"]["schedule"] == itsr["config"]["schedule"]


@pytest.mark.parametrize("by", ["svm", "score"])
def test_the_ae_refines_by_its_codes_or_its_scores(tmp_path, by: str) -> None:
    overrides = tiny_overrides("ae") + ["refine=itsr", f"model.refinement.by={by}"] + ITSR_TINY
    metrics = train_and_evaluate(compose_cfg(overrides), tmp_path)
    assert metrics["config"]["model"] == f"ae+itsr-{by}" and metrics["config"]["refine_by"] == by
    rounds = metrics["refinement"]
    assert [r["round"] for r in rounds] == [1, 2, 3]
    sizes = [r["n_candidates"] for r in rounds]
    assert sizes == sorted(sizes) and sizes[0] > 0  # A only grows
    if by == "score":  # round(0.02 * remaining) a round, as top_scoring takes them
        assert sizes[0] == round(0.02 * metrics["n_train"])
    assert metrics["retraining"]["n_negative"] > 0  # the AE retrains with negative weights too
    with open(tmp_path / "train_scores.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert sum(int(r["candidate"]) for r in rows) == sizes[-1]


def _train_scores(run_dir) -> tuple[torch.Tensor, torch.Tensor]:
    with open(run_dir / "train_scores.csv") as handle:
        rows = list(csv.DictReader(handle))
    return (
        torch.tensor([int(r["anomaly"]) for r in rows]).bool(),
        torch.tensor([float(r["score"]) for r in rows], dtype=torch.float64),
    )


@pytest.mark.slow
def test_a_refined_knn_finds_anomalies_and_ranks_them_higher(tmp_path) -> None:
    """The issue's command, through the CLI. Direction: the rounds find the planted anomalies far better
    than a random pick (precision alpha), and refitting without them ranks them higher among the
    training scores than the plain detector does (an anomaly no longer has its fellows as neighbours)."""
    common = ["dataset=mnist", "alpha=0.1", "experiment=quick", "threads=1", "progress.enabled=false"]
    refined = run_itsr("model=knn", "refine=itsr", *common, f"hydra.run.dir={tmp_path / 'refined'}")
    assert refined.returncode == 0, refined.stderr[-3000:]
    plain = run_itsr("model=knn", *common, f"hydra.run.dir={tmp_path / 'plain'}")
    assert plain.returncode == 0, plain.stderr[-3000:]
    metrics = json.loads((tmp_path / "refined" / "metrics.json").read_text())
    assert metrics["config"]["model"] == "knn+itsr-score"
    rounds = metrics["refinement"]
    assert [r["round"] for r in rounds] == list(range(1, 11))
    assert rounds[0]["precision"] > 3 * 0.1  # a random pick would have precision alpha
    assert (tmp_path / "refined" / "refinement.csv").is_file()
    is_anomaly, scores = _train_scores(tmp_path / "refined")
    plain_anomaly, plain_scores = _train_scores(tmp_path / "plain")
    assert torch.equal(is_anomaly, plain_anomaly)

    def training_auroc(values: torch.Tensor) -> float:
        return detection_metrics(is_anomaly, values > values.median(), values)["auroc"]

    assert training_auroc(scores) > training_auroc(plain_scores)


@pytest.mark.parametrize(("by", "why"), [("svm", "has no latent codes"), ("batch", "not in batches")])
def test_a_peer_cannot_refine_by_an_svm_on_codes_or_by_batches(tmp_path, by: str, why: str) -> None:
    out = run_itsr(
        "model=iforest", "refine=itsr", f"model.refinement.by={by}", "threads=1", f"hydra.run.dir={tmp_path}"
    )
    assert out.returncode != 0
    assert why in out.stderr and "model.refinement.by=score" in out.stderr
    assert "Traceback" not in out.stderr


def test_dropping_the_top_of_a_batch_removes_exactly_those_samples_from_the_loss() -> None:
    """LOE-hard's step: the round(fraction * n) highest losses among the samples that count get weight 0,
    and the weighted loss (and its gradient) is then that of the batch without them."""
    from itsr.models.base import drop_top_of_batch, weighted_mean

    losses = torch.tensor([0.1, 0.9, 0.2, 0.8, 0.3, 0.7, 0.4, 0.6, 0.5, 5.0], requires_grad=True)
    weights = torch.ones(10)
    weights[9] = 0.0  # already out of training (weight 0): neither ranked nor counted
    new = drop_top_of_batch(losses, weights, fraction=0.25)  # round(0.25 * 9) = 2 of the 9 that count
    assert torch.nonzero(new == 0).flatten().tolist() == [1, 3, 9]
    loss = weighted_mean(losses, new)
    loss.backward()
    kept = [0, 2, 4, 5, 6, 7, 8]
    assert float(loss.detach()) == pytest.approx(float(losses[kept].detach().mean()))
    assert losses.grad[[1, 3, 9]].abs().sum() == 0 and (losses.grad[kept] > 0).all()
    assert torch.equal(drop_top_of_batch(losses, weights, fraction=0.01), weights)  # round(0.09) = 0


def test_the_ae_refined_by_batches_drops_mostly_anomalies_and_never_retrains_negatively(tmp_path) -> None:
    """by=batch (LOE-hard): from the end of pretraining every batch's top 10% by error is dropped; on MNIST
    0 v 2 at 5% the dropped samples are far richer in planted anomalies than a random pick (precision 0.05)."""
    overrides = tiny_overrides("ae") + ["refine=itsr", "model.refinement.by=batch"] + ITSR_TINY
    metrics = train_and_evaluate(compose_cfg(overrides), tmp_path)
    assert metrics["config"]["model"] == "ae+itsr-batch" and metrics["config"]["refine_by"] == "batch"
    rounds = metrics["refinement"]
    assert rounds and all(r["precision"] > 3 * 0.05 for r in rounds)
    # every epoch after pretraining drops about 10% of the training set: each batch its top tenth
    assert all(abs(r["n_candidates"] - 0.1 * metrics["n_train"]) < 0.02 * metrics["n_train"] for r in rounds)
    assert metrics["retraining"] == {}  # LOE-hard has no negative-weight phase
    with open(tmp_path / "train_scores.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert sum(int(r["candidate"]) for r in rows) == rounds[-1]["n_candidates"]
    assert {float(r["weight"]) for r in rows} == {1.0}  # the data's weights are never changed


def test_the_score_gap_tells_planted_outliers_from_a_smooth_tail() -> None:
    """The label-free signal: the top 2% of an anomaly-free Gaussian sit about 2.4 std above the pool; 2%
    planted outliers far out sit much further. Samples already in A are not part of the pool."""
    from itsr.refinement import score_gap

    rng = np.random.default_rng(0)
    clean = rng.normal(size=20000)
    none_yet = np.zeros(clean.size, dtype=bool)
    assert score_gap(clean, none_yet, top_scoring(clean, none_yet, 0.02)) == pytest.approx(2.42, abs=0.1)
    planted = clean.copy()
    planted[:400] += 8.0
    assert score_gap(planted, none_yet, top_scoring(planted, none_yet, 0.02)) > 4.0
    in_a = np.zeros(clean.size, dtype=bool)
    in_a[:400] = True  # once the outliers are in A, the next round's pool is the clean rest again
    assert score_gap(planted, in_a, top_scoring(planted, in_a, 0.02)) == pytest.approx(2.42, abs=0.15)


def test_a_batch_fraction_outside_0_1_is_named_before_training(tmp_path) -> None:
    out = run_itsr(
        "model=ae",
        "refine=itsr",
        "model.refinement.by=batch",
        "model.refinement.batch_fraction=1.5",
        "threads=1",
        f"hydra.run.dir={tmp_path}",
    )
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert "model.refinement.batch_fraction must lie in (0, 1), got 1.5" in out.stderr
    assert not (tmp_path / "metrics.json").exists()

"""Issue 23: thresholds calibrated on a held-out slice of the unlabeled training set. The slice never
reaches training (sampler, weights, batch norm's statistics, the refinement's SVM), the calibrated
thresholds are the stated percentiles of its scores, and both rules are reported and usable."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from itsr.data.splits import holdout_split
from itsr.errors import OptionError
from itsr.run import train_and_evaluate
from tests.conftest import DATA_DIR, REPO_ROOT, compose_cfg, tiny_overrides

TINY_ITSR = [
    *tiny_overrides("itsr"),
    "dataset.epochs.itsr_pretrain=2",
    "dataset.epochs.itsr_round=1",
    "dataset.epochs.itsr_retrain=2",
    "model.refinement.rounds=2",
    "curves.every_n_epochs=2",
    "scoring.holdout_fraction=0.1",
]


def read_csv(path: Path) -> list[dict]:
    with open(path) as handle:
        return list(csv.DictReader(handle))


def test_the_split_is_seeded_disjoint_and_of_the_stated_size() -> None:
    trained, held = holdout_split(1000, 0.1, seed=3)
    assert len(held) == 100 and len(trained) == 900
    assert not set(trained) & set(held) and set(trained) | set(held) == set(range(1000))
    again, held_again = holdout_split(1000, 0.1, seed=3)
    assert np.array_equal(held, held_again)
    assert not np.array_equal(held, holdout_split(1000, 0.1, seed=4)[1])
    assert holdout_split(1000, 0.0, seed=3)[1].size == 0
    for bad in (-0.1, 0.5, True, "0.1"):
        with pytest.raises(OptionError, match="holdout_fraction must lie in"):
            holdout_split(1000, bad, seed=0)


class TrainingInputs(pl.Callback):
    """Every image a training step saw, and the batch norm statistics before and after scoring."""

    def __init__(self):
        self.seen: list[torch.Tensor] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.seen.append(batch["x"].detach().clone())


@pytest.fixture(scope="module")
def itsr_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("holdout") / "run"
    recorder = TrainingInputs()
    metrics = train_and_evaluate(compose_cfg(TINY_ITSR), run_dir, extra_callbacks=(recorder,))
    return run_dir, metrics, recorder


@pytest.mark.slow
def test_held_out_images_never_reach_training(itsr_run, mnist_arrays) -> None:
    from itsr.data.datamodule import BenchmarkDataModule

    run_dir, metrics, recorder = itsr_run
    dm = BenchmarkDataModule("mnist", 0, 2, 0.05, seed=0, data_dir=DATA_DIR, batch_size=128, download=False)
    dm.hold_out(0.1)
    dm.setup()
    assert metrics["holdout"] == {
        "fraction": 0.1,
        "n": len(dm.holdout),
        "n_anomalies": int(dm.holdout.is_anomaly.sum()),
    }
    assert metrics["n_train"] == len(dm.train) and metrics["n_train"] + len(dm.holdout) == 5923 + 312
    # the sampler and the weights: no batch of any phase held a held-out image
    seen = torch.cat(recorder.seen)
    held = {bytes(row.numpy().tobytes()) for row in dm.holdout.x}
    trained = {bytes(row.numpy().tobytes()) for row in dm.train.x}
    assert not held & trained, "MNIST has no duplicate images between the two parts"
    assert not {bytes(row.numpy().tobytes()) for row in seen} & held
    # refinement and its SVM: candidates and weights are over the trained part only
    assert len(read_csv(run_dir / "train_scores.csv")) == len(dm.train)
    assert metrics["refinement"][-1]["n_candidates"] <= len(dm.train)
    assert len(read_csv(run_dir / "holdout_scores.csv")) == len(dm.holdout)


@pytest.mark.slow
def test_scoring_the_held_out_slice_leaves_batch_norm_statistics_alone(itsr_run) -> None:
    from itsr.model_file import load_model

    run_dir, _, _ = itsr_run
    module, _, _ = load_model(run_dir, thresholds="train")
    before = {k: v.clone() for k, v in module.state_dict().items() if "running" in k}
    assert before, "the AAE's encoder has batch norm"
    module.score(torch.rand(64, 784), 32)
    after = {k: v for k, v in module.state_dict().items() if "running" in k}
    assert all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.slow
def test_the_calibrated_thresholds_are_the_stated_percentiles_of_the_held_out_scores(itsr_run) -> None:
    run_dir, metrics, _ = itsr_run
    rows = read_csv(run_dir / "holdout_scores.csv")
    rec = np.array([float(r["rec_error"]) for r in rows])
    lik = np.array([float(r["log_likelihood"]) for r in rows])
    assert metrics["thresholds_holdout"]["t_rec"] == pytest.approx(np.percentile(rec, 90), rel=1e-9)
    assert metrics["thresholds_holdout"]["t_prior"] == pytest.approx(np.percentile(lik, 10), rel=1e-9)
    train = read_csv(run_dir / "train_scores.csv")
    assert metrics["thresholds"]["t_rec"] == pytest.approx(np.percentile([float(r["rec_error"]) for r in train], 90))
    # both rules from the same model: same AUROC, each split's TNR from its own threshold
    for split in ("observed", "unobserved"):
        paper, calibrated = metrics["metrics"][split]["rec"], metrics["metrics_holdout"][split]["rec"]
        assert paper["auroc"] == calibrated["auroc"]
    test = read_csv(run_dir / "test_scores.csv")
    normals = np.array([float(r["rec_error"]) for r in test if r["split"] == "observed" and r["anomaly"] == "0"])
    tnr = float(np.mean(normals <= metrics["thresholds_holdout"]["t_rec"]))
    assert metrics["metrics_holdout"]["observed"]["rec"]["tnr"] == pytest.approx(tnr)
    curves = read_csv(run_dir / "curves.csv")
    assert "observed_combined_bacc_holdout" in curves[-1] and "observed_combined_bacc" in curves[-1]


@pytest.mark.slow
def test_predict_uses_the_held_out_thresholds_unless_told_otherwise(itsr_run, tmp_path) -> None:
    run_dir, metrics, _ = itsr_run
    images = tmp_path / "images"
    images.mkdir()
    from PIL import Image

    for i in range(4):
        Image.fromarray((np.random.default_rng(i).random((28, 28)) * 255).astype(np.uint8)).save(images / f"{i}.png")

    def predict(*options: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "itsr.predict",
                str(run_dir),
                str(images),
                "--out",
                str(tmp_path / "s.csv"),
                "--overwrite",
                *options,
            ],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )

    auto, train = predict(), predict("--thresholds", "train")
    assert auto.returncode == 0 and train.returncode == 0, auto.stderr + train.stderr
    assert f"T_rec {metrics['thresholds_holdout']['t_rec']:.5g}" in auto.stdout and "held-out slice" in auto.stdout
    assert f"T_rec {metrics['thresholds']['t_rec']:.5g}" in train.stdout and "training set" in train.stdout


@pytest.mark.slow
def test_a_peer_is_fitted_on_the_trained_part_and_calibrated_on_the_held_out_one(tmp_path) -> None:
    metrics = train_and_evaluate(compose_cfg(["model=iforest", "threads=1", "scoring.holdout_fraction=0.2"]), tmp_path)
    rows = read_csv(tmp_path / "holdout_scores.csv")
    assert metrics["n_train"] + metrics["holdout"]["n"] == 5923 + 312 and len(rows) == metrics["holdout"]["n"]
    scores = np.array([float(r["score"]) for r in rows])
    assert metrics["thresholds_holdout"]["score"] == pytest.approx(np.percentile(scores, 90), rel=1e-9)
    assert set(metrics["metrics_holdout"]) == {"observed", "unobserved"}


def test_a_held_out_fraction_out_of_range_is_refused_by_name(tmp_path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "itsr.run",
            "model=itsr",
            "scoring.holdout_fraction=0.6",
            f"data_dir={DATA_DIR}",
            f"hydra.run.dir={tmp_path / 'bad'}",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "scoring.holdout_fraction must lie in [0, 0.5), got 0.6" in out.stderr


@pytest.mark.slow
def test_a_model_without_a_held_out_slice_refuses_holdout_thresholds(tmp_path) -> None:
    run_dir = tmp_path / "run"
    train_and_evaluate(compose_cfg([*tiny_overrides("ae"), "dataset.epochs.ae=1"]), run_dir)
    out = subprocess.run(
        [sys.executable, "-m", "itsr.predict", str(run_dir), str(run_dir), "--thresholds", "holdout"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "trained without a held-out slice" in out.stderr and "--thresholds train" in out.stderr


def test_the_report_sets_both_rules_side_by_side(tmp_path) -> None:
    from itsr.atomic import write_json_atomic
    from itsr.report.markdown import render
    from itsr.report.runs import read_runs
    from tests.test_report import fake_run

    runs_made = [(0.1, 0, 0.50, 0.80, 0.010), (0.1, 1, 0.52, 0.84, 0.012), (0.2, 0, 0.50, 0.86, 0.011)]
    for fraction, seed, paper, calibrated, t_rec in runs_made:
        run_dir = fake_run(tmp_path, f"ae{seed}_{fraction}", model="ae", seed=seed, bacc=paper)
        metrics = json.loads((run_dir / "metrics.json").read_text())
        held = json.loads(json.dumps(metrics["metrics"]))
        for split in held:
            held[split]["rec"].update(bacc=calibrated, tnr=0.9)
        metrics |= {
            "holdout": {"fraction": fraction, "n": 600, "n_anomalies": 30},
            "metrics_holdout": held,
            "thresholds_holdout": {"t_rec": t_rec, "t_prior": None},
            "n_train": round(6235 * (1 - fraction)),
        }
        write_json_atomic(run_dir / "metrics.json", metrics)
    fake_run(tmp_path, "itsr0")  # no held-out slice: not in the table
    runs, problems = read_runs([tmp_path])
    text = render(runs, problems, [])
    # one row per hold-out fraction: the seeds of 0.1 together, the 0.2 run apart, with the threshold's spread
    row = "| mnist_0v2 | 0.05 | ae | observed | 2 | 0.1 | 5612 | 0.011 ± 0.0014 | 0.510 ± 0.014 | 0.820 ± 0.028 |"
    assert row in text
    assert "| mnist_0v2 | 0.05 | ae | observed | 1 | 0.2 | 4988 | 0.011 ± 0 | 0.500 | 0.860 |" in text
    assert "| itsr |" not in text.split("## Calibrated thresholds")[1].split("\n## ")[0]

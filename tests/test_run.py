"""End to end on real MNIST with tiny networks: the results contract, the CLI, exact resume."""

from __future__ import annotations

import csv
import json
import math

import pytest
import pytorch_lightning as pl
import torch

from itsr.run import train_and_evaluate
from itsr.scoring import Thresholds, evaluate_split
from tests.conftest import compose_cfg, run_itsr, tiny_overrides

METRIC_KEYS = {"tpr", "tnr", "bacc", "auroc", "ap"}
EPOCHS_TINY = [
    "dataset.epochs.ae=2",
    "dataset.epochs.aae=2",
    "dataset.epochs.itsr_pretrain=2",
    "dataset.epochs.itsr_round=1",
    "dataset.epochs.itsr_retrain=2",
    "curves.every_n_epochs=1",
    "checkpoint.every_n_epochs=1",
]
ITSR_TINY = [*EPOCHS_TINY, "model.refinement.rounds=3"]


def read_scores(path):
    with open(path) as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize("model", ["ae", "aae", "itsr"])
def test_a_run_writes_the_complete_results_contract(tmp_path, model: str) -> None:
    overrides = tiny_overrides(model) + (ITSR_TINY if model == "itsr" else EPOCHS_TINY)
    metrics = train_and_evaluate(compose_cfg(overrides), tmp_path)
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    assert on_disk == metrics
    assert on_disk["config"]["model"] == model and on_disk["config"]["alpha"] == 0.05
    assert on_disk["n_train"] == 5923 + 312 and on_disk["n_train_anomalies"] == 312
    criteria = {"rec"} if model == "ae" else {"rec", "lik", "combined"}
    for split in ("observed", "unobserved"):
        assert set(on_disk["metrics"][split]) == criteria
        for values in on_disk["metrics"][split].values():
            assert set(values) == METRIC_KEYS
            assert all(0.0 <= v <= 1.0 for v in values.values())
    assert (on_disk["thresholds"]["t_prior"] is None) == (model == "ae")

    rows = read_scores(tmp_path / "test_scores.csv")
    expected_columns = ["split", "label", "anomaly", "rec_error"] + ([] if model == "ae" else ["log_likelihood"])
    assert list(rows[0]) == expected_columns
    assert sum(r["split"] == "observed" for r in rows) == 980 + 1032
    assert sum(r["split"] == "unobserved" for r in rows) == 10000 - 1032
    # every metric can be recomputed from test_scores.csv and the thresholds in metrics.json
    obs = [r for r in rows if r["split"] == "observed"]
    th = on_disk["thresholds"]
    train_errors = torch.tensor([1.0])  # medians only scale the scores; AUROC/AP do not depend on them
    recomputed = evaluate_split(
        Thresholds(
            th["t_rec"],
            float(train_errors.median()) - 1.0,
            th["t_prior"],
            None if th["t_prior"] is None else th["t_prior"] + 1.0,
        ),
        torch.tensor([int(r["anomaly"]) for r in obs]).bool(),
        torch.tensor([float(r["rec_error"]) for r in obs], dtype=torch.float64),
        None if model == "ae" else torch.tensor([float(r["log_likelihood"]) for r in obs], dtype=torch.float64),
    )
    for criterion in ("rec",) if model == "ae" else ("rec", "lik"):
        for key in ("tpr", "tnr", "bacc", "auroc"):
            assert recomputed[criterion][key] == pytest.approx(on_disk["metrics"]["observed"][criterion][key], abs=1e-6)

    curves = read_scores(tmp_path / "curves.csv")
    assert {"epoch", "rec_normal_mean", "rec_anomalous_mean", "observed_rec_bacc"} <= set(curves[0])
    assert (tmp_path / "train_errors.png").stat().st_size > 1000
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
    if model == "itsr":
        assert [r["round"] for r in on_disk["refinement"]] == [1, 2, 3]
        sizes = [r["n_candidates"] for r in on_disk["refinement"]]
        nu, n = 0.02, on_disk["n_train"]
        assert sizes[0] > 0
        # each round adds about nu of the codes outside A (fit_on=remaining)
        assert 0.5 * n * (1 - (1 - nu) ** 3) <= sizes[-1] <= 1.5 * n * (1 - (1 - nu) ** 3), sizes
        for r in on_disk["refinement"]:
            assert set(r) >= {"round", "n_candidates", "n_true_anomalies_in_candidates", "precision", "recall"}
        retraining = on_disk["retraining"]
        assert retraining["n_negative"] > 0
        for key in ("log_likelihood", "rec_error"):  # where retraining took the negative-weight samples
            assert math.isfinite(retraining[f"negative_{key}_start"]) and math.isfinite(
                retraining[f"negative_{key}_end"]
            )
        assert retraining["negative_log_likelihood_start"] != retraining["negative_log_likelihood_end"]
        assert [c["phase"] for c in curves][-1] == "retraining"
        assert (tmp_path / "refinement.csv").is_file()


class Preempted(RuntimeError):
    pass


class StopAtEpoch(pl.Callback):
    """Simulates a job killed at the start of an epoch (after the previous epoch's checkpoint)."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            raise Preempted("simulated preemption")


def test_a_run_killed_mid_refinement_resumes_exactly(tmp_path) -> None:
    overrides = tiny_overrides("itsr") + ITSR_TINY
    whole = train_and_evaluate(compose_cfg(overrides), tmp_path / "whole")

    killed_dir = tmp_path / "killed"
    # epoch 3 is the second refinement epoch: pretraining (0, 1), round 1 after epoch 2, ...
    with pytest.raises(Preempted):
        train_and_evaluate(compose_cfg(overrides), killed_dir, extra_callbacks=[StopAtEpoch(3)])
    assert not (killed_dir / "metrics.json").exists(), "an interrupted run leaves no metrics.json"
    state = torch.load(killed_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert state["epoch"] == 2
    resumed = train_and_evaluate(compose_cfg([*overrides, "ckpt_path=last"]), killed_dir)

    assert resumed["refinement"] == whole["refinement"]
    assert resumed["retraining"] == whole["retraining"]
    assert resumed["metrics"] == whole["metrics"]
    assert resumed["thresholds"] == whole["thresholds"]


def test_the_cli_runs_and_prints_a_table(tmp_path) -> None:
    run_dir = tmp_path / "cli"
    out = run_itsr(*tiny_overrides("aae"), "dataset.epochs.aae=1", f"hydra.run.dir={run_dir}", timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "observed    combined" in out.stdout and f"run directory: {run_dir}" in out.stdout
    for noise in ("litlogger", "LeafSpec", "`srun` command"):  # itsr/library_warnings.py: says nothing about the run
        assert noise not in out.stdout + out.stderr, noise
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert not math.isnan(metrics["metrics"]["observed"]["combined"]["bacc"])


def test_the_cli_rejects_a_bad_value_before_training(tmp_path) -> None:
    run_dir = tmp_path / "bad"
    out = run_itsr("alpha=0.7", f"hydra.run.dir={run_dir}", timeout=300)
    assert out.returncode != 0
    assert "alpha must lie in [0, 0.5), got 0.7" in out.stderr
    assert not (run_dir / "metrics.json").exists()


def test_a_failing_job_does_not_hide_the_others(tmp_path, capsys) -> None:
    from itsr.report import main as report

    sweep = tmp_path / "sweep"
    # the second job fails at start-up (alpha out of range); the first and third must still finish
    out = run_itsr(
        "-m", *tiny_overrides("aae"), "dataset.epochs.aae=1", "alpha=0.05,0.7,0.01", f"hydra.sweep.dir={sweep}"
    )
    assert out.returncode != 0, "the grid reports the failure"
    finished = sorted(json.loads(p.read_text())["config"]["alpha"] for p in sweep.glob("*/metrics.json"))
    assert finished == [0.01, 0.05]
    failed = list(sweep.glob("*/failed.json"))
    assert len(failed) == 1 and "alpha must lie in" in json.loads(failed[0].read_text())["message"]
    assert report([str(sweep)]) == 0
    assert "failed" in capsys.readouterr().err
    assert "ConfigError: alpha must lie in" in (sweep / "report.md").read_text()

"""W&B, offline: one run per job with its logged keys; jobs of one multirun share a group."""

from __future__ import annotations

from tests.conftest import run_itsr, tiny_overrides
from tests.wandb_offline import read_run


def test_a_multirun_logs_one_offline_wandb_run_per_job_in_one_group(tmp_path) -> None:
    sweep = tmp_path / "sweep"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    out = run_itsr(
        "-m",
        "logger=wandb",
        *tiny_overrides("itsr"),
        "dataset.epochs.itsr_pretrain=1",
        "dataset.epochs.itsr_round=1",
        "dataset.epochs.itsr_retrain=1",
        "model.refinement.rounds=2",
        "curves.every_n_epochs=1",
        "alpha=0.05,0.01",
        f"hydra.sweep.dir={sweep}",
        timeout=600,
        env=env,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    run_files = sorted(sweep.glob("*/wandb/offline-run-*/run-*.wandb"))
    assert len(run_files) == 2, "one W&B run per job, each inside its own run directory"
    runs = [read_run(f) for f in run_files]
    assert {r["group"] for r in runs} == {str(sweep)}
    assert [r["job_type"] for r in runs] == ["itsr", "itsr"]
    assert sorted(r["tags"][1] for r in runs) == ["alpha=0.01", "alpha=0.05"]
    for r in runs:
        summary = r["summary"]
        for key in (
            "loss/reconstruction",
            "loss/discriminator",
            "loss/generator",
            "refinement/recall",
            "curves/rec_anomalous_mean",
            "test/observed/combined/bacc",
            "test/unobserved/rec/auroc",
            "retraining/n_negative",
        ):
            assert key in summary, f"{key} not logged; logged: {sorted(summary)}"
        assert any(k.startswith("figures/") for k in summary), "figures logged as images"
        assert '"model"' in r["config"].get("dataset", "") or "model" in r["config"], "resolved config logged"

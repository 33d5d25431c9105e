"""A run's progress: plain lines in logs, a redrawn line on a terminal, and which job of a grid it is."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf, open_dict

from itsr.progress import RunProgress, current_job, describe_phase, grid_size, jobs_share_the_terminal
from itsr.refinement import RefinementSchedule
from itsr.run import CONFIG_DIR
from itsr.runtime import config_differences, resolved_config
from tests.conftest import DATA_DIR, REPO_ROOT, compose_cfg, tiny_overrides
from tests.test_run import EPOCHS_TINY

# 2 pretraining epochs, 3 rounds of 1 epoch, 2 retraining epochs: 7 epochs
SCHEDULE = RefinementSchedule(pretrain_epochs=2, rounds=3, round_epochs=1, retrain_epochs=2)


class Terminal(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def drive(progress: RunProgress, max_epochs: int, first_epoch: int = 0) -> None:
    """The hooks in Lightning's order: the module logs an epoch's losses after the callbacks' epoch end."""
    trainer = SimpleNamespace(current_epoch=first_epoch, max_epochs=max_epochs, callback_metrics={})
    progress.on_train_start(trainer, None)
    for epoch in range(first_epoch, max_epochs):
        trainer.current_epoch = epoch
        progress.on_train_epoch_start(trainer, None)
        progress.on_train_epoch_end(trainer, None)
        trainer.callback_metrics = {"loss/reconstruction": torch.tensor(float(epoch + 1)), "other": torch.tensor(0.0)}
    progress.on_train_end(trainer, None)


def test_the_phase_names_the_refinement_round() -> None:
    phases = [describe_phase(SCHEDULE, epoch) for epoch in range(SCHEDULE.total_epochs)]
    assert phases == [
        "pretraining",
        "pretraining",
        "refinement round 1 of 3",
        "refinement round 2 of 3",
        "refinement round 3 of 3",
        "retraining",
        "retraining",
    ]
    assert describe_phase(None, 5) == "training"


def test_in_a_log_one_line_per_phase_change_and_every_n_epochs() -> None:
    out = io.StringIO()
    drive(RunProgress(every_n_epochs=10, schedule=SCHEDULE, stream=out, job=None), SCHEDULE.total_epochs)
    text = out.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    # epoch 1 starts pretraining, 3-5 are the rounds, 6 starts retraining, 7 is the last
    assert [line.split(" | ")[:2] for line in lines] == [
        ["epoch 1/7", "pretraining"],
        ["epoch 3/7", "refinement round 1 of 3"],
        ["epoch 4/7", "refinement round 2 of 3"],
        ["epoch 5/7", "refinement round 3 of 3"],
        ["epoch 6/7", "retraining"],
        ["epoch 7/7", "retraining"],
    ]
    # each line has its own epoch's losses (logged after the callbacks' epoch end), without the prefix
    assert lines[1].endswith("reconstruction 3") and "other" not in text
    assert "elapsed" in lines[0] and "left" in lines[0]


def test_in_a_log_a_model_without_phases_writes_every_n_epochs() -> None:
    out = io.StringIO()
    drive(RunProgress(every_n_epochs=10, stream=out), 25)
    epochs = [line.split(" | ")[0] for line in out.getvalue().splitlines()]
    assert epochs == ["epoch 1/25", "epoch 10/25", "epoch 20/25", "epoch 25/25"]
    resumed = io.StringIO()
    drive(RunProgress(every_n_epochs=10, stream=resumed), 25, first_epoch=12)
    assert [line.split(" | ")[0] for line in resumed.getvalue().splitlines()] == [
        "epoch 13/25",  # the first epoch this process ran
        "epoch 20/25",
        "epoch 25/25",
    ]


def test_on_a_terminal_one_line_is_redrawn(monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # wide enough for the whole line
    out = Terminal()
    drive(RunProgress(every_n_epochs=10, stream=out, job="job 2 of 3"), 5)
    text = out.getvalue()
    assert text.count("\r") >= 5 and text.count("\n") == 1 and text.endswith("\n")
    shown = text.rstrip("\n").split("\r")[-1]  # what the terminal shows once training ended
    assert shown.startswith("job 2 of 3 | epoch 5/5 | training |") and shown.endswith("reconstruction 5")


def test_on_a_terminal_the_line_is_cleared_where_other_callbacks_log() -> None:
    """After the last epoch of a phase the line is blank, so ITSR's round message starts a line."""
    out = Terminal()
    progress = RunProgress(every_n_epochs=10, schedule=SCHEDULE, stream=out)
    trainer = SimpleNamespace(current_epoch=0, max_epochs=SCHEDULE.total_epochs, callback_metrics={})
    progress.on_train_start(trainer, None)
    progress.on_train_epoch_end(trainer, None)  # epoch 1 of pretraining ends
    trainer.current_epoch = 1
    progress.on_train_epoch_start(trainer, None)  # draws epoch 1
    assert out.getvalue().split("\r")[-1].startswith("epoch 1/7")
    progress.on_train_epoch_end(trainer, None)  # pretraining ends: the refinement will log now
    assert out.getvalue().split("\r")[-1] == ""


def test_every_n_epochs_must_be_positive() -> None:
    with pytest.raises(ValueError, match="progress.every_n_epochs"):
        RunProgress(every_n_epochs=0)


def multirun_job(tmp_path: Path, overrides: list[str], grid: list[str], job_num: int) -> None:
    """Hydra's state in job `job_num` of a grid, with the multirun.yaml the basic sweeper saves."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("config", overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.mode = "MULTIRUN"
        cfg.hydra.sweep.dir = str(tmp_path)
        cfg.hydra.job.num = job_num
        cfg.hydra.overrides.task = grid
    OmegaConf.save(cfg, tmp_path / "multirun.yaml")
    HydraConfig.instance().set_config(cfg)


def test_a_job_knows_its_place_in_the_grid(tmp_path) -> None:
    try:
        multirun_job(tmp_path, [], ["alpha=0.05,0.01", "seed=0,1,2"], job_num=1)
        assert grid_size(tmp_path) == 6 and current_job() == "job 2 of 6"
        assert not jobs_share_the_terminal()  # the basic launcher runs one job after another
        # a preset's grid (hydra.sweeper.params), narrowed on the command line as the README says
        multirun_job(tmp_path, ["experiment=quick"], ["experiment=quick", "model=ae"], job_num=0)
        assert current_job() == "job 1 of 9"
        multirun_job(tmp_path, ["hydra/launcher=parallel"], ["alpha=0.05,0.01"], job_num=0)
        assert current_job() == "job 1 of 2" and jobs_share_the_terminal()
        (tmp_path / "multirun.yaml").unlink()  # n unknown: the job's number only
        assert current_job() == "job 1"
    finally:
        HydraConfig.instance().cfg = None
    assert current_job() is None  # not a multirun


@pytest.mark.slow
def test_a_grid_through_the_itsr_command_says_which_job_runs(tmp_path) -> None:
    """Two tiny AE jobs through `python -m itsr.cli run -m`: the itsr command runs a real grid, each job's
    progress on stderr says `job i of 2`, and stdout keeps the results tables."""
    sweep = tmp_path / "sweep"
    cmd = [sys.executable, "-m", "itsr.cli", "run", "-m", *tiny_overrides("ae"), *EPOCHS_TINY]
    cmd += ["alpha=0.05,0.01", "progress.every_n_epochs=1", f"hydra.sweep.dir={sweep}", f"data_dir={DATA_DIR}"]
    out = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    progress = [line for line in out.stderr.splitlines() if line.startswith("job ")]
    assert [line.split(" | ")[:3] for line in progress] == [
        ["job 1 of 2", "epoch 1/2", "training"],
        ["job 1 of 2", "epoch 2/2", "training"],
        ["job 2 of 2", "epoch 1/2", "training"],
        ["job 2 of 2", "epoch 2/2", "training"],
    ]
    assert "\r" not in out.stderr and "reconstruction" in progress[0]
    assert out.stdout.count("run directory:") == 2 and "job 1 of 2" not in out.stdout
    assert len(list(sweep.glob("*/metrics.json"))) == 2


def test_the_progress_keys_may_change_on_resume() -> None:
    """A checkpoint written before these keys existed, or with other values, still resumes."""
    saved = resolved_config(compose_cfg([]))
    del saved["progress"]
    now = resolved_config(compose_cfg(["progress.enabled=false", "progress.every_n_epochs=3"]))
    assert config_differences(saved, now) == []


def test_the_time_left_follows_the_latest_epochs_not_a_slow_start(monkeypatch) -> None:
    """A first epoch of 1000 s (start-up, a busy neighbour), then 1 s per epoch: with 10 of 30 epochs
    left, the estimate is about 10 s, not the run's average (about 500 s)."""
    clock = iter([0.0, 1000.0, *(1000.0 + k for k in range(1, 40))])
    now = {"t": 0.0}

    def tick() -> float:
        now["t"] = next(clock)
        return now["t"]

    monkeypatch.setattr("itsr.progress.time.monotonic", tick)
    progress = RunProgress(every_n_epochs=1, stream=io.StringIO(), job=None)
    trainer = SimpleNamespace(current_epoch=0, max_epochs=30, callback_metrics={})
    progress.on_train_start(trainer, None)  # t = 0
    for epoch in range(20):
        trainer.current_epoch = epoch
        progress.on_train_epoch_end(trainer, None)  # epoch 0 ends at 1000, then one per second
    monkeypatch.setattr("itsr.progress.time.monotonic", lambda: now["t"])
    assert progress.seconds_per_epoch(19) == pytest.approx(1.0)
    assert "0:00:10 left" in progress.line(trainer, 19)

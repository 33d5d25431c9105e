"""scripts/paper_queue.py: the grid's CPU queue resumes cut-short runs first, never starts a second process
on a run still training, collects finished runs, and names bad arguments."""

from __future__ import annotations

import contextlib
import importlib.util
import json

import pytest

from itsr.runtime import run_dir_lock
from tests.conftest import DATA_DIR, REPO_ROOT, run_script

MODELS = ("ae", "aae", "itsr")
SETTINGS = ("mnist_0v2", "fmnist_tshirt_v_boot", "fmnist_tshirt_v_pullover")


def grid_runs_except(runs, missing: set[str]) -> None:
    """A results folder holding every Fig. 5 grid run (in the grid's precision) but `missing`."""
    for model in MODELS:
        for setting in SETTINGS:
            for seed in (0, 1, 2):
                name = f"{model}_{setting}_a0.05_s{seed}"
                if name not in missing:
                    (runs / name).mkdir(parents=True)
                    metrics = {"provenance": {"precision": "bf16-mixed"}, "holdout": {"fraction": 0.1}}
                    (runs / name / "metrics.json").write_text(json.dumps(metrics))


def test_the_queue_resumes_cut_short_runs_first_and_leaves_live_ones_alone(tmp_path) -> None:
    runs, out = tmp_path / "runs", tmp_path / "out"
    cut_short, live, new_ae, new_itsr = (
        "itsr_mnist_0v2_a0.05_s1",
        "aae_fmnist_tshirt_v_pullover_a0.05_s2",
        "ae_mnist_0v2_a0.05_s2",
        "itsr_fmnist_tshirt_v_boot_a0.05_s1",
    )
    grid_runs_except(runs, {cut_short, live, new_ae, new_itsr})
    for name in (cut_short, live):
        (out / name / "checkpoints").mkdir(parents=True)
        (out / name / "checkpoints" / "last.ckpt").write_bytes(b"")
    with run_dir_lock(out / live):  # a job training there now, as itsr.run holds its run directory
        listed = run_script("paper_queue.py", "--jobs", "1", "--dry-run", "--runs", runs, "--out", out)
    assert listed.returncode == 0, listed.stderr
    lines = [line.split(":")[0].split() for line in listed.stdout.splitlines() if not line.startswith("left out")]
    # the cut-short ITSR first, though it is the longest; then new runs shortest first (the AE's 4000 MNIST
    # epochs before ITSR's 2000 on Fashion-MNIST); the live run last and not run
    assert lines[:3] == [["resumable", cut_short], ["new", new_ae], ["new", new_itsr]]
    assert lines[3] == ["live", live] and f"left out, a job runs there now: {live}" in listed.stdout
    assert f"hydra.run.dir={out / cut_short}" in listed.stdout and "threads=1" in listed.stdout
    released = run_script("paper_queue.py", "--jobs", "1", "--dry-run", "--runs", runs, "--out", out)
    # its job ended: resumable too, and the AAE's 1000 epochs go before ITSR's 2500
    assert [line.split(":")[0] for line in released.stdout.splitlines()[:2]] == [
        f"resumable {live}",
        f"resumable {cut_short}",
    ]


@pytest.mark.skipif(not (DATA_DIR / "mnist").exists(), reason="needs the MNIST cache (python -m itsr.data fetch)")
def test_the_queue_trains_a_missing_run_and_collects_it(tmp_path) -> None:
    runs, out = tmp_path / "runs", tmp_path / "out"
    name = "aae_mnist_0v2_a0.05_s0"
    grid_runs_except(runs, {name})
    tiny = ["model.module.hidden=[16,16]", "model.module.disc_hidden=[16,16]", "dataset.epochs.aae=1"]
    done = run_script(
        "paper_queue.py", "--jobs", "1", "--runs", runs, "--out", out, "--", *tiny, f"data_dir={DATA_DIR}", timeout=600
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "queue done: 1 of 1 runs finished and collected" in done.stdout
    collected = json.loads((runs / name / "metrics.json").read_text())
    assert collected["provenance"]["precision"] == "bf16-mixed" and collected["holdout"]["fraction"] == 0.1
    assert (out / f"{name}.log").is_file()
    again = run_script("paper_queue.py", "--jobs", "1", "--dry-run", "--runs", runs, "--out", out)
    assert again.returncode == 0 and again.stdout == ""  # nothing left to do


def test_a_run_another_queue_takes_after_the_listing_is_left_to_it_and_not_counted_as_done(
    tmp_path, monkeypatch, capsys
) -> None:
    spec = importlib.util.spec_from_file_location("paper_queue", REPO_ROOT / "scripts" / "paper_queue.py")
    paper_queue = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(paper_queue)
    runs, out = tmp_path / "runs", tmp_path / "out"
    name = "aae_mnist_0v2_a0.05_s0"
    grid_runs_except(runs, {name})
    listing = paper_queue.queue
    with contextlib.ExitStack() as held:

        def listed_then_taken(*args, **kwargs):
            rows = listing(*args, **kwargs)  # listed as new; a second queue's job then takes its directory
            held.enter_context(run_dir_lock(out / name))
            return rows

        monkeypatch.setattr(paper_queue, "queue", listed_then_taken)
        code = paper_queue.main(["--jobs", "1", "--runs", str(runs), "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0 and f"new       {name}:" in printed
    assert f"{name}: a job runs there now; left to it" in printed
    assert (
        "queue done: 0 of 1 runs finished" in printed
        and f"took it meanwhile (run the queue again once it ends): {name}" in printed
    )
    assert not (out / f"{name}.log").exists() and not (runs / name).exists()  # nothing trained, nothing collected


def test_bad_arguments_are_named(tmp_path) -> None:
    jobs = run_script("paper_queue.py", "--jobs", "0", "--runs", tmp_path)
    assert jobs.returncode == 2 and "--jobs 0: give 1 to" in jobs.stderr
    missing = run_script("paper_queue.py", "--runs", tmp_path / "nowhere")
    assert missing.returncode == 2 and "is not a directory" in missing.stderr
    alpha = run_script("paper_queue.py", "--alpha", "0.02", "--runs", tmp_path, "--dry-run")
    assert alpha.returncode == 2 and "--alpha 0.02: the paper's grid has 0.05, 0.01, 0.001" in alpha.stderr
    assert "Traceback" not in jobs.stderr + missing.stderr + alpha.stderr


def test_alpha_queues_table_1s_column_beside_a_finished_fig5_grid(tmp_path) -> None:
    runs = tmp_path / "runs"
    grid_runs_except(runs, set())  # Fig. 5 done: at its alpha nothing is left
    fig5 = run_script("paper_queue.py", "--dry-run", "--runs", runs, "--out", tmp_path / "out")
    assert fig5.returncode == 0 and fig5.stdout == ""
    table1 = run_script("paper_queue.py", "--alpha", "0.01", "--dry-run", "--runs", runs, "--out", tmp_path / "out")
    assert table1.returncode == 0, table1.stderr
    lines = table1.stdout.splitlines()
    assert len(lines) == 27 and all(line.startswith("new") and "_a0.01_s" in line for line in lines)
    assert all(" alpha=0.01 " in line and "experiment=paper" in line for line in lines)


def finished_grid_run(run_dir, precision: str = "bf16-mixed", holdout: bool = True) -> None:
    """A run directory as itsr.run leaves it when it has finished (the files collect_runs copies)."""
    run_dir.mkdir(parents=True)
    metrics = {"provenance": {"precision": precision}, **({"holdout": {"fraction": 0.1}} if holdout else {})}
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    (run_dir / "config.yaml").write_text(f"trainer:\n  precision: {precision}\n")


@pytest.mark.parametrize(
    ("precision", "holdout", "home"),
    [("32-true", False, "fp32"), ("bf16-mixed", False, "bf16-mixed-no-holdout")],
)
def test_a_finished_rerun_moves_the_run_it_replaces_aside_and_takes_its_place(
    tmp_path, precision, holdout, home
) -> None:
    runs, out = tmp_path / "results" / "runs", tmp_path / "out"
    name = "ae_mnist_0v2_a0.05_s0"
    grid_runs_except(runs, {name})
    finished_grid_run(runs / name, precision, holdout)  # committed, but not in the grid's precision/hold-out
    finished_grid_run(out / name)  # its rerun, finished in OUT
    done = run_script("paper_queue.py", "--jobs", "1", "--runs", runs, "--out", out)
    assert done.returncode == 0, done.stdout + done.stderr
    moved = json.loads((tmp_path / "results" / home / name / "metrics.json").read_text())
    assert moved["provenance"]["precision"] == precision and "holdout" not in moved
    collected = json.loads((runs / name / "metrics.json").read_text())
    assert collected["provenance"]["precision"] == "bf16-mixed" and collected["holdout"]["fraction"] == 0.1
    # a second superseded run of that name would overwrite the first one's home: refused, by name, nothing moved
    finished_grid_run(tmp_path / "again" / name, precision, holdout)
    (runs / name).rename(tmp_path / "rerun")
    (tmp_path / "again" / name).rename(runs / name)
    refused = run_script("paper_queue.py", "--jobs", "1", "--runs", runs, "--out", out)
    assert refused.returncode == 1 and f"{tmp_path / 'results' / home / name} exists" in refused.stdout
    assert json.loads((runs / name / "metrics.json").read_text())["provenance"]["precision"] == precision


def test_start_within_starts_no_run_after_its_minutes_but_still_collects(tmp_path) -> None:
    runs, out = tmp_path / "runs", tmp_path / "out"
    finished, new = "aae_mnist_0v2_a0.05_s1", "aae_mnist_0v2_a0.05_s2"
    grid_runs_except(runs, {finished, new})
    finished_grid_run(out / finished)
    done = run_script("paper_queue.py", "--jobs", "1", "--runs", runs, "--out", out, "--start-within", "1e-9")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{new}: not started, --start-within 1e-09 min has passed" in done.stdout
    assert (runs / finished / "metrics.json").is_file()  # collected though the time had passed
    assert not (out / new).exists() and not (out / f"{new}.log").exists()  # never started
    bad = run_script("paper_queue.py", "--start-within", "0", "--runs", runs)
    assert bad.returncode == 2 and "--start-within 0: give a positive number of minutes" in bad.stderr

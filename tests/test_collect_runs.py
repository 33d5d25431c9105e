"""scripts/collect_runs.py: what goes into a results folder, and that a committed result is never replaced."""

from __future__ import annotations

import subprocess

from tests.conftest import run_script


def collect(*arguments) -> subprocess.CompletedProcess:
    return run_script("collect_runs.py", *arguments)


def make_run(path, metrics='{"seed": 0}', finished=True):
    path.mkdir(parents=True)
    (path / "config.yaml").write_text("seed: 0\n")
    (path / "curves.csv").write_text("epoch,bacc\n1,0.5\n")
    (path / "test_scores.csv").write_text("score\n0.1\n")
    (path / "model.pt").write_bytes(b"weights")
    (path / "checkpoints").mkdir()
    (path / "checkpoints" / "last.ckpt").write_bytes(b"state")
    if finished:
        (path / "metrics.json").write_text(metrics)
    return path


def test_a_sweep_is_collected_small_files_only_and_never_over_another_run(tmp_path) -> None:
    sweep = tmp_path / "sweep"
    make_run(sweep / "knn" / "0_run")
    make_run(sweep / "knn" / "1_running", finished=False)
    crashed = make_run(sweep / "knn" / "2_failed", finished=False)
    (crashed / "failed.json").write_text('{"error": "PeerError", "message": "scores not finite"}')
    into = tmp_path / "results"
    out = collect(sweep, "--into", into, "--no-scores")
    assert out.returncode == 0, out.stderr
    copied = into / "knn" / "0_run"
    assert sorted(p.name for p in copied.iterdir()) == ["config.yaml", "curves.csv", "metrics.json"]
    assert not (into / "knn" / "1_running").exists(), "an unfinished run is not a result"
    assert sorted(p.name for p in (into / "knn" / "2_failed").iterdir()) == ["config.yaml", "failed.json"]
    assert collect(sweep, "--into", into, "--no-scores").returncode == 0, "the same files again: nothing to do"

    other = make_run(tmp_path / "other" / "0_run", metrics='{"seed": 1}')
    out = collect(other, "--into", into / "knn")
    assert out.returncode == 1 and "holds another run" in out.stderr
    assert (copied / "metrics.json").read_text() == '{"seed": 0}', "the committed result stays"
    out = collect(other, "--into", into / "knn", "--name", "0_run_seed1")
    assert out.returncode == 0, out.stderr
    assert (into / "knn" / "0_run_seed1" / "test_scores.csv").is_file(), "score CSVs come unless --no-scores"

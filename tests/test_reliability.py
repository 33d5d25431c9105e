"""Issue 14: a finished run says it finished, a resumed run is the same run, a stopped run says it
stopped, and bad input gets a clear refusal (no traceback) that loses nothing. Driven through the
command lines as a user runs them, on a tiny folder of 8x8 images so each run takes seconds."""

from __future__ import annotations

import errno
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from itsr.atomic import write_bytes_atomic
from itsr.data.images import Preprocessing, load_image
from itsr.model_file import MODEL_FILE
from itsr.runtime import EXIT_STOPPED, AtomicCheckpointIO, run_dir_lock
from tests.conftest import DATA_DIR, REPO_ROOT, compose_cfg, run_itsr, tiny_overrides
from tests.test_report import fake_run

SIDE = 8
STARTUP_S = 120  # the longest a tiny run may take to write its first checkpoint on a busy machine


def folder_overrides(root: Path, *extra: str, epochs: int = 2) -> list[str]:
    """A tiny AE on a folder: no labels, so no test split (the case of issue 14.1)."""
    return [
        "dataset=folder",
        f"dataset.root={root}",
        f"dataset.size=[{SIDE},{SIDE}]",
        "model=ae",
        "model.module.hidden=[8,8]",
        "threads=1",
        "batch_size=16",
        f"dataset.epochs.ae={epochs}",
        "checkpoint.every_n_epochs=1",
        *extra,
    ]


def no_traceback(out: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in out.stdout + out.stderr, out.stderr[-3000:]


def run_module(module: str, *arguments: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", module, *map(str, arguments)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for i in range(64):
        Image.fromarray((rng.random((SIDE, SIDE)) * 255).astype(np.uint8)).save(root / f"i{i:02d}.png")
    return root


@pytest.fixture(scope="module")
def finished(images, tmp_path_factory) -> Path:
    """A finished folder run, made through the CLI (issue 14.1: it used to exit 1 at the very end)."""
    run_dir = tmp_path_factory.mktemp("finished") / "run"
    out = run_itsr(*folder_overrides(images), f"hydra.run.dir={run_dir}")
    assert out.returncode == 0, out.stderr[-3000:]
    return run_dir


@pytest.fixture
def copy_of_finished(finished, tmp_path) -> Path:
    run_dir = tmp_path / "run"
    shutil.copytree(finished, run_dir, symlinks=True)
    return run_dir


# ---------------------------------------------------------------- 1. folder runs exit 0


def test_a_folder_run_without_test_labels_finishes_with_status_zero(finished) -> None:
    metrics = json.loads((finished / "metrics.json").read_text())
    assert metrics["config"]["dataset"] == "folder" and metrics["metrics"] == {}
    assert not (finished / "failed.json").exists()


# ---------------------------------------------------------------- 2. the setting follows the classes


def test_a_class_override_is_named_by_its_classes_everywhere(tmp_path) -> None:
    out = run_itsr(
        *tiny_overrides("ae"),
        "dataset.epochs.ae=1",
        "dataset.normal_class=1",
        "dataset.anomaly_class=7",
        f"hydra.run.dir={tmp_path}/${{dataset.setting}}",
    )
    assert out.returncode == 0, out.stderr[-3000:]
    run_dir = tmp_path / "mnist_1v7"
    assert run_dir.is_dir(), "the run directory carries the classes' setting"
    config = json.loads((run_dir / "metrics.json").read_text())["config"]
    assert (config["setting"], config["normal_class"], config["anomaly_class"]) == ("mnist_1v7", 1, 7)
    assert "ae on mnist_1v7" in out.stdout


@pytest.mark.parametrize(
    "overrides, setting",
    [
        ([], "mnist_0v2"),
        (["dataset=fmnist"], "fmnist_tshirt_v_pullover"),
        (["dataset=fmnist_boot"], "fmnist_tshirt_v_boot"),
        (["dataset=fmnist_boot", "dataset.anomaly_class=2"], "fmnist_tshirt_v_pullover"),
        (["dataset=fmnist", "dataset.normal_class=3"], "fmnist_3v2"),
    ],
)
def test_the_paper_keeps_its_names_and_other_pairs_get_their_own(overrides, setting) -> None:
    assert compose_cfg(overrides).dataset.setting == setting


def test_a_boolean_class_is_refused_not_read_as_class_one(tmp_path) -> None:
    out = run_itsr("dataset.normal_class=true", f"hydra.run.dir={tmp_path}")
    assert out.returncode != 0
    assert "dataset.normal_class must be a class index in 0..9" in out.stderr and "got True" in out.stderr
    no_traceback(out)


# ---------------------------------------------------------------- 3. resume only the same run, one job per directory


@pytest.mark.parametrize(
    "change, named",
    [(["seed=1"], "seed: 0 in the checkpoint, 1 now"), (["model.module.latent_dim=3"], "model.module.latent_dim")],
)
def test_resuming_a_checkpoint_with_another_config_is_refused_by_key(images, copy_of_finished, change, named) -> None:
    before = (copy_of_finished / "metrics.json").read_bytes()
    out = run_itsr(*folder_overrides(images), *change, f"hydra.run.dir={copy_of_finished}")
    assert out.returncode != 0
    assert "was made by another config" in out.stderr and named in out.stderr
    no_traceback(out)
    assert (copy_of_finished / "metrics.json").read_bytes() == before
    assert not (copy_of_finished / "failed.json").exists(), "a refusal leaves no note in another run's directory"


def test_the_same_config_resumes_and_threads_may_change(images, copy_of_finished) -> None:
    before = json.loads((copy_of_finished / "metrics.json").read_text())
    out = run_itsr(*folder_overrides(images), "threads=2", f"hydra.run.dir={copy_of_finished}")
    assert out.returncode == 0, out.stderr[-3000:]
    after = json.loads((copy_of_finished / "metrics.json").read_text())
    assert after["thresholds"] == before["thresholds"] and after["config"] == before["config"]


def test_runs_flush_denormal_floats_only_when_asked() -> None:
    """A product of two 1e-20s is a float32 denormal (1e-40): kept, or flushed to zero as runs do."""
    from itsr.runtime import configure_torch

    tiny = torch.tensor([1e-20])
    try:
        configure_torch(1, flush_denormal=False)
        assert 0 < (tiny * tiny).item() < torch.finfo(torch.float32).tiny
        configure_torch(1, flush_denormal=True)
        assert (tiny * tiny).item() == 0.0
        assert compose_cfg([]).flush_denormal is True, "the runs' default"
    finally:
        torch.set_flush_denormal(False)


def test_starting_afresh_over_a_finished_run_is_refused(images, copy_of_finished) -> None:
    before = (copy_of_finished / "metrics.json").read_bytes()
    out = run_itsr(*folder_overrides(images), "ckpt_path=null", f"hydra.run.dir={copy_of_finished}")
    assert out.returncode != 0 and "holds a finished run" in out.stderr
    no_traceback(out)
    assert (copy_of_finished / "metrics.json").read_bytes() == before


def test_only_keys_that_change_results_must_match_on_resume() -> None:
    from itsr.runtime import config_differences, resolved_config

    saved = resolved_config(compose_cfg([]))
    assert (
        config_differences(
            saved, resolved_config(compose_cfg(["threads=3", "flush_denormal=false", "logger=wandb", "ckpt_path=last"]))
        )
        == []
    )
    changed = config_differences(saved, resolved_config(compose_cfg(["alpha=0.01", "model=aae"])))
    assert [line.split(":")[0] for line in changed if line.startswith(("alpha", "model.name"))] == [
        "alpha",
        "model.name",
    ]


def test_a_checkpoint_from_before_config_built_runs_still_resumes_but_not_a_changed_target() -> None:
    from itsr.runtime import BUILD_ONLY_KEYS, config_differences, resolved_config

    current = resolved_config(compose_cfg(["model=itsr"]))
    older = {k: v for k, v in current.items() if k != "callbacks"}  # as written before issue 13
    older["dataset"] = {k: v for k, v in current["dataset"].items() if k != "datamodule"}
    older["model"] = {k: v for k, v in current["model"].items() if k != "callbacks"}
    older["model"]["refinement"] = {
        k: v for k, v in current["model"]["refinement"].items() if k not in ("_target_", "score_batch_size")
    }
    assert "callbacks" in BUILD_ONLY_KEYS and config_differences(older, current) == []
    # present in both and different: a real difference, even under a build-only key
    swapped = resolved_config(compose_cfg(["model=itsr", "model.refinement._target_=my.Refinement"]))
    assert "model.refinement._target_" in [d.split(":")[0] for d in config_differences(current, swapped)]
    # and the comparison still sees what changes results
    assert config_differences(older, resolved_config(compose_cfg(["model=itsr", "alpha=0.01"])))


class Payload:
    """Stands for any object a tampered checkpoint could carry to run code on load."""


@pytest.mark.parametrize("damage", ["pickled", "truncated"])
def test_a_pickled_or_corrupt_checkpoint_in_the_run_directory_is_refused(images, copy_of_finished, damage) -> None:
    last = copy_of_finished / "checkpoints" / "last.ckpt"
    if damage == "pickled":
        state = torch.load(last, weights_only=True)
        state["extra"] = Payload()
        torch.save(state, last)
    else:
        last.write_bytes(last.read_bytes()[:100])
    out = run_itsr(*folder_overrides(images), f"hydra.run.dir={copy_of_finished}")
    assert out.returncode != 0 and "refused or unreadable checkpoint" in out.stderr
    no_traceback(out)


def test_a_directory_held_by_a_running_job_is_refused_and_a_killed_holder_blocks_nothing(images, tmp_path) -> None:
    run_dir = tmp_path / "run"
    with run_dir_lock(run_dir):
        out = run_itsr(*folder_overrides(images), f"hydra.run.dir={run_dir}")
    assert out.returncode != 0 and "is in use by a running job (pid" in out.stderr
    no_traceback(out)
    assert not (run_dir / "metrics.json").exists()

    hold = (
        "import pathlib, time\nfrom itsr.runtime import run_dir_lock\n"
        f"with run_dir_lock(pathlib.Path({str(run_dir)!r})):\n    print('held', flush=True)\n    time.sleep(600)"
    )
    holder = subprocess.Popen([sys.executable, "-c", hold], cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    holder.kill()  # kill -9: no clean-up runs, the lock file stays behind with the dead pid
    holder.wait()
    assert f"pid {holder.pid}" in (run_dir / ".itsr.lock").read_text()
    out = run_itsr(*folder_overrides(images), f"hydra.run.dir={run_dir}")
    assert out.returncode == 0, out.stderr[-3000:]


# ---------------------------------------------------------------- 4. SIGTERM


def checkpoint_in(root: Path, pattern: str):
    """A readiness check for start_and_signal: a checkpoint matching `pattern` exists below `root`."""
    return lambda: bool(list(root.glob(pattern)))


def start_and_signal(arguments: list[str], ready, sig: signal.Signals = signal.SIGTERM) -> subprocess.CompletedProcess:
    """Start `python -m itsr.run`, wait until `ready()` (typically its first checkpoint), send `sig`, collect
    the result."""
    cmd = [sys.executable, "-m", "itsr.run", *arguments, f"data_dir={DATA_DIR}"]
    process = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + STARTUP_S
    while not ready() and time.time() < deadline and process.poll() is None:
        time.sleep(0.2)
    assert process.poll() is None, "the run ended before it could be stopped"
    process.send_signal(sig)
    stdout, stderr = process.communicate(timeout=STARTUP_S)
    return subprocess.CompletedProcess(cmd, process.returncode, stdout, stderr)


def test_a_terminated_run_exits_non_zero_and_says_how_to_resume(images, tmp_path) -> None:
    run_dir = tmp_path / "run"
    out = start_and_signal(
        [*folder_overrides(images, epochs=100_000), f"hydra.run.dir={run_dir}"],
        checkpoint_in(run_dir, "checkpoints/last.ckpt"),
    )
    assert out.returncode == EXIT_STOPPED, out.stderr[-3000:]
    assert "run stopped by SIGTERM" in out.stderr and "can be resumed from its last checkpoint" in out.stderr
    no_traceback(out)
    assert not (run_dir / "metrics.json").exists()
    assert json.loads((run_dir / "failed.json").read_text())["error"] == "RunStopped"
    # the message names the epochs of the checkpoint that is really there, and that one can resume
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert f"({checkpoint['epoch'] + 1} epochs done)" in out.stderr
    assert 0 < checkpoint["global_step"] and checkpoint["epoch"] + 1 < 100_000


def test_a_resumed_run_that_is_killed_keeps_no_note_of_the_earlier_stop(images, tmp_path) -> None:
    """A run stopped by SIGTERM notes it in failed.json, with that checkpoint's epochs. Resumed, it trains
    past them; killed there with -9 (a session's end: no handler runs) it must not keep the old note, which
    would name the old epoch count beside newer checkpoints (seen on a 10000-epoch run: "50 epochs done"
    beside epoch 4750)."""
    run_dir = tmp_path / "run"
    arguments = [*folder_overrides(images, epochs=100_000), f"hydra.run.dir={run_dir}"]
    stopped = start_and_signal(arguments, checkpoint_in(run_dir, "checkpoints/last.ckpt"))
    assert stopped.returncode == EXIT_STOPPED, stopped.stderr[-3000:]
    assert (run_dir / "failed.json").is_file()
    last = run_dir / "checkpoints" / "last.ckpt"
    stopped_at = last.resolve()

    killed = start_and_signal(arguments, lambda: last.resolve() != stopped_at, signal.SIGKILL)
    assert killed.returncode == -signal.SIGKILL
    assert last.resolve() != stopped_at, "the resumed attempt wrote no newer checkpoint before it was killed"
    assert not (run_dir / "failed.json").exists()
    assert not (run_dir / "metrics.json").exists()


def test_a_terminated_grid_exits_non_zero_and_lists_the_jobs_that_did_not_run(images, tmp_path) -> None:
    sweep = tmp_path / "sweep"
    out = start_and_signal(
        ["-m", *folder_overrides(images, epochs=100_000), "seed=0,1", f"hydra.sweep.dir={sweep}"],
        checkpoint_in(sweep, "*/checkpoints/last.ckpt"),
    )
    assert out.returncode == EXIT_STOPPED, out.stderr[-3000:]
    assert "the grid stopped at job #0; the jobs after it did not run" in out.stderr
    listed = out.stderr.split("did not run:\n")[1].split("to finish the grid")[0].splitlines()
    assert len(listed) == 1 and " seed=1 " in listed[0] and " seed=0" not in listed[0]
    assert [p.name.split("_")[0] for p in sweep.glob("*_folder_*")] == ["0"], "job #1 never started"


# ---------------------------------------------------------------- 5. image modes


def save_16bit(path: Path, pixels: np.ndarray) -> None:
    Image.fromarray(pixels.astype(np.uint16)).save(path)
    assert Image.open(path).mode.startswith("I;16")


def test_16_bit_pngs_are_scaled_by_their_bit_depth_not_clipped_to_white(tmp_path) -> None:
    pixels = np.linspace(0, 65535, SIDE * SIDE).round().astype(np.uint16).reshape(SIDE, SIDE)
    save_16bit(tmp_path / "deep.png", pixels)
    x = load_image(tmp_path / "deep.png", Preprocessing((SIDE, SIDE), "gray"))
    np.testing.assert_allclose(x, pixels.reshape(-1) / 65535, atol=1e-6)
    rgb = load_image(tmp_path / "deep.png", Preprocessing((SIDE, SIDE), "rgb"))
    np.testing.assert_allclose(rgb.reshape(3, -1), np.tile(x, (3, 1)), atol=1e-6)
    resized = load_image(tmp_path / "deep.png", Preprocessing((4, 4), "gray"))
    assert 0.3 < resized.mean() < 0.7, "resizing keeps the scale"


@pytest.mark.parametrize("mode", ["LA", "P", "RGBA", "CMYK", "1"])
def test_other_pillow_modes_read_like_their_8_bit_gray(tmp_path, mode) -> None:
    gray = Image.fromarray(np.full((SIDE, SIDE), 200, np.uint8))
    path = tmp_path / ("x.tiff" if mode == "CMYK" else "x.png")
    gray.convert(mode, dither=Image.Dither.NONE).save(path)  # "1": a threshold at 128, not a dither pattern
    expected = 1.0 if mode == "1" else 200 / 255
    np.testing.assert_allclose(load_image(path, Preprocessing((SIDE, SIDE), "gray")), expected, atol=0.02)


@pytest.mark.parametrize("array", [np.full((SIDE, SIDE), 100_000, np.int32), np.full((SIDE, SIDE), 3.0, np.float32)])
def test_integer_and_float_images_out_of_range_are_refused_by_mode(tmp_path, array) -> None:
    Image.fromarray(array).save(tmp_path / "x.tiff")
    with pytest.raises(ValueError, match="Pillow mode (I|F)"):
        load_image(tmp_path / "x.tiff", Preprocessing((SIDE, SIDE), "gray"))


def test_predict_scores_a_16_bit_png_like_its_8_bit_twin(finished, tmp_path) -> None:
    rng = np.random.default_rng(1)
    eight = (rng.random((SIDE, SIDE)) * 255).astype(np.uint8)
    Image.fromarray(eight).save(tmp_path / "a_8bit.png")
    save_16bit(tmp_path / "b_16bit.png", eight.astype(np.uint16) * 257)  # 255 * 257 = 65535
    out = run_module(
        "itsr.predict", finished, tmp_path / "a_8bit.png", tmp_path / "b_16bit.png", "--out", tmp_path / "s.csv"
    )
    assert out.returncode == 0, out.stderr[-3000:]
    rows = (tmp_path / "s.csv").read_text().splitlines()[1:]
    errors = [float(r.split(",")[1]) for r in rows]
    assert errors[0] == pytest.approx(errors[1], rel=1e-4)


# ---------------------------------------------------------------- 6. a failed rerun does not hide behind an old result


def test_a_failed_rerun_in_a_finished_directory_is_reported_failed(images, copy_of_finished, tmp_path) -> None:
    before = (copy_of_finished / "metrics.json").read_bytes()
    out = run_itsr(*folder_overrides(images), "batch_size=0", f"hydra.run.dir={copy_of_finished}")
    assert out.returncode != 0 and "batch_size must be a positive integer, got 0" in out.stderr
    no_traceback(out)
    assert (copy_of_finished / "metrics.json").read_bytes() == before, "the old result is kept"
    fake_run(tmp_path, "good")  # so that the report has a finished run to write about
    report = run_module("itsr.report", tmp_path, "--out", tmp_path / "r.md")
    assert report.returncode == 0, report.stderr
    assert f"skipped {copy_of_finished}: failed: ConfigError: batch_size" in report.stderr
    text = (tmp_path / "r.md").read_text()
    assert "1 finished runs" in text and "an older metrics.json is kept beside it" in text


def test_a_stale_failed_json_older_than_the_result_does_not_hide_it(tmp_path) -> None:
    run = fake_run(tmp_path, "run")
    (run / "failed.json").write_text('{"error": "Old", "message": "an earlier attempt"}')
    old = time.time() - 60
    os.utime(run / "failed.json", (old, old))
    from itsr.report import read_runs

    runs, problems = read_runs([tmp_path])
    assert len(runs) == 1 and not problems


# ---------------------------------------------------------------- 7. the report does not overwrite


def test_the_report_refuses_to_overwrite_without_the_flag_like_predict(tmp_path) -> None:
    fake_run(tmp_path, "a")
    out_file = tmp_path / "r.md"
    out_file.write_text("keep me")
    refused = run_module("itsr.report", tmp_path, "--out", out_file)
    assert refused.returncode == 2 and "--overwrite" in refused.stderr
    assert out_file.read_text() == "keep me"
    assert run_module("itsr.report", tmp_path, "--out", out_file, "--overwrite").returncode == 0
    assert out_file.read_text().startswith("# itsr report")
    directory = run_module("itsr.report", tmp_path, "--out", tmp_path / "a")
    assert directory.returncode == 2 and "is a directory" in directory.stderr


# ---------------------------------------------------------------- 8. model files that cannot flag anything


def tampered_model(finished: Path, tmp_path: Path, change) -> Path:
    payload = torch.load(finished / MODEL_FILE, weights_only=True)
    change(payload)
    torch.save(payload, tmp_path / MODEL_FILE)
    return tmp_path / MODEL_FILE


def test_a_model_file_with_a_nan_threshold_is_refused(finished, images, tmp_path) -> None:
    model = tampered_model(finished, tmp_path, lambda p: p["thresholds"].update(t_rec=math.nan))
    out = run_module("itsr.predict", model, images, "--out", tmp_path / "s.csv")
    assert out.returncode == 2 and "threshold t_rec is nan, not a finite number" in out.stderr
    no_traceback(out)
    assert not (tmp_path / "s.csv").exists()


def test_a_likelihood_option_for_an_ae_model_is_refused(finished, images, tmp_path) -> None:
    out = run_module("itsr.predict", finished, images, "--lik-percentile", "5", "--out", tmp_path / "s.csv")
    assert out.returncode == 2 and "--lik-percentile 5: this ae model has no latent prior" in out.stderr
    no_traceback(out)


# ---------------------------------------------------------------- clear refusals


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["seed=-1"], "seed must be an integer in 0..4294967295, got -1"),
        (["seed=1.5"], "seed must be an integer in 0..4294967295, got 1.5"),
        ([*tiny_overrides("aae"), "batch_size=1"], "batch_size must be at least 2 for model=aae"),
        (["dataset=folder", "dataset.root=/etc/hostname"], "dataset.root=/etc/hostname must be an existing folder"),
    ],
)
def test_bad_run_options_are_refused_by_name_without_a_traceback(tmp_path, overrides, message) -> None:
    out = run_itsr(*overrides, f"hydra.run.dir={tmp_path / 'run'}")
    assert out.returncode != 0 and message in out.stderr, out.stderr[-3000:]
    no_traceback(out)


def test_a_data_directory_that_cannot_be_made_is_refused_by_name(tmp_path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    cmd = [sys.executable, "-m", "itsr.run", *tiny_overrides("ae"), f"data_dir={blocker}", f"hydra.run.dir={tmp_path}"]
    out = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode != 0 and str(blocker) in out.stderr
    no_traceback(out)


@pytest.mark.parametrize(
    "options, message",
    [
        (["--rec-percentile", "101"], "--rec-percentile must lie in [0, 100], got 101"),
        (["--rec-percentile", "nan"], "--rec-percentile must lie in [0, 100], got nan"),
        (["--batch-size", "0"], "--batch-size must be a positive integer, got 0"),
        (["--montage-count", "0"], "--montage-count must be a positive integer, got 0"),
        (["--device", "cuda:99"], "--device cuda:99:"),
        (["--device", "tpu"], "--device tpu:"),
    ],
)
def test_bad_predict_options_are_refused_by_name(finished, images, tmp_path, capsys, options, message) -> None:
    from itsr.predict import main as predict

    assert predict([str(finished), str(images), "--out", str(tmp_path / "s.csv"), *options]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "s.csv").exists()


def test_predict_refuses_an_out_that_is_a_directory(finished, images, tmp_path, capsys) -> None:
    from itsr.predict import main as predict

    assert predict([str(finished), str(images), "--out", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda p: p.update(module="vae"), "its network is not one this version scores (no registered model 'vae'"),
        (lambda p: p["preprocessing"].update(size=[9, 9]), "does not fit this version"),
        (lambda p: p["preprocessing"].update(color="cmyk"), "does not fit this version"),
    ],
)
def test_a_model_file_whose_module_or_preprocessing_does_not_fit_is_refused(
    finished, images, tmp_path, change, message
) -> None:
    model = tampered_model(finished, tmp_path, change)
    out = run_module("itsr.predict", model, images, "--out", tmp_path / "s.csv")
    assert out.returncode == 2 and message in out.stderr
    no_traceback(out)


def test_the_report_lists_a_corrupt_failed_json_and_a_foreign_metrics_json_beside_good_runs(tmp_path) -> None:
    fake_run(tmp_path, "good")
    (tmp_path / "bad_failed").mkdir()
    (tmp_path / "bad_failed" / "failed.json").write_text("{not json")
    (tmp_path / "a_list").mkdir()
    (tmp_path / "a_list" / "metrics.json").write_text("[1, 2]")
    shape = fake_run(tmp_path, "shape")
    metrics = json.loads((shape / "metrics.json").read_text())
    metrics["metrics"]["observed"] = [0.9]
    (shape / "metrics.json").write_text(json.dumps(metrics))
    holdout = fake_run(tmp_path, "holdout")  # calibrated metrics whose hold-out block went missing
    metrics = json.loads((holdout / "metrics.json").read_text())
    metrics["metrics_holdout"] = metrics["metrics"]
    metrics.pop("holdout", None)
    (holdout / "metrics.json").write_text(json.dumps(metrics))
    thresholds = fake_run(tmp_path, "thresholds")  # calibrated thresholds in another file's shape
    metrics = json.loads((thresholds / "metrics.json").read_text())
    metrics.update(metrics_holdout=metrics["metrics"], holdout={"fraction": 0.1}, thresholds_holdout=[0.1])
    (thresholds / "metrics.json").write_text(json.dumps(metrics))
    out = run_module("itsr.report", tmp_path, "--out", tmp_path / "r.md")
    assert out.returncode == 0, out.stderr
    no_traceback(out)
    text = (tmp_path / "r.md").read_text()
    assert "thresholds_holdout is [0.1], not a table of thresholds" in text
    assert "1 finished runs; 5 skipped or failed" in text
    assert "failed.json unreadable (JSONDecodeError)" in text
    assert "a JSON list, not an object" in text and "is not a table of criteria" in text
    assert "metrics_holdout without a numeric holdout.fraction" in text


# ---------------------------------------------------------------- a full disk leaves nothing half-written


def test_a_full_disk_names_the_file_and_leaves_no_partial_file(tmp_path, monkeypatch) -> None:
    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match="No space left on device") as caught:
        write_bytes_atomic(tmp_path / "metrics.json", b"{}")
    assert caught.value.filename == str(tmp_path / "metrics.json")
    last = tmp_path / "checkpoints" / "last.ckpt"
    with pytest.raises(OSError):
        AtomicCheckpointIO().save_checkpoint({"state_dict": {}}, last)
    assert not last.exists() and list(tmp_path.rglob("*")) == [tmp_path / "checkpoints"]

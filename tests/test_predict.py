"""Your own images: train on a folder without labels, score new images with the saved thresholds."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.metrics import roc_auc_score

from itsr.data.images import MNIST_PREPROCESSING, find_images
from itsr.model_file import MODEL_FILE, ModelFileError, load_model
from itsr.predict import main as predict
from itsr.run import train_and_evaluate
from tests.conftest import compose_cfg, tiny_overrides

SIDE = 16


def blob(rng) -> np.ndarray:
    """A smooth bright blob somewhere near the centre: the normal part."""
    yy, xx = np.mgrid[0:SIDE, 0:SIDE]
    cy, cx = rng.uniform(5, 11, size=2)
    return np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * rng.uniform(2.0, 3.0) ** 2))


def stripes(rng) -> np.ndarray:
    """Vertical stripes: the planted defect."""
    period = rng.integers(3, 5)
    return ((np.arange(SIDE) // period) % 2).astype(float)[None, :].repeat(SIDE, 0)


def save(path, pixels) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((np.clip(pixels, 0, 1) * 255).astype(np.uint8), mode="L").save(path)


@pytest.fixture(scope="module")
def toy_folders(tmp_path_factory):
    rng = np.random.default_rng(0)
    root = tmp_path_factory.mktemp("toy")
    train, test = root / "train", root / "test"
    for i in range(240):
        save(train / f"batch{i % 3}" / f"part{i:03d}.png", blob(rng))  # nested folders
    for i in range(12):
        save(train / "batch0" / f"odd{i:02d}.png", stripes(rng))  # 5% contamination, unlabeled
    (train / "batch1" / "broken.png").write_bytes(b"\x89PNG not really")
    (train / "batch2" / "empty.jpg").write_bytes(b"")
    (train / "notes.txt").write_text("not an image, ignored by suffix")
    for i in range(30):
        save(test / "normal" / f"n{i}.png", blob(rng))
        save(test / "anomalous" / f"a{i}.png", stripes(rng))
    return train, test


@pytest.fixture(scope="module")
def folder_run(toy_folders, tmp_path_factory):
    train, test = toy_folders
    run_dir = tmp_path_factory.mktemp("run")
    cfg = compose_cfg(
        [
            "dataset=folder",
            f"dataset.root={train}",
            f"dataset.test_root={test}",
            f"dataset.size=[{SIDE},{SIDE}]",
            *tiny_overrides("aae"),
            "dataset.epochs.aae=40",
            "batch_size=32",
        ]
    )
    metrics = train_and_evaluate(cfg, run_dir)
    return run_dir, metrics


def read_rows(path):
    with open(path) as handle:
        return list(csv.DictReader(handle))


def test_training_on_a_folder_skips_bad_files_and_evaluates_with_optional_labels(folder_run) -> None:
    run_dir, metrics = folder_run
    assert metrics["n_train"] == 252, "240 blobs + 12 stripes; broken.png and empty.jpg skipped"
    assert set(metrics["metrics"]) == {"test"}
    assert metrics["metrics"]["test"]["combined"]["auroc"] > 0.9


def test_predict_ranks_planted_anomalies_above_normals(folder_run, toy_folders, tmp_path, capsys) -> None:
    run_dir, _ = folder_run
    _, test = toy_folders
    out, montage = tmp_path / "scores.csv", tmp_path / "worst.png"
    assert predict([str(run_dir), str(test), "--out", str(out), "--montage", str(montage)]) == 0
    rows = read_rows(out)
    assert list(rows[0]) == ["path", "rec_error", "log_likelihood", "score", "is_anomaly"]
    assert len(rows) == 60
    truth = [int("/anomalous/" in r["path"]) for r in rows]
    scores = [float(r["score"]) for r in rows]
    assert roc_auc_score(truth, scores) > 0.9
    assert all((float(r["score"]) > 0) == (r["is_anomaly"] == "1") for r in rows)
    flagged = sum(int(r["is_anomaly"]) for r in rows)
    assert f"scored 60 images: {flagged} flagged" in capsys.readouterr().out
    assert montage.read_bytes()[:4] == b"\x89PNG"


def test_unreadable_files_are_skipped_named_and_counted(folder_run, toy_folders, tmp_path, capsys) -> None:
    run_dir, _ = folder_run
    train, _ = toy_folders
    assert predict([str(run_dir), str(train), "--out", str(tmp_path / "s.csv")]) == 0
    out = capsys.readouterr().out
    assert "skipped 2 unreadable files" in out and "broken.png" in out and "empty.jpg" in out
    assert len(read_rows(tmp_path / "s.csv")) == 252


def test_thresholds_travel_with_the_model(folder_run) -> None:
    run_dir, metrics = folder_run
    module, _, payload = load_model(run_dir)
    assert payload["thresholds"]["t_rec"] == metrics["thresholds"]["t_rec"]
    assert payload["thresholds"]["t_prior"] == metrics["thresholds"]["t_prior"]
    assert payload["preprocessing"] == {"size": [SIDE, SIDE], "color": "gray", "resize": True}
    assert payload["criterion"] == "combined" and not module.training


def test_other_percentiles_at_scoring_time_flag_more(folder_run, toy_folders, tmp_path, capsys) -> None:
    run_dir, _ = folder_run
    _, test = toy_folders
    predict([str(run_dir), str(test), "--out", str(tmp_path / "a.csv")])
    predict(
        [str(run_dir), str(test), "--out", str(tmp_path / "b.csv"), "--rec-percentile", "50", "--lik-percentile", "50"]
    )
    count = lambda p: sum(int(r["is_anomaly"]) for r in read_rows(p))  # noqa: E731
    assert count(tmp_path / "b.csv") > count(tmp_path / "a.csv")


def test_existing_output_is_not_overwritten_without_the_flag(folder_run, toy_folders, tmp_path, capsys) -> None:
    run_dir, _ = folder_run
    _, test = toy_folders
    out = tmp_path / "scores.csv"
    out.write_text("keep me")
    assert predict([str(run_dir), str(test), "--out", str(out)]) == 2
    assert out.read_text() == "keep me" and "--overwrite" in capsys.readouterr().err
    assert predict([str(run_dir), str(test), "--out", str(out), "--overwrite"]) == 0


class Payload:
    """Stands for any object a tampered file could carry to run code on load."""


def test_a_tampered_model_file_with_a_pickled_object_is_refused(folder_run, tmp_path) -> None:
    run_dir, _ = folder_run
    payload = torch.load(run_dir / MODEL_FILE, weights_only=True)
    payload["extra"] = Payload()
    torch.save(payload, tmp_path / MODEL_FILE)
    with pytest.raises(ModelFileError, match="refused or unreadable"):
        load_model(tmp_path)
    with pytest.raises(ModelFileError, match="holds no thresholds"):
        load_model(run_dir / "checkpoints" / "last.ckpt")


def test_an_mnist_model_scores_a_folder_of_digit_pngs_and_rejects_other_sizes(mnist_arrays, tmp_path) -> None:
    run_dir = tmp_path / "mnist_run"
    train_and_evaluate(compose_cfg([*tiny_overrides("aae"), "dataset.epochs.aae=1"]), run_dir)
    _, _, x_test, y_test = mnist_arrays
    digits = tmp_path / "digits"
    for i in range(10):
        save(digits / f"d{i}_label{y_test[i]}.png", x_test[i] / 255.0)
    out = tmp_path / "digits.csv"
    assert predict([str(run_dir), str(digits), "--out", str(out)]) == 0
    assert len(read_rows(out)) == 10
    assert json.loads((run_dir / "metrics.json").read_text())["thresholds"]["t_rec"] > 0
    assert load_model(run_dir)[2]["preprocessing"] == MNIST_PREPROCESSING.to_dict()
    save(digits / "big.png", np.zeros((32, 32)))
    assert predict([str(run_dir), str(digits), "--out", str(tmp_path / "x.csv")]) == 2
    assert find_images(digits)[0].suffix == ".png"

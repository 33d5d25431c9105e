"""Issue 21.2: every model trained on a folder through the command line exits 0 and prints its table,
with and without test labels and training labels (ITSR's summary once failed on an undefined recall)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from itsr.results import console_summary
from tests.conftest import compose_cfg, run_itsr

SIDE = 8
N_NORMAL, N_ODD = 76, 4


def tiny_model(model: str) -> list[str]:
    out = [f"model={model}", "model.module.hidden=[8,8]", "threads=1", "batch_size=16"]
    if model != "ae":
        out.append("model.module.disc_hidden=[8,8]")
    epochs = {"ae": ["dataset.epochs.ae=2"], "aae": ["dataset.epochs.aae=2"]}.get(
        model,
        [
            "dataset.epochs.itsr_pretrain=1",
            "dataset.epochs.itsr_round=1",
            "dataset.epochs.itsr_retrain=1",
            "model.refinement.rounds=2",
        ],
    )
    return out + epochs


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    """Dark normals with a few bright odd ones in training; a labelled test folder; a train label list."""
    rng = np.random.default_rng(0)
    root = tmp_path_factory.mktemp("folder_cli")
    train, test = root / "train", root / "test"
    for folder in (train, test / "normal", test / "anomalous"):
        folder.mkdir(parents=True)

    def save(path: Path, bright: bool) -> None:
        pixels = rng.random((SIDE, SIDE)) * 0.3 + (0.7 if bright else 0.0)
        Image.fromarray((pixels * 255).astype(np.uint8)).save(path)

    rows = ["path,label"]
    for i in range(N_NORMAL + N_ODD):
        odd = i >= N_NORMAL
        save(train / f"i{i:03d}.png", odd)
        rows.append(f"i{i:03d}.png,{int(odd)}")
    (train / "labels.csv").write_text("\n".join(rows) + "\n")
    normals_only = ["path,label"] + [f"i{i:03d}.png,0" for i in range(N_NORMAL + N_ODD)]
    (train / "all_normal.csv").write_text("\n".join(normals_only) + "\n")
    for i in range(10):
        save(test / "normal" / f"n{i}.png", False)
        save(test / "anomalous" / f"a{i}.png", True)
    return {"train": train, "test": test}


def run_folder(folders, tmp_path: Path, model: str, *labels: str):
    run_dir = tmp_path / "run"
    out = run_itsr(
        "dataset=folder",
        f"dataset.root={folders['train']}",
        f"dataset.size=[{SIDE},{SIDE}]",
        *tiny_model(model),
        *labels,
        f"hydra.run.dir={run_dir}",
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Traceback" not in out.stdout + out.stderr
    return out.stdout, json.loads((run_dir / "metrics.json").read_text())


@pytest.mark.slow
@pytest.mark.parametrize("model", ["ae", "aae", "itsr"])
def test_a_folder_without_any_labels_trains_and_prints_its_table(folders, tmp_path, model) -> None:
    stdout, metrics = run_folder(folders, tmp_path, model)
    assert metrics["metrics"] == {} and metrics["n_train_anomalies"] == 0
    assert "split       criterion" in stdout and "no labelled test set" in stdout
    if model == "itsr":
        assert metrics["refinement"] and metrics["refinement"][-1]["recall"] is None
        assert "precision and recall are undefined" in stdout


@pytest.mark.slow
@pytest.mark.parametrize("model", ["aae", "itsr"])
def test_a_folder_with_test_and_training_labels_prints_every_row(folders, tmp_path, model) -> None:
    labels = [f"dataset.test_root={folders['test']}", f"dataset.train_labels_csv={folders['train'] / 'labels.csv'}"]
    stdout, metrics = run_folder(folders, tmp_path, model, *labels)
    assert metrics["n_train_anomalies"] == N_ODD
    for criterion in ("rec", "lik", "combined"):
        row = next(line for line in stdout.splitlines() if line.startswith("test") and criterion in line)
        assert len(row.split()) == 7 and "n/a" not in row
    if model == "itsr":
        assert f"of {N_ODD} known anomalies" in stdout


@pytest.mark.slow
def test_itsr_with_training_labels_that_name_no_anomaly_says_recall_is_undefined(folders, tmp_path) -> None:
    stdout, metrics = run_folder(
        folders, tmp_path, "itsr", f"dataset.train_labels_csv={folders['train'] / 'all_normal.csv'}"
    )
    assert metrics["n_train_anomalies"] == 0
    assert metrics["refinement"][-1]["n_true_anomalies_in_candidates"] == 0
    assert "precision and recall are undefined" in stdout


def test_the_summary_prints_n_a_for_undefined_numbers_and_zero_hits() -> None:
    cfg = compose_cfg(["dataset=folder", "dataset.root=/images", "model=itsr"])
    refinement = [
        {"round": 3, "n_candidates": 12, "n_true_anomalies_in_candidates": 0, "precision": 0.0, "recall": 0.0}
    ]
    metrics = {
        "metrics": {"test": {"rec": {"tpr": 0.5, "tnr": None, "bacc": float("nan"), "auroc": 0.9, "ap": 0.8}}},
        "n_train_anomalies": 4,
        "refinement": refinement,
    }
    text = console_summary(cfg, metrics, Path("/runs/x"))
    assert "test        rec        0.500    n/a    n/a  0.900  0.800" in text
    assert "12, of which 0 of 4 known anomalies (precision 0.00, recall 0.00)" in text
    undefined = {
        **metrics,
        "refinement": [{**refinement[0], "precision": None, "recall": None}],
        "n_train_anomalies": 0,
    }
    assert "precision and recall are undefined" in console_summary(cfg, undefined, Path("/runs/x"))

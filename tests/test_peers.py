"""PyOD peers as models: the run contract on real MNIST, scoring new images, the report, bad input."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image

from itsr.atomic import write_json_atomic
from itsr.detector import ThresholdDetector
from itsr.model_file import MODEL_FILE
from itsr.peers import PEER_FILE, PEERS
from itsr.peers.detector import fit_detector, score_images
from itsr.predict import main as predict
from itsr.report import main as report
from itsr.report import read_runs, render
from itsr.results import METRICS_FORMAT
from itsr.run import train_and_evaluate
from tests.conftest import compose_cfg, run_itsr, toy_images

MNIST_TRAIN = 5923 + 312  # MNIST 0 v 2 at alpha = 5%: every training zero and round(0.05 * 5923 / 0.95) twos
PEER_RUN = ["model=iforest", "threads=1"]  # PyOD's defaults fit in about a second on MNIST 0 v 2


def read_rows(path) -> list[dict]:
    with open(path) as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def peer_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("iforest") / "run"
    metrics = train_and_evaluate(compose_cfg(PEER_RUN), run_dir)
    return run_dir, metrics


def test_a_peer_run_on_real_mnist_writes_the_results_contract(peer_run) -> None:
    run_dir, metrics = peer_run
    assert json.loads((run_dir / "metrics.json").read_text()) == metrics
    config = metrics["config"]
    assert (config["model"], config["setting"], config["alpha"], config["seed"]) == ("iforest", "mnist_0v2", 0.05, 0)
    assert config["detector"] == "pyod.models.iforest.IForest" and config["detector_options"]["n_estimators"] == 100
    assert metrics["n_train"] == MNIST_TRAIN and metrics["n_train_anomalies"] == 312
    assert metrics["fit_time_s"] > 0 and metrics["score_time_s"] > 0
    train = np.array([float(r["score"]) for r in read_rows(run_dir / "train_scores.csv")])
    assert len(train) == MNIST_TRAIN
    # the paper's rule on the peer's score, and PyOD's own: the top alpha of the training scores
    assert metrics["thresholds"]["score"] == pytest.approx(np.percentile(train, 90))
    assert metrics["thresholds"]["contamination"] == pytest.approx(np.percentile(train, 95))
    rows = read_rows(run_dir / "test_scores.csv")
    assert list(rows[0]) == ["split", "label", "anomaly", "score"]
    assert sum(r["split"] == "observed" for r in rows) == 980 + 1032
    for split in ("observed", "unobserved"):
        assert set(metrics["metrics"][split]) == {"score", "contamination"}
        split_rows = [r for r in rows if r["split"] == split]
        truth = np.array([r["anomaly"] == "1" for r in split_rows])
        flagged = np.array([float(r["score"]) for r in split_rows]) > metrics["thresholds"]["score"]
        bacc = ((flagged & truth).sum() / truth.sum() + (~flagged & ~truth).sum() / (~truth).sum()) / 2
        assert metrics["metrics"][split]["score"]["bacc"] == pytest.approx(bacc)
    # on raw pixels IsolationForest separates zeros from twos (AUROC 0.97 with 100 trees, seed 0)
    assert metrics["metrics"]["observed"]["score"]["auroc"] > 0.85
    # the p90 rule flags more training images than PyOD's top-alpha rule, so it finds more anomalies
    observed = metrics["metrics"]["observed"]
    assert observed["score"]["tpr"] > observed["contamination"]["tpr"]


def test_the_peer_model_file_loads_without_pickle_and_pyod_alone_repeats_the_run(peer_run, mnist_arrays) -> None:
    """PyOD's IForest fitted by hand on the same contaminated images (raw [0, 1] pixels, no labels) gives the
    very training scores the run wrote, and the saved detector scores them the same way."""
    import joblib
    from pyod.models.iforest import IForest

    from itsr.data.splits import contaminated_training_indices

    run_dir, metrics = peer_run
    payload = torch.load(run_dir / MODEL_FILE, weights_only=True)  # refuses any pickled object in model.pt
    assert payload["module"] == "pyod" and payload["peer_file"] == PEER_FILE
    # the networks' threshold object and layout: both criteria's thresholds come back from the file
    assert ThresholdDetector.from_dict(payload).reported_thresholds() == metrics["thresholds"]
    x_train, y_train, _, _ = mnist_arrays
    idx, _ = contaminated_training_indices(y_train, 0, 2, 0.05, 0)
    images = x_train[idx].reshape(len(idx), -1).astype(np.float32) / 255.0
    by_hand = IForest(contamination=0.05, random_state=0).fit(images)
    written = np.array([float(r["score"]) for r in read_rows(run_dir / "train_scores.csv")])
    np.testing.assert_allclose(written, by_hand.decision_scores_, rtol=1e-12)
    saved = joblib.load(run_dir / PEER_FILE)
    np.testing.assert_allclose(score_images(saved, images[:100]), by_hand.decision_function(images[:100]))


def test_knn_training_scores_are_leave_one_out() -> None:
    """decision_scores_ (what the thresholds use) leaves each image out of its own neighbours; scoring the
    training set again would count it as its own nearest neighbour."""
    from pyod.models.knn import KNN

    x = toy_images(60, 3).x.double().numpy()
    detector = KNN(n_neighbors=1, contamination=0.05)
    train = fit_detector(detector, x, "knn", "toy")
    assert (train > 0).all() and np.allclose(score_images(detector, x), 0.0, atol=1e-6)
    others = np.linalg.norm(x[:, None] - x[None], axis=2) + np.diag(np.full(len(x), np.inf))
    np.testing.assert_allclose(train, others.min(axis=1))


def save_png(path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.astype(np.uint8), mode="L").save(path)


def test_predict_on_a_peer_run_repeats_its_test_scores(peer_run, mnist_arrays, tmp_path, capsys) -> None:
    run_dir, metrics = peer_run
    _, _, x_test, y_test = mnist_arrays
    rows = [r for r in read_rows(run_dir / "test_scores.csv") if r["split"] == "observed"]
    observed = np.flatnonzero((y_test == 0) | (y_test == 2))  # the observed split, in test-set order
    picks = [0, 1, 2, len(observed) - 2, len(observed) - 1]
    digits = tmp_path / "digits"
    for k in picks:
        save_png(digits / f"d{k:05d}.png", x_test[observed[k]])
    out = tmp_path / "scores.csv"
    assert predict([str(run_dir), str(digits), "--out", str(out), "--montage", str(tmp_path / "m.png")]) == 0
    predicted = read_rows(out)
    assert list(predicted[0]) == ["path", "detector_score", "score", "is_anomaly"]
    threshold = metrics["thresholds"]["score"]
    for k, row in zip(picks, predicted):
        assert float(row["detector_score"]) == pytest.approx(float(rows[k]["score"]), rel=1e-9)
        assert row["is_anomaly"] == str(int(float(row["detector_score"]) > threshold))
        assert (float(row["score"]) > 0) == (row["is_anomaly"] == "1")
    assert "criterion score, threshold" in capsys.readouterr().out
    assert (tmp_path / "m.png").read_bytes()[:4] == b"\x89PNG"


def test_a_peer_pickle_is_read_only_from_a_named_run_directory_and_only_if_unchanged(peer_run, tmp_path, capsys):
    run_dir, _ = peer_run
    digits = tmp_path / "digits"
    save_png(digits / "zero.png", np.zeros((28, 28)))
    # model.pt alone: no unpickling behind the user's back
    assert predict([str(run_dir / MODEL_FILE), str(digits), "--out", str(tmp_path / "a.csv")]) == 2
    assert "pass the run directory" in capsys.readouterr().err
    # a copy of the run whose pickle was swapped: refused before unpickling
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / MODEL_FILE).write_bytes((run_dir / MODEL_FILE).read_bytes())
    (copy / PEER_FILE).write_bytes((run_dir / PEER_FILE).read_bytes() + b"\0")
    assert predict([str(copy), str(digits), "--out", str(tmp_path / "b.csv")]) == 2
    assert "SHA-256 differs" in capsys.readouterr().err
    assert not (tmp_path / "b.csv").exists()


def fake_peer_run(root, name, model, setting="mnist_0v2", seed=0, bacc=0.9, auroc=0.95):
    """metrics.json as a run writes it: peers have criteria score and contamination, ours the paper's."""
    criteria = ("score", "contamination") if model in PEERS else ("rec", "lik", "combined")
    values = {"tpr": bacc, "tnr": bacc, "bacc": bacc, "auroc": auroc, "ap": None}
    write_json_atomic(
        root / name / "metrics.json",
        {
            "format_version": METRICS_FORMAT,
            "config": {"setting": setting, "alpha": 0.05, "model": model, "seed": seed},
            "metrics": {s: {c: dict(values) for c in criteria} for s in ("observed", "unobserved")},
        },
    )


def test_the_report_sets_peers_beside_our_methods_with_a_verdict(tmp_path) -> None:
    for seed, (itsr, knn, iforest) in enumerate([(0.80, 0.93, 0.85), (0.84, 0.95, 0.86), (0.82, 0.94, 0.84)]):
        fake_peer_run(tmp_path, f"itsr{seed}", "itsr", seed=seed, bacc=itsr, auroc=0.97 + seed / 100)
        fake_peer_run(tmp_path, f"knn{seed}", "knn", seed=seed, bacc=knn, auroc=0.96)
        fake_peer_run(tmp_path, f"if{seed}", "iforest", seed=seed, bacc=iforest, auroc=0.90)
    runs, problems = read_runs([tmp_path])
    text = render(runs, problems, [])
    assert "| KNN *peer* | observed | 0.940 ± 0.010 (n=3) · paper – |" in text
    assert "| IFOREST *peer* | unobserved | 0.850 ± 0.010 (n=3) · paper – |" in text
    assert "| MNIST 0 vs 2 | observed | – | – | 0.820 ± 0.020 | KNN 0.940 ± 0.010 | 0.93 |" in text
    # KNN leads ITSR by 0.12 BACC, six times the larger std (0.02); ITSR leads on AUROC (0.98 vs 0.96)
    assert "BACC: KNN (a peer) 0.940 over ITSR 0.820, by 0.120, 6.0× the larger seed std (0.020)" in text
    assert "AUROC: ITSR (ours) 0.980 over KNN 0.960, by 0.020, 2.0× the larger seed std (0.010)" in text
    # a report of peers alone says so, and sets the best peer against the paper's single ITSR run
    only_peers = render([r for r in runs if r.model != "itsr"], problems, [])
    assert (
        "BACC: none of ours in this report; best peer KNN 0.940 vs the paper's ITSR 0.93 (a single run)" in only_peers
    )


def test_a_grid_of_our_models_and_peers_and_the_report(tmp_path) -> None:
    """The issue's grid shape, shrunk: one of our models and a peer on one setting, then the report."""
    sweep = tmp_path / "sweep"
    out = run_itsr(
        "-m",
        "model=ae,iforest",
        "dataset.epochs.ae=1",
        "threads=1",
        f"hydra.sweep.dir={sweep}",
    )
    assert out.returncode == 0, out.stderr[-3000:]
    models = {json.loads(p.read_text())["config"]["model"] for p in sweep.glob("*/metrics.json")}
    assert models == {"ae", "iforest"}
    assert report([str(sweep)]) == 0
    text = (sweep / "report.md").read_text()
    assert "| IFOREST *peer* | observed |" in text and "Against the best peer (α = 5%)" in text
    assert (sweep / "fig5_bacc.png").is_file()


def test_an_unknown_pyod_option_is_named_without_a_traceback(tmp_path) -> None:
    out = run_itsr("model=iforest", "+model.detector.n_trees=5", f"hydra.run.dir={tmp_path / 'run'}", timeout=300)
    assert out.returncode != 0
    assert "model.detector.n_trees: not an option of pyod.models.iforest.IForest" in out.stderr
    assert "n_estimators" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_a_peer_that_cannot_fit_fails_alone_and_names_the_key(tmp_path) -> None:
    sweep = tmp_path / "sweep"
    too_many = MNIST_TRAIN + 1
    out = run_itsr(
        "-m", "model=knn", f"model.detector.n_neighbors={too_many},5", "threads=1", f"hydra.sweep.dir={sweep}"
    )
    assert out.returncode != 0, "the grid reports the failure"
    assert f"model.detector.n_neighbors={too_many}: model=knn needs more training images" in out.stderr
    assert "Traceback" not in out.stderr
    finished = [json.loads(p.read_text()) for p in sweep.glob("*/metrics.json")]
    assert [m["config"]["detector_options"]["n_neighbors"] for m in finished] == [5], "the other job finished"
    (failed,) = sweep.glob("*/failed.json")
    assert json.loads(failed.read_text())["error"] == "PeerError"


def test_a_peer_on_a_folder_of_mixed_sizes_resizes_and_predict_names_a_wrong_size(peer_run, tmp_path) -> None:
    rng = np.random.default_rng(0)
    root = tmp_path / "parts"
    for i, (h, w) in enumerate([(20, 20), (28, 28), (40, 30)] * 10):
        save_png(root / f"p{i:02d}.png", rng.integers(0, 60, size=(h, w)))
    (root / "broken.png").write_bytes(b"not a png")
    run_dir = tmp_path / "run"
    out = run_itsr("model=iforest", "dataset=folder", f"dataset.root={root}", "threads=1", f"hydra.run.dir={run_dir}")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "broken.png" in out.stdout + out.stderr
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["n_train"] == 30 and metrics["metrics"] == {}
    assert torch.load(run_dir / MODEL_FILE, weights_only=True)["preprocessing"]["size"] == [28, 28]
    # an MNIST peer never saw resized images: a 32 x 32 file is an error that names it
    mnist_run, _ = peer_run
    odd = tmp_path / "odd"
    save_png(odd / "big.png", np.zeros((32, 32)))
    assert predict([str(mnist_run), str(odd), "--out", str(tmp_path / "x.csv")]) == 2


# PyOD options whose signature default is a placeholder that PyOD replaces in __init__ (pyod/models/deep_svdd.py:
# `hidden_neurons or [64, 32]`); the config writes the value PyOD actually uses.
PLACEHOLDER_DEFAULTS = {("DeepSVDD", "hidden_neurons"): [64, 32]}


def test_every_option_marked_pyod_default_is_pyods_default() -> None:
    """Issue 22.2: a comment saying "PyOD default" must be true of the installed PyOD (PCA's
    standardization and Deep SVDD's preprocessing were once marked our choice for a wrong reason)."""
    import importlib
    import inspect
    import re

    from omegaconf import OmegaConf

    from tests.conftest import REPO_ROOT

    # the only departures: seeds, quiet logs, the data's width, and PyOD's own threshold at the run's alpha
    departures = {"_target_", "contamination", "random_state", "verbose", "n_features"}
    checked = 0
    for path in sorted((REPO_ROOT / "conf" / "model").glob("*.yaml")):
        cfg = OmegaConf.load(path)
        target = str(cfg.get("detector", {}).get("_target_", ""))
        if not target.startswith("pyod."):
            continue
        module, _, name = target.rpartition(".")
        signature = inspect.signature(getattr(importlib.import_module(module), name).__init__).parameters
        options = OmegaConf.to_container(cfg.detector, resolve=False)
        unmarked = {
            line.split(":")[0].strip()
            for line in path.read_text().splitlines()
            if re.match(r"  \w+:", line) and "PyOD default" not in line and line.split(":")[0].strip() in options
        }
        assert unmarked <= departures, f"{path.name}: {sorted(unmarked - departures)} depart from PyOD's defaults"
        for line in path.read_text().splitlines():
            marked = re.match(r"\s+(\w+):.*#\s*PyOD default", line)
            if not marked:
                continue
            key = marked.group(1)
            default = PLACEHOLDER_DEFAULTS.get((name, key), signature[key].default)
            default = list(default) if isinstance(default, tuple) else default
            assert options[key] == default, f"{path.name}: {key}={options[key]!r}, PyOD's default is {default!r}"
            checked += 1
    assert checked >= 30, "the PyOD peers' configs mark their defaults"


def test_a_peer_run_over_a_finished_one_is_refused_and_keeps_it(peer_run, tmp_path) -> None:
    """A peer has no checkpoint to resume from: rerunning it in a finished directory would overwrite the
    result, so it is refused as a network's fresh start over a finished run is."""
    import shutil

    finished = tmp_path / "finished"
    shutil.copytree(peer_run[0], finished)
    before = (finished / "metrics.json").read_bytes()
    out = run_itsr(*PEER_RUN, f"hydra.run.dir={finished}")
    assert out.returncode != 0 and "holds a finished run" in out.stderr and "cannot resume" in out.stderr
    assert "Traceback" not in out.stderr
    assert (finished / "metrics.json").read_bytes() == before


def test_predict_by_the_contamination_rule_flags_fewer_than_by_the_paper_rule(peer_run, mnist_arrays, tmp_path):
    """The peer's second criterion comes from the same saved threshold object: PyOD's rule (top 5% at
    contamination 0.05) lies above the paper's p90, so it flags a subset of what `score` flags."""
    run_dir, metrics = peer_run
    _, _, x_test, y_test = mnist_arrays
    digits = tmp_path / "digits"
    for k in np.flatnonzero((y_test == 0) | (y_test == 2))[:60]:
        save_png(digits / f"d{k:05d}.png", x_test[k])
    flagged = {}
    for criterion in ("score", "contamination"):
        out = tmp_path / f"{criterion}.csv"
        assert predict([str(run_dir), str(digits), "--out", str(out), "--criterion", criterion]) == 0
        rows = read_rows(out)
        threshold = metrics["thresholds"][criterion]
        assert all(r["is_anomaly"] == str(int(float(r["detector_score"]) > threshold)) for r in rows)
        flagged[criterion] = {r["path"] for r in rows if r["is_anomaly"] == "1"}
    assert metrics["thresholds"]["contamination"] > metrics["thresholds"]["score"]
    assert flagged["contamination"] < flagged["score"]  # a strict subset: some images lie between the two


def test_a_peer_model_file_of_the_old_threshold_layout_is_refused_with_the_fix(peer_run, tmp_path, capsys) -> None:
    """Peer files written before peers shared the networks' threshold object kept a dict of thresholds."""
    run_dir, metrics = peer_run
    copy = tmp_path / "old"
    copy.mkdir()
    payload = torch.load(run_dir / MODEL_FILE, weights_only=True)
    payload["thresholds"] = {"score": 0.1, "contamination": 0.2, "median": 0.0}
    torch.save(payload, copy / MODEL_FILE)
    (copy / PEER_FILE).write_bytes((run_dir / PEER_FILE).read_bytes())
    digits = tmp_path / "digits"
    save_png(digits / "zero.png", np.zeros((28, 28)))
    assert predict([str(copy), str(digits), "--out", str(tmp_path / "s.csv")]) == 2
    err = capsys.readouterr().err
    assert "rerun the peer" in err and "Traceback" not in err
    assert not (tmp_path / "s.csv").exists()


def test_networks_and_peers_share_one_run_pipeline_through_one_declared_interface() -> None:
    """Both kinds of model are RunModels and reach metrics.json through the same function."""
    from itsr.interface import RunModel
    from itsr.network_run import NetworkRun
    from itsr.peers.run import PeerRun
    from itsr.run import build_run_model
    from itsr.runtime import resolved_config
    from tests.conftest import tiny_overrides

    peer = compose_cfg(PEER_RUN)
    network = compose_cfg(tiny_overrides("ae"))
    assert isinstance(build_run_model(peer, resolved_config(peer), ()), PeerRun)
    assert isinstance(build_run_model(network, resolved_config(network), ()), NetworkRun)
    for model in (
        build_run_model(peer, resolved_config(peer), ()),
        build_run_model(network, resolved_config(network), ()),
    ):
        assert isinstance(model, RunModel)

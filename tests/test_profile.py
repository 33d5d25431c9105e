"""The robustness profile (`itsr.report --profile`), from metrics.json files with known numbers."""

from __future__ import annotations

import subprocess
import sys

from itsr.atomic import write_json_atomic
from itsr.report.profile import base_method
from itsr.results import METRICS_FORMAT
from tests.conftest import REPO_ROOT


def peer_run(root, model, setting, alpha, bacc, auroc, precision=None, seed=0, gap=3.0):
    values = {"tpr": bacc, "tnr": bacc, "bacc": bacc, "auroc": auroc, "ap": None}
    metrics = {
        "format_version": METRICS_FORMAT,
        "config": {"setting": setting, "alpha": alpha, "model": model, "seed": seed},
        "thresholds": {"score": 1.0, "contamination": 2.0},
        "n_train_anomalies": 0 if alpha == 0 else 100,
        "metrics": {s: {"score": dict(values), "contamination": dict(values)} for s in ("observed", "unobserved")},
    }
    if precision is not None:
        metrics["refinement"] = [{"round": 1, "precision": precision, "recall": 0.5, "score_gap": gap}]
    write_json_atomic(root / f"{model}_{setting}_{alpha}_{seed}" / "metrics.json", metrics)


def test_refined_methods_pair_with_their_plain_base() -> None:
    assert base_method("knn+itsr-score") == "knn" and base_method("ae+itsr-svm") == "ae"
    assert base_method("itsr") == "aae" and base_method("knn") is None


def test_the_profile_tells_gains_wins_failures_and_random_candidates(tmp_path) -> None:
    runs = tmp_path / "runs"
    # two class pairs at alpha 0.1: refinement helps KNN on one (+0.10), hurts it on the other (-0.05),
    # where its candidates were no better than random (precision 0.1 = alpha)
    peer_run(runs, "knn", "mnist_1v7", 0.1, 0.70, 0.80)
    peer_run(runs, "knn+itsr-score", "mnist_1v7", 0.1, 0.80, 0.90, precision=0.9, gap=8.0)
    peer_run(runs, "knn", "mnist_3v5", 0.1, 0.60, 0.70)
    peer_run(runs, "knn+itsr-score", "mnist_3v5", 0.1, 0.55, 0.65, precision=0.1, gap=2.4)
    peer_run(runs, "iforest", "mnist_1v7", 0.1, 0.75, 0.85)
    peer_run(runs, "iforest", "mnist_3v5", 0.1, 0.50, 0.60)
    # a pair and alpha where every method ranks anomalies below normals
    peer_run(runs, "knn", "fmnist_6v0", 0.2, 0.40, 0.30)
    peer_run(runs, "iforest", "fmnist_6v0", 0.2, 0.45, 0.40)
    out = tmp_path / "profile" / "report.md"
    done = subprocess.run(
        [sys.executable, "-m", "itsr.report", str(runs), "--profile", "--out", str(out)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    text = out.read_text()
    assert (out.parent / "profile_observed.png").stat().st_size > 1000
    # levels: KNN at 0.1 over its two pairs, 0.65 +- 0.071 BACC
    assert "| knn | 0.650 ± 0.071 / 0.750 ± 0.071 (2) |" in text
    # gain paired by pair: (+0.10 - 0.05) / 2 = +0.025, one pair helped, one hurt
    assert "| knn+itsr-score | 0.1 | 2 | +0.025 (-0.050, +0.100) | +0.025 | 1 | 1 |" in text
    # wins at 0.1: refined KNN takes mnist_1v7 (0.80), KNN takes mnist_3v5 (0.60 against 0.55 and 0.50)
    observed = text.split("## Unobserved split")[0]
    wins = observed.split("Which method wins")[1]
    assert "| knn | 1 |" in wins and "| knn+itsr-score | 1 |" in wins and "| iforest | 0 |" in wins
    assert "- fmnist_6v0, α = 0.2: best AUROC 0.400" in observed
    assert "mnist_1v7, α = 0.1" not in observed.split("Where every method fails")[1]
    # precision: one of the two runs near random (0.1 <= 2 alpha), and that one hurt
    assert "| knn+itsr-score | 0.1 | 2 | 0.500 (0.100, 0.900) | 0.500 | 1 | 1 of 1 |" in text
    # the label-free signal: the helped run's first-round gap (8.0) above the hurt one's (2.4) separates them
    assert "| helped | 1 | 8.00 ± 0.00 (8.00, 8.00) |" in text and "| hurt | 1 | 2.40 ± 0.00 (2.40, 2.40) |" in text
    assert 'AUROC of the gap for "not hurt" against "hurt": 1.000' in text


def test_the_profile_grid_runs_each_way_of_refining_a_network_as_its_own_sweep() -> None:
    """--refine-by svm,batch: the AE plain, and one sweep per way of finding candidates; a peer keeps its one
    sweep over refine=none,itsr (it refines by score only), with PyOD's default contamination."""
    out = subprocess.run(
        [sys.executable, "scripts/profile_grid.py", "--out", "/tmp/never", "--models", "ae,knn", "--paper-pairs-only"]
        + ["--refine-by", "svm,batch", "--dry-run", "--", "threads=1"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    mnist = [line for line in out if "dataset=mnist " in line]
    assert [line.split("hydra.sweep.dir=/tmp/never/mnist/")[1].split()[0] for line in mnist] == [
        "ae",
        "ae+itsr-svm",
        "ae+itsr-batch",
        "knn",
    ]
    assert "refine=none " in mnist[0] and "refine=itsr model.refinement.by=batch" in mnist[2]
    assert "refine=none,itsr" in mnist[3] and "model.detector.contamination=0.1" in mnist[3]
    assert all(line.endswith("threads=1") for line in mnist)


def test_refine_compare_pairs_a_refined_network_with_its_base_at_equal_epochs(tmp_path) -> None:
    """The plain AE trains 150 epochs, the refined one 80: the base is read from its curves at epoch 80."""

    def network_run(name, model, epochs, bacc, held):
        values = {"tpr": bacc, "tnr": bacc, "bacc": bacc, "auroc": 0.9, "ap": None}
        metrics = {
            "format_version": METRICS_FORMAT,
            "config": {"setting": "mnist_0v2", "alpha": 0.05, "model": model, "seed": 0, "epochs": epochs},
            "criterion": "rec",
            "metrics": {s: {"rec": dict(values)} for s in ("observed", "unobserved")},
            "metrics_holdout": {s: {"rec": dict(values, bacc=held)} for s in ("observed", "unobserved")},
        }
        if "+" in model:
            metrics["refinement"] = [{"round": 1, "precision": 0.3, "recall": 0.6}]
        write_json_atomic(tmp_path / name / "metrics.json", metrics)

    network_run("plain", "ae", 150, bacc=0.50, held=0.86)  # memorised by epoch 150
    network_run("batch", "ae+itsr-batch", 80, bacc=0.79, held=0.90)
    columns = [f"{s}_rec_{k}" for s in ("observed", "unobserved") for k in ("bacc", "auroc", "bacc_holdout")]
    rows = [["epoch", *columns], ["80", "0.61", "0.9", "0.88", "0.61", "0.9", "0.88"]]
    (tmp_path / "plain" / "curves.csv").write_text("\n".join(",".join(r) for r in rows) + "\n")
    out = tmp_path / "compare.md"
    subprocess.run(
        [sys.executable, "scripts/refine_compare.py", str(tmp_path), "--out", str(out)], cwd=REPO_ROOT, check=True
    )
    batch = next(line for line in out.read_text().splitlines() if "| ae+itsr-batch |" in line)
    assert "+0.180 (1 of 1 up) / +0.180 (1 of 1 up) (+0.020 (1 of 1 up)" in batch  # 0.79 - 0.61, 0.90 - 0.88
    assert "0.300 / 0.600" in batch

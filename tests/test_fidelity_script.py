"""scripts/fidelity.py: variants paired seed by seed, and thresholds recomputed from the score files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

SCRIPT = REPO_ROOT / "scripts" / "fidelity.py"


def fake_run(root: Path, seed: int, bacc_obs: float, retained_shift: float, auroc_obs: float = 0.9) -> None:
    """An ITSR run directory with metrics.json and score files whose thresholds we know."""
    run = root / f"itsr_s{seed}"
    run.mkdir(parents=True)
    metric = {"tpr": 0.5, "tnr": 0.5, "auroc": 0.9, "ap": 0.9}
    metrics = {
        "config": {"model": "itsr", "setting": "mnist_0v2", "alpha": 0.05, "seed": seed},
        "metrics": {
            "observed": {"combined": {**metric, "bacc": bacc_obs, "auroc": auroc_obs}},
            "unobserved": {"combined": {**metric, "bacc": 0.7}},
        },
        "refinement": [{"round": 1, "n_candidates": 3, "precision": 0.5, "recall": 0.25}],
        "retraining": {
            "n_negative": 1,
            "n_true_anomalies_negative": 1,
            "negative_log_likelihood_start": -5.0,
            "negative_log_likelihood_end": -7.0,
            "negative_rec_error_start": 0.1,
            "negative_rec_error_end": 0.3,
        },
    }
    (run / "metrics.json").write_text(json.dumps(metrics))
    # 10 retained samples with errors 0..0.9 and 5 candidates with large errors: with all of X, the
    # p90 threshold sits among the candidates; with X without them, at 0.81
    train = ["label,anomaly,rec_error,log_likelihood,candidate,weight"]
    train += [f"0,0,{i / 10},-2.0,0,1.0" for i in range(10)]
    train += [f"2,1,{5 + i + retained_shift},-9.0,1,-1.0" for i in range(5)]
    (run / "train_scores.csv").write_text("\n".join(train) + "\n")
    # test: a normal at 0.85 is flagged only by the retained threshold (0.81), kept by the other
    test = ["split,label,anomaly,rec_error,log_likelihood"]
    for split in ("observed", "unobserved"):
        test += [f"{split},0,0,0.85,-2.0", f"{split},0,0,0.1,-2.0", f"{split},2,1,9.0,-2.0", f"{split},2,1,0.5,-2.0"]
    (run / "test_scores.csv").write_text("\n".join(test) + "\n")


def test_variants_are_paired_by_seed_and_thresholds_recomputed(tmp_path) -> None:
    for seed, (base, variant) in enumerate([(0.80, 0.90), (0.70, 0.75)]):
        fake_run(tmp_path / "base", seed, base, 0.0)
        fake_run(tmp_path / "variant", seed, variant, 0.0, auroc_obs=0.9 - 0.02 * (seed + 1))
    out = tmp_path / "fidelity.md"
    result = subprocess.run(
        [sys.executable, str(SCRIPT), f"base={tmp_path / 'base'}", f"prior={tmp_path / 'variant'}"]
        + ["--threshold-population", "--out", str(out)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    text = out.read_text()
    prior_row = next(line for line in text.splitlines() if "| itsr | mnist_0v2 | 0.05 | prior |" in line)
    cells = [c.strip() for c in prior_row.strip("|").split("|")]
    # mean paired differences: BACC observed (0.10 + 0.05) / 2, AUROC observed (-0.02 - 0.04) / 2
    assert cells[-4:] == ["+0.075", "+0.000", "-0.030", "+0.000"]
    assert "-5.000 → -7.000" in text and "0.100 → 0.300" in text
    # all of X: t_rec = p90 over 15 errors lies among the candidates -> the normal at 0.85 is kept,
    # the anomaly at 0.5 missed: TPR 0.5, TNR 1 -> 0.75; X without candidates: t_rec = 0.81 ->
    # the normal at 0.85 is flagged: TPR 0.5, TNR 0.5 -> 0.5
    population = text.split("## Threshold population")[1]
    row = next(line for line in population.splitlines() if line.startswith("| mnist_0v2 | 0.05 | base | 0,1 |"))
    observed_all, observed_retained = (float(c.split("±")[0]) for c in row.strip("|").split("|")[4:6])
    assert observed_all == pytest.approx(0.75) and observed_retained == pytest.approx(0.5)

"""The numbers a run produces are pinned: a refactoring must not move them.

Tiny AE, AAE and ITSR runs on real MNIST (one thread, so the floating-point order is fixed) were
recorded in tests/pinned_numbers.json before the reorganisation of issue 13; every epoch's mean
losses and the final metrics.json (thresholds, metrics, training errors, ITSR's refinement history
and retraining figures) must come out the same. Re-record only for a change that is meant to move
numbers, and say so in its commit:

    python -m tests.test_pinned_numbers    # rewrites tests/pinned_numbers.json
"""

from __future__ import annotations

import csv
import json
import math
import sys
import tempfile
from pathlib import Path

import pytest

PINNED = Path(__file__).with_name("pinned_numbers.json")
MODELS = ("ae", "aae", "itsr")
# Equal up to float noise: the same machine and thread count give bit-identical numbers, a CPU with
# other kernels may differ in the last bits.
REL_TOL = 1e-6
ABS_TOL = 1e-9
# metrics.json keys that are numbers of the method (not wall time, device, threads or paths)
PINNED_KEYS = ("n_train", "n_train_anomalies", "thresholds", "metrics", "train_errors", "refinement", "retraining")


def overrides(model: str) -> list[str]:
    from tests.conftest import tiny_overrides

    epochs = [
        "dataset.epochs.ae=2",
        "dataset.epochs.aae=2",
        "dataset.epochs.itsr_pretrain=2",
        "dataset.epochs.itsr_round=1",
        "dataset.epochs.itsr_retrain=2",
        "model.refinement.rounds=2" if model == "itsr" else None,
        "curves.every_n_epochs=1",
        "checkpoint.every_n_epochs=1",
        "seed=3",
    ]
    return tiny_overrides(model) + [e for e in epochs if e]


def epoch_losses(run_dir: Path) -> list[dict[str, float]]:
    """Each epoch's mean losses, as the CSV logger wrote them."""
    with open(run_dir / "logs" / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    out = []
    for row in rows:
        losses = {k: float(v) for k, v in row.items() if k.startswith("loss/") and v != ""}
        if losses:
            out.append({"epoch": int(row["epoch"]), **losses})
    return out


def produce(model: str) -> dict:
    """One tiny run's pinned numbers."""
    from itsr.run import train_and_evaluate
    from tests.conftest import compose_cfg

    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp)
        metrics = train_and_evaluate(compose_cfg(overrides(model)), run_dir)
        return {"losses": epoch_losses(run_dir), **{k: metrics[k] for k in PINNED_KEYS if k in metrics}}


def assert_same(got, want, where: str = "") -> None:
    if isinstance(want, dict):
        assert isinstance(got, dict) and set(got) == set(want), f"{where}: keys {sorted(got)} != {sorted(want)}"
        for key in want:
            assert_same(got[key], want[key], f"{where}.{key}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), f"{where}: length {len(got)} != {len(want)}"
        for i, (g, w) in enumerate(zip(got, want)):
            assert_same(g, w, f"{where}[{i}]")
    elif isinstance(want, float) and not isinstance(got, bool) and isinstance(got, (int, float)):
        assert math.isclose(got, want, rel_tol=REL_TOL, abs_tol=ABS_TOL), f"{where}: {got!r} != pinned {want!r}"
    else:
        assert got == want, f"{where}: {got!r} != pinned {want!r}"


@pytest.mark.slow
@pytest.mark.parametrize("model", MODELS)
def test_a_tiny_run_reproduces_its_pinned_numbers(model: str) -> None:
    pinned = json.loads(PINNED.read_text())[model]
    got = json.loads(json.dumps(produce(model)))  # the same JSON round trip as metrics.json
    assert got["losses"], "no losses were logged"
    assert_same(got, pinned, model)


def test_the_comparison_catches_a_moved_number() -> None:
    pinned = {"metrics": {"observed": {"rec": {"bacc": 0.75}}}, "losses": [{"epoch": 0, "loss/rec": 0.1}]}
    assert_same(json.loads(json.dumps(pinned)), pinned)
    for moved in (
        {"metrics": {"observed": {"rec": {"bacc": 0.7501}}}, "losses": [{"epoch": 0, "loss/rec": 0.1}]},
        {"metrics": {"observed": {"rec": {"bacc": 0.75}}}, "losses": [{"epoch": 0, "loss/rec": 0.100001}]},
        {"metrics": {"observed": {"rec": {"bacc": 0.75}}}, "losses": []},
    ):
        with pytest.raises(AssertionError):
            assert_same(moved, pinned)


if __name__ == "__main__":
    record = {model: produce(model) for model in MODELS}
    PINNED.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    print(f"wrote {PINNED}", file=sys.stderr)

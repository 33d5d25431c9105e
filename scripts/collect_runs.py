"""Copy finished runs' small files into a results folder, the way results/*/runs are committed.

    python scripts/collect_runs.py outputs/paper/itsr_fmnist_a0.05_s0 --into results/paper/runs \
        --name itsr_fmnist_tshirt_v_pullover_a0.05_s0
    python scripts/collect_runs.py outputs/profile/mnist_7v5 --into results/robustness/runs/mnist_7v5 --no-scores

Each SRC is a run directory or a folder of them (a Hydra sweep); a run counts when it has metrics.json
(finished) or failed.json (failed: its failed.json and config.yaml are copied, so the report lists it).
Copied for a finished run: metrics.json and config.yaml (the resolved config; its provenance is in
metrics.json), curves.csv and refinement.csv where the run has them, and, unless --no-scores, the
per-sample score CSVs. Never copied: checkpoints, model.pt, logs, figures (too large, or rebuilt from
these). A destination that already holds a run is left as it is unless its files are identical, so a
committed result is never overwritten by another run.
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
from pathlib import Path

from itsr.results import (
    CURVES_FILE,
    FAILURE_FILE,
    HOLDOUT_SCORES_FILE,
    METRICS_FILE,
    REFINEMENT_FILE,
    TEST_SCORES_FILE,
    TRAIN_SCORES_FILE,
)

CONFIG_FILE = "config.yaml"  # the resolved config every run writes beside metrics.json
SMALL_FILES = (METRICS_FILE, CONFIG_FILE, CURVES_FILE, REFINEMENT_FILE)
SCORE_FILES = (TEST_SCORES_FILE, TRAIN_SCORES_FILE, HOLDOUT_SCORES_FILE)


def finished_runs(source: Path) -> list[Path]:
    """The run directories at or below `source` that hold metrics.json or failed.json, in path order."""
    if any((source / name).is_file() for name in (METRICS_FILE, FAILURE_FILE)):
        return [source]
    return sorted({p.parent for name in (METRICS_FILE, FAILURE_FILE) for p in source.rglob(name)})


def failed(run: Path) -> bool:
    """A failed.json newer than any metrics.json: the run (or its rerun) failed."""
    failure, metrics = run / FAILURE_FILE, run / METRICS_FILE
    return failure.is_file() and (not metrics.is_file() or failure.stat().st_mtime >= metrics.stat().st_mtime)


def collect(run: Path, dest: Path, scores: bool) -> str:
    """Copy one run; returns what happened, in words. A failed run keeps its failed.json and config, so
    that the report built from the results folder lists the failure instead of a silent gap."""
    if failed(run):
        names = [n for n in (CONFIG_FILE, FAILURE_FILE) if (run / n).is_file()]
        marker = FAILURE_FILE
    else:
        names = [n for n in SMALL_FILES + (SCORE_FILES if scores else ()) if (run / n).is_file()]
        marker = METRICS_FILE
    if (dest / METRICS_FILE).is_file() or (dest / FAILURE_FILE).is_file():
        same = all((dest / n).is_file() and filecmp.cmp(run / n, dest / n, shallow=False) for n in names)
        return f"already there: {dest}" if same else f"left out {run}: {dest} holds another run; pick another --name"
    dest.mkdir(parents=True, exist_ok=True)
    for name in [n for n in names if n != marker] + [marker]:  # metrics.json (failed.json) last: it marks the end
        shutil.copy2(run / name, dest / name)
    return f"copied {'failed run ' if marker == FAILURE_FILE else ''}{run} -> {dest} ({', '.join(names)})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("sources", nargs="+", type=Path, help="run directories or folders of them")
    parser.add_argument("--into", type=Path, required=True, help="results folder the runs go into")
    parser.add_argument("--name", help="the destination's name for a single run (default: its own name)")
    parser.add_argument("--no-scores", action="store_true", help="leave out the per-sample score CSVs")
    args = parser.parse_args(argv)
    runs = []
    for source in args.sources:
        if not source.is_dir():
            print(f"error: {source} is not a directory", file=sys.stderr)
            return 2
        found = finished_runs(source)
        if not found:
            print(f"note: no {METRICS_FILE} or {FAILURE_FILE} below {source}", file=sys.stderr)
        # a sweep keeps its layout below --into; a single run directory goes directly under it
        runs += [(run, run.relative_to(source) if run != source else Path(run.name)) for run in found]
    if args.name and len(runs) != 1:
        print(f"error: --name names one run; {len(runs)} were found", file=sys.stderr)
        return 2
    left_out = 0
    for run, relative in runs:
        message = collect(run, args.into / (args.name or relative), not args.no_scores)
        left_out += message.startswith("left out")
        print(message, file=sys.stderr if message.startswith("left out") else sys.stdout)
    return 1 if left_out else 0


if __name__ == "__main__":
    sys.exit(main())

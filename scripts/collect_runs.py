"""Copy finished runs' small files into a results folder, the way results/*/runs are committed.

    python scripts/collect_runs.py outputs/paper/itsr_fmnist_a0.05_s0 --into results/paper/runs \
        --name itsr_fmnist_tshirt_v_pullover_a0.05_s0
    python scripts/collect_runs.py outputs/profile/mnist_7v5 --into results/robustness/runs/mnist_7v5 --no-scores

Each SRC is a run directory or a folder of them (a Hydra sweep); a run counts as finished when it has
metrics.json. Copied: metrics.json and config.yaml (the resolved config; its provenance is in
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
    """The run directories at or below `source` that hold metrics.json, in path order."""
    if (source / METRICS_FILE).is_file():
        return [source]
    return sorted(p.parent for p in source.rglob(METRICS_FILE))


def collect(run: Path, dest: Path, scores: bool) -> str:
    """Copy one run; returns what happened, in words."""
    names = [n for n in SMALL_FILES + (SCORE_FILES if scores else ()) if (run / n).is_file()]
    if (run / FAILURE_FILE).is_file() and (run / FAILURE_FILE).stat().st_mtime >= (run / METRICS_FILE).stat().st_mtime:
        return f"left out {run}: its {FAILURE_FILE} is newer than its {METRICS_FILE} (a failed rerun)"
    if (dest / METRICS_FILE).is_file():
        same = all((dest / n).is_file() and filecmp.cmp(run / n, dest / n, shallow=False) for n in names)
        return f"already there: {dest}" if same else f"left out {run}: {dest} holds another run; pick another --name"
    dest.mkdir(parents=True, exist_ok=True)
    for name in [n for n in names if n != METRICS_FILE] + [METRICS_FILE]:  # metrics.json last: it marks "finished"
        shutil.copy2(run / name, dest / name)
    return f"copied {run} -> {dest} ({', '.join(names)})"


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
            print(f"note: no finished run (no {METRICS_FILE}) below {source}", file=sys.stderr)
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

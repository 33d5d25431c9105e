"""Refined networks against their plain base at equal epochs, from run directories (issue 25.2).

    python scripts/refine_compare.py DIR... --out results/robustness/batch/compare.md

A refined network follows the refinement's schedule (quick preset: 80 epochs), the plain AE the AE's
(150): the plain base is read at the refined run's epoch count from its curves.csv (both threshold
rules, every few epochs) when it trained longer, so no difference comes from training length. Per method
and setting: mean ± std over seeds of BACC (paper's rule and, with a hold-out, the calibrated one) and
AUROC per split under the method's own criterion, the last round's candidate precision and recall, and
the paired gain over the base (same setting and seed). Built only from metrics.json and curves.csv.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

from itsr.report.profile import base_method
from itsr.report.runs import curves_row
from itsr.report.tables import method_criterion

SPLITS = ("observed", "unobserved")
COLUMNS = [(s, k) for s in SPLITS for k in ("bacc", "bacc_holdout", "auroc")]


def read(run_dir: Path) -> dict:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    config = metrics["config"]
    criterion = metrics.get("criterion") or method_criterion(config["model"])
    values = {}
    for split in SPLITS:
        values[(split, "bacc")] = metrics["metrics"][split][criterion]["bacc"]
        values[(split, "auroc")] = metrics["metrics"][split][criterion]["auroc"]
        held = (metrics.get("metrics_holdout") or {}).get(split, {}).get(criterion, {})
        values[(split, "bacc_holdout")] = held.get("bacc")
    rounds = metrics.get("refinement") or []
    return {
        "dir": run_dir,
        "model": config["model"],
        "setting": config["setting"],
        "alpha": config["alpha"],
        "seed": config["seed"],
        "epochs": config["epochs"],
        "criterion": criterion,
        "values": values,
        "precision": rounds[-1]["precision"] if rounds else None,
        "recall": rounds[-1]["recall"] if rounds else None,
    }


def at_epoch(run: dict, epochs: int) -> dict | None:
    """The run's metrics after `epochs` epochs, from its curves.csv (None if it has no such row)."""
    if run["epochs"] == epochs:
        return run["values"]
    row = curves_row(run["dir"], epochs)
    if row is None:  # curves.csv names a column <split>_<criterion>_<metric>[_holdout]
        return None
    return {(split, key): row.get(f"{split}_{run['criterion']}_{key}") for split, key in COLUMNS}


def cell(values: list) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "–"
    mean = statistics.fmean(values)
    return f"{mean:.3f} ± {statistics.stdev(values):.3f}" if len(values) > 1 else f"{mean:.3f}"


def signed(values: list) -> str:
    values = [v for v in values if v is not None]
    return f"{statistics.fmean(values):+.3f} ({sum(v > 0 for v in values)} of {len(values)} up)" if values else "–"


def render(runs: list[dict]) -> str:
    by_key = {(r["model"], r["setting"], r["alpha"], r["seed"]): r for r in runs}
    groups = defaultdict(list)
    for r in runs:
        groups[(r["setting"], r["alpha"], r["model"])].append(r)
    names = {"bacc": "BACC", "bacc_holdout": "BACC calibrated", "auroc": "AUROC"}
    head = " | ".join(f"{split} {names[key]}" for split, key in COLUMNS)
    lines = [
        "| setting | α | method | runs | epochs | "
        + head
        + " | precision / recall of A | gain over base, BACC obs. / unobs. (calibrated) |",
        "| --- " * (8 + len(COLUMNS)) + "|",
    ]
    for (setting, alpha, model), members in sorted(groups.items()):
        values = {c: [m["values"][c] for m in members] for c in COLUMNS}
        base = base_method(model)
        gains = {c: [] for c in COLUMNS}
        base_epochs = set()
        for m in members:
            plain = by_key.get((base, setting, alpha, m["seed"])) if base else None
            then = at_epoch(plain, m["epochs"]) if plain else None
            if then is None:
                continue
            base_epochs.add(m["epochs"])
            for c in COLUMNS:
                if then[c] is not None and m["values"][c] is not None:
                    gains[c].append(m["values"][c] - then[c])
        quality = (
            f"{cell([m['precision'] for m in members])} / {cell([m['recall'] for m in members])}"
            if any(m["precision"] is not None for m in members)
            else "–"
        )
        gain = (
            f"{signed(gains[('observed', 'bacc')])} / {signed(gains[('unobserved', 'bacc')])} "
            f"({signed(gains[('observed', 'bacc_holdout')])} / {signed(gains[('unobserved', 'bacc_holdout')])})"
            if base_epochs
            else "–"
        )
        epochs = ", ".join(sorted({str(m["epochs"]) for m in members}))
        row = [
            setting,
            f"{alpha:g}",
            model,
            str(len(members)),
            epochs,
            *(cell(values[c]) for c in COLUMNS),
            quality,
            gain,
        ]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dirs", nargs="+", type=Path, help="run directories or folders of them, refined and plain")
    parser.add_argument("--out", type=Path, required=True, help="Markdown file to write")
    args = parser.parse_args(argv)
    runs = [read(p.parent) for d in args.dirs for p in sorted(d.rglob("metrics.json"))]
    if not runs:
        print(f"error: no metrics.json under {', '.join(map(str, args.dirs))}", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(render(runs))
    print(f"written: {args.out} ({len(runs)} runs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Compare variants of a method run on the same cells and seeds, from the runs' files only.

    python scripts/fidelity.py LABEL=DIR [LABEL=DIR ...] [--out FILE]

Each DIR is a sweep directory (or several, comma-separated) of runs made with one variant of the
config (e.g. base=multirun/itsr, fit_on_all=multirun/itsr_all). The script pairs the runs by
(model, setting, alpha, seed) and writes Markdown:
  - BACC and AUROC of the paper's criterion (combined) per cell and variant, mean +- std over seeds,
    and their mean paired differences to the first label;
  - ITSR's candidate set per round (size, precision, recall), and where retraining took the
    negative-weight samples (log-likelihood and reconstruction error at its start and end);
  - the threshold population: BACC with thresholds from all of X against X without the candidates
    (weight 1 at the end), recomputed from train_scores.csv and test_scores.csv.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

import torch

from itsr.scoring import evaluate_split, fit_thresholds

SPLITS = ("observed", "unobserved")


def read_runs(dirs: str) -> dict[tuple, dict]:
    """(model, setting, alpha, seed) -> {"metrics": ..., "dir": Path} of every finished run."""
    runs = {}
    for root in dirs.split(","):
        for path in sorted(Path(root).rglob("metrics.json")):
            m = json.loads(path.read_text())
            c = m["config"]
            runs[(c["model"], c["setting"], c["alpha"], c["seed"])] = {"metrics": m, "dir": path.parent}
    return runs


def criterion_of(m: dict) -> str:
    return "combined" if "combined" in m["metrics"]["observed"] else "rec"


def mean_std(values: list[float]) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "n/a"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def metric_of(runs: dict, seeds: list[int], split: str, key: str = "bacc") -> list[float]:
    return [runs[s]["metrics"]["metrics"][split][criterion_of(runs[s]["metrics"])][key] for s in seeds]


def paired_diff(a: list[float], b: list[float]) -> str:
    pairs = [(x, y) for x, y in zip(a, b) if x is not None and y is not None]
    if not pairs:
        return ""
    return f"{statistics.mean(y - x for x, y in pairs):+.3f}"


def read_csv(path: Path) -> list[dict]:
    with open(path) as handle:
        return list(csv.DictReader(handle))


def retained_vs_all(run_dir: Path, rec_percentile: float = 90, lik_percentile: float = 10) -> dict | None:
    """Combined-criterion BACC per split with thresholds from all training samples and from those
    with weight 1 at the end (ITSR runs only)."""
    train_path, test_path = run_dir / "train_scores.csv", run_dir / "test_scores.csv"
    if not train_path.is_file() or not test_path.is_file():
        return None
    train = read_csv(train_path)
    if "weight" not in train[0]:
        return None
    rec = torch.tensor([float(r["rec_error"]) for r in train], dtype=torch.float64)
    lik = torch.tensor([float(r["log_likelihood"]) for r in train], dtype=torch.float64)
    keep = torch.tensor([float(r["weight"]) == 1.0 for r in train])
    test = read_csv(test_path)
    out = {}
    for population, mask in (("all", torch.ones_like(keep)), ("retained", keep)):
        th = fit_thresholds(rec[mask], lik[mask], rec_percentile, lik_percentile)
        for split in SPLITS:
            rows = [r for r in test if r["split"] == split]
            metrics = evaluate_split(
                th,
                torch.tensor([r["anomaly"] == "1" for r in rows]),
                torch.tensor([float(r["rec_error"]) for r in rows], dtype=torch.float64),
                torch.tensor([float(r["log_likelihood"]) for r in rows], dtype=torch.float64),
            )
            out[(population, split)] = metrics["combined"]["bacc"]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("variants", nargs="+", help="LABEL=DIR[,DIR...]")
    parser.add_argument("--out", type=Path, help="write the Markdown here instead of stdout")
    parser.add_argument("--threshold-population", action="store_true", help="recompute BACC for both populations")
    args = parser.parse_args(argv)
    variants = {}
    for spec in args.variants:
        label, _, dirs = spec.partition("=")
        if not dirs:
            parser.error(f"expected LABEL=DIR, got {spec!r}")
        variants[label] = read_runs(dirs)
    labels = list(variants)
    base = labels[0]

    cells = defaultdict(lambda: defaultdict(dict))  # (model, setting, alpha) -> label -> seed -> run
    for label, runs in variants.items():
        for (model, setting, alpha, seed), run in runs.items():
            cells[(model, setting, alpha)][label][seed] = run

    lines = [
        f"## Paper criterion per cell (mean ± std over seeds; Δ: mean paired difference to `{base}`, same seeds)",
        "",
    ]
    header = (
        "| model | setting | alpha | variant | seeds | BACC obs | BACC unobs | AUROC obs | AUROC unobs "
        "| Δ BACC obs | Δ BACC unobs | Δ AUROC obs | Δ AUROC unobs |"
    )
    lines += [header, "|" + " --- |" * (header.count("|") - 1)]
    for (model, setting, alpha), by_label in sorted(cells.items()):
        for label in labels:
            runs = by_label.get(label)
            if not runs:
                continue
            seeds = sorted(runs)
            columns = [(key, split) for key in ("bacc", "auroc") for split in SPLITS]
            spreads = [mean_std(metric_of(runs, seeds, split, key)) for key, split in columns]
            diffs = [""] * len(columns)
            if label != base and base in by_label:
                common = sorted(set(seeds) & set(by_label[base]))
                diffs = [
                    paired_diff(metric_of(by_label[base], common, split, key), metric_of(runs, common, split, key))
                    for key, split in columns
                ]
            lines.append(
                f"| {model} | {setting} | {alpha} | {label} | {','.join(map(str, seeds))} | "
                f"{' | '.join(spreads)} | {' | '.join(diffs)} |"
            )

    itsr_lines = []
    for (_model, setting, alpha), by_label in sorted(cells.items()):
        for label in labels:
            for seed, run in sorted(by_label.get(label, {}).items()):
                m = run["metrics"]
                if not m.get("refinement"):
                    continue
                rounds = m["refinement"]
                sizes = "/".join(str(r["n_candidates"]) for r in rounds)
                prec = "/".join(f"{r['precision']:.2f}" for r in rounds)
                rec = "/".join(f"{r['recall']:.2f}" for r in rounds)
                rt = m.get("retraining") or {}

                def fmt(key: str, rt=rt) -> str:
                    v = rt.get(key)
                    return "n/a" if v is None else f"{v:.3f}"

                itsr_lines.append(
                    f"| {setting} | {alpha} | {label} | {seed} | {sizes} | {prec} | {rec} | "
                    f"{rt.get('n_negative', 'n/a')} ({rt.get('n_true_anomalies_negative', 'n/a')}) | "
                    f"{fmt('negative_log_likelihood_start')} → {fmt('negative_log_likelihood_end')} | "
                    f"{fmt('negative_rec_error_start')} → {fmt('negative_rec_error_end')} |"
                )
    if itsr_lines:
        lines += [
            "",
            "## ITSR: candidate set A per round, and where retraining took the negative-weight samples",
            "",
            "| setting | alpha | variant | seed | A size per round | precision per round | recall per round "
            "| negative weights (anomalies) | their log p(z): start → end | their rec. error: start → end |",
            "|" + " --- |" * 10,
            *itsr_lines,
        ]

    if args.threshold_population:
        tp_lines = []
        for (_model, setting, alpha), by_label in sorted(cells.items()):
            for label in labels:
                results = {s: retained_vs_all(r["dir"]) for s, r in sorted(by_label.get(label, {}).items())}
                results = {s: r for s, r in results.items() if r}
                if not results:
                    continue
                cols = []
                for split in SPLITS:
                    a = [r[("all", split)] for r in results.values()]
                    b = [r[("retained", split)] for r in results.values()]
                    cols += [mean_std(a), mean_std(b), paired_diff(a, b)]
                tp_lines.append(
                    f"| {setting} | {alpha} | {label} | {','.join(map(str, results))} | " + " | ".join(cols) + " |"
                )
        lines += [
            "",
            "## Threshold population (combined criterion, BACC): all of X vs X without the candidates",
            "",
            "| setting | alpha | variant | seeds | obs: all | obs: retained | Δ | unobs: all | unobs: retained | Δ |",
            "|" + " --- |" * 10,
            *tp_lines,
        ]

    text = "\n".join(lines) + "\n"
    if args.out:
        args.out.write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

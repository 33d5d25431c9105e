"""Quick vs paper scale, cell by cell: the same setting, alpha, model and seed run at both epochs.

    python scripts/scale_compare.py --quick results/quick/runs --paper results/paper/runs [--out FILE.md]

Reads metrics.json files only (never logs): BACC and AUROC per split and criterion, the refinement's
final recall and precision, and the retraining figures, side by side with the paper's number.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from itsr.report.paper import PAPER, PAPER_CRITERION


def runs(roots: list[Path]) -> dict[tuple, dict]:
    out = {}
    for path in sorted(p for root in roots for p in root.rglob("metrics.json")):
        metrics = json.loads(path.read_text())
        c = metrics["config"]
        key = (c["setting"], c["alpha"], c["model"], c["seed"])
        if key in out:  # e.g. a config variant of the same cell: name the directories, never pick one
            raise SystemExit(f"two runs of {key}: {out[key]['_dir']} and {path.parent}; pass narrower directories")
        out[key] = metrics | {"_dir": str(path.parent)}
    return out


def paper_value(setting: str, alpha: float, model: str, split: str):
    value = PAPER.get((setting, alpha, model, split, PAPER_CRITERION.get(model)))
    return None if value is None else value.bacc


def fmt(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def table(quick: dict, paper: dict) -> str:
    lines = [
        "| setting | alpha | model | seed | split | BACC quick | BACC paper scale | BACC paper | AUROC quick "
        "| AUROC paper scale |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    extra = []
    for key in sorted(set(quick) & set(paper)):
        setting, alpha, model, seed = key
        crit = PAPER_CRITERION.get(model, "combined")
        for split in ("observed", "unobserved"):
            q, p = quick[key]["metrics"][split][crit], paper[key]["metrics"][split][crit]
            lines.append(
                f"| {setting} | {alpha:g} | {model} | {seed} | {split} | {fmt(q['bacc'])} | {fmt(p['bacc'])} | "
                f"{fmt(paper_value(setting, alpha, model, split))} | {fmt(q['auroc'])} | {fmt(p['auroc'])} |"
            )
        for name, metrics in (("quick", quick[key]), ("paper scale", paper[key])):
            if metrics.get("refinement"):
                last = metrics["refinement"][-1]
                r = metrics.get("retraining", {})
                extra.append(
                    f"| {setting} | {alpha:g} | {model} | {seed} | {name} | {metrics['config']['epochs']} | "
                    f"{last['n_candidates']} | {last['recall']:.3f} | {last['precision']:.3f} | "
                    f"{fmt(r.get('negative_log_likelihood_start'))} -> {fmt(r.get('negative_log_likelihood_end'))} | "
                    f"{fmt(r.get('negative_rec_error_start'))} -> {fmt(r.get('negative_rec_error_end'))} | "
                    f"{metrics['wall_time_s'] / 60:.0f} |"
                )
    if extra:
        lines += [
            "",
            "| setting | alpha | model | seed | scale | epochs | candidates after round 10 | recall | precision | "
            "candidates' log p(z) in retraining | their rec. error | wall min |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
            *extra,
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", type=Path, nargs="+", required=True, help="quick-scale run directories or folders of them"
    )
    parser.add_argument(
        "--paper", type=Path, nargs="+", required=True, help="paper-scale run directories or folders of them"
    )
    parser.add_argument("--out", type=Path, help="also write the table to this Markdown file")
    args = parser.parse_args()
    quick, paper = runs(args.quick), runs(args.paper)
    text = table(quick, paper)
    if args.out:
        args.out.write_text(text)
    print(text, end="")


if __name__ == "__main__":
    main()

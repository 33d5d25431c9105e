"""Reads run directories (never console logs) and sets our numbers beside the paper's.

    python -m itsr.report DIR... [--out FILE]

Every metrics.json below the given directories is read; runs are grouped by setting, alpha,
method, test split and criterion; the Markdown report shows the paper's Table 1 and Fig. 5 layouts
with our mean +- std over seeds, the paper's value and the difference, then AUROC and AP, which the
paper lacks. Figures are written as PNG beside the report. Failed, half-written or unreadable runs
are listed, never dropped silently; the exit status is non-zero only when nothing could be read.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import statistics
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from itsr.io import write_bytes_atomic
from itsr.paper import METHODS, PAPER, PAPER_CRITERION, SETTINGS, SPLITS
from itsr.peers import PEERS, SCORE_CRITERION
from itsr.results import FAILURE_FILE, METRICS_FORMAT

MATCH_TOLERANCE = 0.03  # a cell "matches" the paper when |ours - paper| <= this BACC
TABLE1_ALPHAS = (0.01, 0.001)
FIG5_ALPHA = 0.05
CLEAN = ("fmnist_tshirt_v_pullover", 0.0, "aae")


@dataclass
class Run:
    path: Path
    setting: str
    alpha: float
    model: str
    seed: int
    metrics: dict


@dataclass
class Problem:
    path: Path
    status: str  # failed | incomplete | unreadable | other-version
    reason: str
    key: tuple | None = None  # (setting, alpha, model) when known


@dataclass
class Cell:
    bacc: list[float] = field(default_factory=list)
    auroc: list[float] = field(default_factory=list)
    ap: list[float] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)


def _hydra_key(run_dir: Path) -> tuple | None:
    """(setting, alpha, model) of a run from its saved Hydra config, for runs without metrics."""
    config = run_dir / ".hydra" / "config.yaml"
    if not config.is_file():
        return None
    try:
        from omegaconf import OmegaConf

        cfg = OmegaConf.load(config)
        return (cfg.dataset.setting, float(cfg.alpha), cfg.model.name)
    except Exception:  # a damaged config leaves the key unknown, nothing more
        return None


def read_runs(roots: list[Path]) -> tuple[list[Run], list[Problem]]:
    runs, problems = [], []
    candidates: set[Path] = set()
    for root in roots:
        if not root.exists():
            problems.append(Problem(root, "unreadable", "no such directory"))
            continue
        for marker in ("metrics.json", FAILURE_FILE, ".hydra"):
            candidates |= {p.parent for p in root.rglob(marker)}
    for run_dir in sorted(candidates):
        metrics_file = run_dir / "metrics.json"
        failure_file = run_dir / FAILURE_FILE
        if failure_file.is_file() and (
            not metrics_file.is_file() or failure_file.stat().st_mtime >= metrics_file.stat().st_mtime
        ):
            # the newer state wins: a failed rerun in a finished directory must not hide behind its old result
            reason = _failure_reason(failure_file)
            if metrics_file.is_file():
                reason += " (an older metrics.json is kept beside it)"
            problems.append(Problem(run_dir, "failed", reason, _hydra_key(run_dir)))
            continue
        if not metrics_file.is_file():
            problems.append(
                Problem(run_dir, "incomplete", "no metrics.json (running, killed or not started)", _hydra_key(run_dir))
            )
            continue
        try:
            metrics = json.loads(metrics_file.read_text())
            if not isinstance(metrics, dict):
                raise TypeError(f"a JSON {type(metrics).__name__}, not an object")
            if metrics.get("format_version") != METRICS_FORMAT:
                problems.append(
                    Problem(
                        run_dir,
                        "other-version",
                        f"metrics format {metrics.get('format_version')}, this report reads {METRICS_FORMAT}",
                    )
                )
                continue
            c = metrics["config"]
            _check_metrics_shape(metrics)
            runs.append(Run(run_dir, str(c["setting"]), float(c["alpha"]), str(c["model"]), int(c["seed"]), metrics))
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError, AttributeError) as error:
            problems.append(Problem(run_dir, "unreadable", f"metrics.json: {type(error).__name__}: {error}"))
        except OSError as error:
            problems.append(Problem(run_dir, "unreadable", f"metrics.json: {error.strerror or error}"))
    return runs, problems


def _failure_reason(path: Path) -> str:
    """The error a failed run left, or why its failed.json cannot be read (the run is failed either way)."""
    try:
        failure = json.loads(path.read_text())
        return f"{failure.get('error')}: {failure.get('message')}"
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError) as error:
        return f"{path.name} unreadable ({type(error).__name__})"


def _check_metrics_shape(metrics: dict) -> None:
    """metrics[split][criterion][metric] is a number or null; anything else is another file's shape."""
    if not isinstance(metrics.get("metrics"), dict):
        raise TypeError("no metrics[split][criterion] table")
    for split, by_criterion in metrics["metrics"].items():
        if not isinstance(by_criterion, dict) or not all(isinstance(v, dict) for v in by_criterion.values()):
            raise TypeError(f"metrics[{split!r}] is not a table of criteria")
        for criterion, values in by_criterion.items():
            for name in ("bacc", "auroc", "ap"):
                value = values.get(name)
                if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                    raise TypeError(f"metrics[{split!r}][{criterion!r}][{name!r}] is {value!r}, not a number")


def aggregate(runs: list[Run]) -> dict[tuple, Cell]:
    """(setting, alpha, model, split, criterion) -> values over seeds."""
    cells: dict[tuple, Cell] = defaultdict(Cell)
    for run in runs:
        for split, by_criterion in run.metrics["metrics"].items():
            for criterion, values in by_criterion.items():
                cell = cells[(run.setting, run.alpha, run.model, split, criterion)]
                for name in ("bacc", "auroc", "ap"):
                    value = values.get(name)
                    getattr(cell, name).append(math.nan if value is None else float(value))
                cell.seeds.append(run.seed)
    return dict(cells)


def mean_std(values: list[float]) -> tuple[float, float]:
    clean = [v for v in values if not math.isnan(v)]
    if not clean:
        return math.nan, math.nan
    return statistics.fmean(clean), statistics.stdev(clean) if len(clean) > 1 else 0.0


def _fmt(values: list[float]) -> str:
    mean, std = mean_std(values)
    if math.isnan(mean):
        return "n/a"
    return f"{mean:.3f} ± {std:.3f}" if len(values) > 1 else f"{mean:.3f}"


def paper_cell(
    cells: dict, problems: list[Problem], setting: str, alpha: float, model: str, split: str, criterion: str
) -> str:
    """Ours (mean ± std, n) · paper · difference, or why there is no number."""
    paper = PAPER.get((setting, alpha, model, split, criterion))
    cell = cells.get((setting, alpha, model, split, criterion))
    paper_text = f"paper {paper.bacc:.2f}" if paper else "paper –"
    if cell is None:
        failed = sum(1 for p in problems if p.key == (setting, alpha, model) and p.status == "failed")
        status = f"**failed** ({failed} run{'s' if failed > 1 else ''})" if failed else "missing"
        return f"{status} · {paper_text}"
    mean, _ = mean_std(cell.bacc)
    text = f"{_fmt(cell.bacc)} (n={len(cell.bacc)}) · {paper_text}"
    if paper and not math.isnan(mean):
        diff = mean - paper.bacc
        text += f" · Δ {diff:+.3f} {'✓' if abs(diff) <= MATCH_TOLERANCE else '✗'}"
    return text


def layout_table(cells, problems, alpha: float, title: str) -> list[str]:
    lines = [
        f"### {title}",
        "",
        "| method | test split | " + " | ".join(SETTINGS.values()) + " |",
        "| --- | --- |" + " --- |" * len(SETTINGS),
    ]
    for split in SPLITS:
        for model in METHODS:
            row = [paper_cell(cells, problems, s, alpha, model, split, PAPER_CRITERION[model]) for s in SETTINGS]
            lines.append(f"| {model.upper()} | {split} | " + " | ".join(row) + " |")
        lines += peer_rows(cells, problems, alpha, split)
    return lines + [""]


def match_summary(cells) -> list[str]:
    matched, missed = [], []
    for key, paper in PAPER.items():
        cell = cells.get(key)
        if cell is None:
            continue
        mean, _ = mean_std(cell.bacc)
        if math.isnan(mean):
            continue
        setting, alpha, model, split, criterion = key
        label = f"{model.upper()} {SETTINGS[setting]} α={alpha:g} {split} ({criterion})"
        (matched if abs(mean - paper.bacc) <= MATCH_TOLERANCE else missed).append(
            f"{label}: ours {mean:.3f}, paper {paper.bacc:.2f}"
        )
    lines = [
        f"Cells within {MATCH_TOLERANCE} BACC of the paper: {len(matched)} of {len(matched) + len(missed)} compared."
    ]
    if missed:
        lines += ["", "Not matching:", *[f"- {m}" for m in missed]]
    return lines + [""]


def full_table(cells) -> list[str]:
    lines = [
        "| setting | α | method | split | criterion | BACC | AUROC | AP | n | paper BACC |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    order = {s: i for i, s in enumerate(SETTINGS)}
    for key in sorted(
        cells,
        key=lambda k: (order.get(k[0], 99), k[0], -k[1], method_rank(k[2]), k[3], k[4]),
    ):
        setting, alpha, model, split, criterion = key
        cell = cells[key]
        paper = PAPER.get(key)
        paper_text = f"{paper.bacc:.2f}" if paper else "–"
        lines.append(
            f"| {SETTINGS.get(setting, setting)} | {alpha:g} | {model.upper()} | {split} | {criterion} | "
            f"{_fmt(cell.bacc)} | {_fmt(cell.auroc)} | {_fmt(cell.ap)} | {len(cell.bacc)} | {paper_text} |"
        )
    return lines + [""]


def render(runs: list[Run], problems: list[Problem], figures: list[str]) -> str:
    cells = aggregate(runs)
    alphas = {r.alpha for r in runs} | {p.key[1] for p in problems if p.key}
    lines = [
        "# itsr report",
        "",
        f"{len(runs)} finished runs; {len(problems)} skipped or failed (listed at the end). "
        "BACC as mean ± std over seeds (n runs), beside the paper's single-run value; ✓ within "
        f"{MATCH_TOLERANCE}. AE: reconstruction criterion; AAE and ITSR: combined criterion, as in the paper. "
        "Peers (PyOD detectors on the same training sets and splits, marked *peer*): criterion `score`, anomaly "
        "if the detector's score is above the p90 of its training scores (the paper's T_rec rule).",
        "",
    ]
    if FIG5_ALPHA in alphas:
        lines += layout_table(cells, problems, FIG5_ALPHA, "Fig. 5 (α = 5%)")
    for alpha in TABLE1_ALPHAS:
        if alpha in alphas:
            lines += layout_table(cells, problems, alpha, f"Table 1 (α = {alpha * 100:g}%)")
    if any(k[:3] == CLEAN for k in cells):
        lines += [
            "### Sec. 4.1: AAE on clean T-shirts, T-shirt vs Pullover",
            "",
            "| criterion | ours |",
            "| --- | --- |",
        ]
        for criterion in ("rec", "lik", "combined"):
            lines.append(f"| {criterion} | {paper_cell(cells, problems, *CLEAN, 'observed', criterion)} |")
        lines.append("")
    for alpha in (FIG5_ALPHA, *TABLE1_ALPHAS):
        if alpha in alphas:
            lines += peer_verdicts(cells, alpha)
    lines += ["## Match with the paper", "", *match_summary(cells)]
    lines += ["## All cells, with AUROC and AP", "", *full_table(cells)]
    if figures:
        lines += ["## Figures", "", *[f"![{name}]({name})" for name in figures], ""]
    if problems:
        lines += ["## Skipped or failed runs", "", "| run | status | reason |", "| --- | --- | --- |"]
        lines += [f"| {p.path} | {p.status} | {p.reason} |" for p in problems]
        lines.append("")
    return "\n".join(lines)


def method_rank(model: str) -> int:
    """Report order: the paper's methods, then the peers in itsr.peers.PEERS order, then anything else."""
    order = (*METHODS, *PEERS)
    return order.index(model) if model in order else len(order)


def method_criterion(model: str) -> str:
    """The criterion a method is compared by: the paper's for AE, AAE and ITSR; `score` for a peer."""
    return PAPER_CRITERION.get(model, SCORE_CRITERION)


def peers_in(cells, alpha: float) -> list[str]:
    """Peers with at least one cell at this alpha, in report order."""
    return sorted({k[2] for k in cells if k[1] == alpha and k[2] in PEERS}, key=method_rank)


def peer_rows(cells, problems, alpha: float, split: str) -> list[str]:
    """One row per peer in the paper's layouts (the paper has no value for them)."""
    return [
        f"| {peer.upper()} *peer* | {split} | "
        + " | ".join(paper_cell(cells, problems, s, alpha, peer, split, SCORE_CRITERION) for s in SETTINGS)
        + " |"
        for peer in peers_in(cells, alpha)
    ]


def _best(cells, setting: str, alpha: float, split: str, models, metric: str) -> tuple[str, float, float, int] | None:
    """(model, mean, std, n) of the model with the highest mean `metric`, or None if none has a number."""
    best = None
    for model in models:
        cell = cells.get((setting, alpha, model, split, method_criterion(model)))
        if cell is None:
            continue
        values = getattr(cell, metric)
        mean, std = mean_std(values)
        if not math.isnan(mean) and (best is None or mean > best[1]):
            best = (model, mean, std, len(values))
    return best


def _versus(winner: tuple, other: tuple) -> str:
    """How far the winner is ahead, against the larger of the two seed spreads (std over seeds)."""
    margin = winner[1] - other[1]
    if min(winner[3], other[3]) < 2:
        spread = "one seed, so no spread to compare with"
    else:
        std = max(winner[2], other[2])
        if margin <= std:
            spread = f"within the seed spread (std up to {std:.3f})"
        else:
            spread = f"{margin / std:.1f}× the larger seed std ({std:.3f})" if std > 0 else "the seeds agree exactly"
    return f"by {margin:.3f}, {spread}"


def verdict(cells, setting: str, alpha: float, split: str, metric: str) -> str:
    """Which of all methods wins on `metric`, against the best of the other camp (ours vs peers)."""
    ours = _best(cells, setting, alpha, split, METHODS, metric)
    peer = _best(cells, setting, alpha, split, PEERS, metric)
    if peer is None:
        return "no peer in this report"
    if ours is None:
        paper = PAPER.get((setting, alpha, "itsr", split, PAPER_CRITERION["itsr"])) if metric == "bacc" else None
        against = f" vs the paper's ITSR {paper.bacc:.2f} (a single run)" if paper else ""
        return f"none of ours in this report; best peer {peer[0].upper()} {peer[1]:.3f}{against}"
    winner, other = (ours, peer) if ours[1] >= peer[1] else (peer, ours)
    camp = "ours" if winner is ours else "a peer"
    return f"{winner[0].upper()} ({camp}) {winner[1]:.3f} over {other[0].upper()} {other[1]:.3f}, " + _versus(
        winner, other
    )


def peer_verdicts(cells, alpha: float) -> list[str]:
    """The best peer beside the paper's methods, and a verdict per setting and test split."""
    if not peers_in(cells, alpha):
        return []
    lines = [
        f"### Against the best peer (α = {alpha * 100:g}%)",
        "",
        "BACC, mean ± std over seeds; best peer: the peer with the highest mean BACC in that cell.",
        "",
        "| setting | test split | " + " | ".join(m.upper() for m in METHODS) + " | best peer | paper ITSR |",
        "| --- | --- |" + " --- |" * (len(METHODS) + 2),
    ]
    for setting, title in SETTINGS.items():
        for split in SPLITS:
            row = []
            for model in METHODS:
                cell = cells.get((setting, alpha, model, split, method_criterion(model)))
                row.append(_fmt(cell.bacc) if cell else "–")
            best = _best(cells, setting, alpha, split, PEERS, "bacc")
            if best:
                row.append(f"{best[0].upper()} {_fmt(cells[(setting, alpha, best[0], split, SCORE_CRITERION)].bacc)}")
            else:
                row.append("–")
            paper = PAPER.get((setting, alpha, "itsr", split, PAPER_CRITERION["itsr"]))
            row.append(f"{paper.bacc:.2f}" if paper else "–")
            lines.append(f"| {title} | {split} | " + " | ".join(row) + " |")
    lines += ["", "Verdicts (which method wins, and by how much against the spread over seeds):", ""]
    for setting, title in SETTINGS.items():
        for split in SPLITS:
            if not any(k[:2] == (setting, alpha) and k[3] == split for k in cells):
                continue
            lines.append(
                f"- {title}, {split}: BACC: {verdict(cells, setting, alpha, split, 'bacc')}; "
                f"AUROC: {verdict(cells, setting, alpha, split, 'auroc')}."
            )
    return lines + [""]


def read_csv(path: Path) -> dict[str, list[float]]:
    with open(path) as handle:
        rows = list(csv.DictReader(handle))
    columns: dict[str, list] = defaultdict(list)
    for row in rows:
        for key, value in row.items():
            try:
                columns[key].append(float(value))
            except (TypeError, ValueError):
                columns[key].append(value)
    return dict(columns)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m itsr.report", description=__doc__.split("\n")[0])
    parser.add_argument("dirs", nargs="+", type=Path, help="sweep or run directories to read")
    parser.add_argument("--out", type=Path, default=None, help="Markdown file (default: DIR/report.md)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing report (as itsr.predict)")
    args = parser.parse_args(argv)
    out = args.out or args.dirs[0] / "report.md"
    if out.is_dir():
        print(f"error: --out {out} is a directory; give a file name such as {out / 'report.md'}", file=sys.stderr)
        return 2
    if out.exists() and not args.overwrite:
        print(f"error: {out} exists; pass --overwrite to replace it (or another --out)", file=sys.stderr)
        return 2
    runs, problems = read_runs(args.dirs)
    for problem in problems:
        print(f"skipped {problem.path}: {problem.status}: {problem.reason}", file=sys.stderr)
    if not runs:
        print(f"no finished run (metrics.json) below {', '.join(map(str, args.dirs))}", file=sys.stderr)
        return 1
    from itsr.report_figures import write_report_figures

    try:
        figures = write_report_figures(runs, aggregate(runs), out.parent)
        write_bytes_atomic(out, render(runs, problems, figures).encode())
    except OSError as error:  # no permission, full disk: name the file; nothing half-written is left
        print(f"error: cannot write {error.filename or out}: {error.strerror or error}", file=sys.stderr)
        return 2
    print(f"report: {out} ({len(runs)} runs, {len(problems)} skipped or failed, {len(figures)} figures)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

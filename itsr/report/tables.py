"""Aggregation over seeds and the report's tables: the paper's Fig. 5 and Table 1 layouts, the match with
the paper, every cell with AUROC and AP, and the best peer beside our methods with a verdict.

Each table is a list of Markdown lines; `itsr.report.markdown` puts them in order. The figures read
the same cells, so a number in a table and a bar in a figure cannot disagree.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from dataclasses import dataclass, field

from itsr.peers import PEERS, SCORE_CRITERION
from itsr.report.paper import METHODS, PAPER, PAPER_CRITERION, SETTINGS, SPLITS
from itsr.report.runs import REPORTED_METRICS, Problem, Run

MATCH_TOLERANCE = 0.03  # a cell "matches" the paper when |ours - paper| <= this BACC
FIG5_ALPHA = 0.05  # the paper's Fig. 5 (a)-(c)
TABLE1_ALPHAS = (0.01, 0.001)  # the paper's Table 1
CLEAN = ("fmnist_tshirt_v_pullover", 0.0, "aae")  # Sec. 4.1: (setting, alpha, model) of the AAE on clean T-shirts
CLEAN_CRITERIA = ("rec", "lik", "combined")  # Sec. 4.1 compares all three on the clean AAE


@dataclass
class Cell:
    bacc: list[float] = field(default_factory=list)
    auroc: list[float] = field(default_factory=list)
    ap: list[float] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)


def aggregate(runs: list[Run]) -> dict[tuple, Cell]:
    """(setting, alpha, model, split, criterion) -> values over seeds."""
    cells: dict[tuple, Cell] = defaultdict(Cell)
    for run in runs:
        for split, by_criterion in run.metrics["metrics"].items():
            for criterion, values in by_criterion.items():
                cell = cells[(run.setting, run.alpha, run.model, split, criterion)]
                for name in REPORTED_METRICS:
                    value = values.get(name)
                    getattr(cell, name).append(math.nan if value is None else float(value))
                cell.seeds.append(run.seed)
    return dict(cells)


def mean_std(values: list[float]) -> tuple[float, float]:
    """Over seeds, leaving out undefined values (null in metrics.json); one value has no spread (std 0)."""
    clean = [v for v in values if not math.isnan(v)]
    if not clean:
        return math.nan, math.nan
    return statistics.fmean(clean), statistics.stdev(clean) if len(clean) > 1 else 0.0


def _fmt(values: list[float]) -> str:
    """mean ± std, or the mean alone for a single run, which has no spread to show."""
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
    """The paper's Fig. 5 / Table 1 layout at one alpha, so ours can be read beside it; the peers below ours."""
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


def clean_table(cells, problems) -> list[str]:
    """Sec. 4.1: the AAE trained on clean T-shirts, by each criterion; empty when the report has no such run."""
    if not any(k[:3] == CLEAN for k in cells):
        return []
    lines = [
        "### Sec. 4.1: AAE on clean T-shirts, T-shirt vs Pullover",
        "",
        "| criterion | ours |",
        "| --- | --- |",
    ]
    for criterion in CLEAN_CRITERIA:
        lines.append(f"| {criterion} | {paper_cell(cells, problems, *CLEAN, 'observed', criterion)} |")
    return lines + [""]


def match_summary(cells) -> list[str]:
    """How many of the paper's cells we match, and which we miss, without scanning the tables."""
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
    """Every cell, with AUROC and AP, which the paper lacks and the layouts leave out."""
    lines = [
        "| setting | α | method | split | criterion | BACC | AUROC | AP | n | paper BACC |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    order = {s: i for i, s in enumerate(SETTINGS)}  # the paper's settings first, in its order; others after them
    for key in sorted(
        cells,
        key=lambda k: (order.get(k[0], len(order)), k[0], -k[1], method_rank(k[2]), k[3], k[4]),
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


def method_rank(model: str) -> int:
    """Report order: the paper's methods, then the peers in itsr.peers.PEERS order, then anything else."""
    order = (*METHODS, *PEERS)
    return order.index(model) if model in order else len(order)


def method_criterion(model: str) -> str:
    """The criterion a method is compared by: the paper's for AE, AAE and ITSR (refined or not, e.g.
    "ae+itsr-svm" by `rec`); `score` for a peer."""
    return PAPER_CRITERION.get(model.split("+")[0], SCORE_CRITERION)


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

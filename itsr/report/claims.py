"""The paper's claims, cell by cell, at the scale of the runs in the report (issue 24): ITSR above the
AAE (Fig. 5, Table 1) and the decline of an autoencoder's BACC with long training (Fig. 1: the AE; at the
paper's epochs we see it in the AAE too). Each verdict is set against the spread over seeds; one seed
gives a direction, never a verdict.
"""

from __future__ import annotations

import math
from collections import defaultdict

from itsr.report.endpoint import method_curves
from itsr.report.paper import PAPER, PAPER_CRITERION, SETTINGS
from itsr.report.runs import Run
from itsr.report.tables import MATCH_TOLERANCE, _fmt, _versus, mean_std, method_criterion, method_rank
from itsr.results import HOLDOUT_SUFFIX


def _summary(name: str, values: list[float]) -> tuple[str, float, float, int] | None:
    """(name, mean, std, n) over seeds, the shape `_versus` compares; None without a defined value."""
    mean, std = mean_std(values)  # leaves out undefined values
    return None if math.isnan(mean) else (name, mean, std, sum(not math.isnan(v) for v in values))


def itsr_over_aae(cells) -> list[str]:
    """Per setting, alpha and split with both methods: ITSR's BACC and AUROC against the AAE's, the paper's
    difference, and whether ITSR leads beyond the seed spread."""
    keys = sorted(
        {(k[0], k[1], k[3]) for k in cells if k[2] == "itsr"} & {(k[0], k[1], k[3]) for k in cells if k[2] == "aae"},
        key=lambda k: (list(SETTINGS).index(k[0]) if k[0] in SETTINGS else len(SETTINGS), k[0], -k[1], k[2]),
    )
    rows = []
    for setting, alpha, split in keys:
        itsr = cells.get((setting, alpha, "itsr", split, method_criterion("itsr")))
        aae = cells.get((setting, alpha, "aae", split, method_criterion("aae")))
        if itsr is None or aae is None:
            continue
        ours = {
            metric: (_summary("ITSR", getattr(itsr, metric)), _summary("AAE", getattr(aae, metric)))
            for metric in ("bacc", "auroc")
        }
        if None in ours["bacc"]:
            continue
        paper_itsr = PAPER.get((setting, alpha, "itsr", split, PAPER_CRITERION["itsr"]))
        paper_aae = PAPER.get((setting, alpha, "aae", split, PAPER_CRITERION["aae"]))
        paper = f"{paper_itsr.bacc - paper_aae.bacc:+.2f}" if paper_itsr and paper_aae else "–"
        auroc = "–" if None in ours["auroc"] else f"{ours['auroc'][0][1] - ours['auroc'][1][1]:+.3f}"
        rows.append(
            f"| {SETTINGS.get(setting, setting)} | {alpha:g} | {split} | {_fmt(itsr.bacc)} | {_fmt(aae.bacc)} | "
            f"{ours['bacc'][0][1] - ours['bacc'][1][1]:+.3f} | {paper} | {auroc} | {_lead(*ours['bacc'])} |"
        )
    if not rows:
        return []
    return [
        "### ITSR above the AAE (Fig. 5, Table 1)",
        "",
        "BACC under the paper's rule, mean ± std over seeds (n); Δ = ITSR − AAE, ours and the paper's (its "
        "single runs); AUROC Δ needs no threshold. Holds: ITSR ahead by more than the larger seed std.",
        "",
        "| setting | α | split | ITSR | AAE | Δ BACC | paper Δ | Δ AUROC | verdict |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        *rows,
        "",
    ]


def _lead(itsr: tuple, aae: tuple) -> str:
    winner, other = (itsr, aae) if itsr[1] >= aae[1] else (aae, itsr)
    direction = "ITSR ahead" if winner is itsr else "AAE ahead"
    if min(itsr[3], aae[3]) < 2:
        return f"{direction} (one seed: a direction, not a verdict)"
    text = f"{direction} {_versus(winner, other)}"
    if winner[1] - other[1] <= max(itsr[2], aae[2]):
        return text  # _versus says it is within the seed spread
    return f"**holds**: {text}" if winner is itsr else f"**does not hold**: {text}"


def _curve_decline(curves: dict, column: str, final: float) -> tuple[float, float, float] | None:
    """(peak BACC on the curve, its epoch, peak − final) for one curves.csv column."""
    values = [v if isinstance(v, float) else math.nan for v in curves.get(column, [])]
    points = [(v, e) for v, e in zip(values, curves.get("epoch", []), strict=False) if not math.isnan(v)]
    if not points or math.isnan(final):
        return None
    peak, epoch = max(points, key=lambda p: (p[0], -p[1]))
    return peak, epoch, peak - final


def decline_table(runs: list[Run]) -> list[str]:
    """Per setting, alpha, method and split with curves: the best BACC any evaluated epoch reached, the
    final one, and the drop between them, under the paper's rule and, where the run has a held-out slice,
    under the calibrated rule, which separates a threshold that no longer transfers from a worse ranking."""
    cells: dict[tuple, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for run, curves, criterion in method_curves(runs):
        for split, by_criterion in run.metrics["metrics"].items():
            values = by_criterion.get(criterion, {})
            final = values.get("bacc")
            found = _curve_decline(curves, f"{split}_{criterion}_bacc", math.nan if final is None else float(final))
            if found is None:
                continue
            cell = cells[(run.setting, run.alpha, run.model, split)]
            cell["peak"].append(found[0])
            cell["epoch"].append(found[1])
            cell["final"].append(float(final))
            cell["drop"].append(found[2])
            auroc = [
                v for v in curves.get(f"{split}_{criterion}_auroc", []) if isinstance(v, float) and not math.isnan(v)
            ]
            cell["auroc_drop"].append(max(auroc) - auroc[-1] if auroc else math.nan)
            calibrated = run.metrics.get("metrics_holdout", {}).get(split, {}).get(criterion, {}).get("bacc")
            held = _curve_decline(
                curves,
                f"{split}_{criterion}_bacc{HOLDOUT_SUFFIX}",
                math.nan if calibrated is None else float(calibrated),
            )
            cell["drop_calibrated"].append(math.nan if held is None else held[2])
    if not cells:
        return []
    lines = [
        "### Decline with long training (Fig. 1)",
        "",
        "The best BACC the method's criterion reached at any evaluated epoch (`curves.csv`), the epoch, the "
        "final BACC and the drop between them (mean ± std over seeds); the same drop in AUROC, and in BACC under "
        f"thresholds from the held-out slice where the runs have one. Declines: a drop above {MATCH_TOLERANCE} "
        "(the report's match tolerance) and above its seed std. A drop under the paper's rule with none under "
        "the calibrated one is a threshold that stopped transferring, not a model that got worse at ranking.",
        "",
        "| setting | α | method | split | runs | best BACC | at epoch | final BACC | drop | AUROC drop "
        "| drop, calibrated | verdict |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for (setting, alpha, model, split), cell in sorted(
        cells.items(),
        key=lambda item: (item[0][0], -item[0][1], method_rank(item[0][2]), item[0][3]),  # as the endpoint table
    ):
        epochs = ", ".join(str(int(e)) for e in cell["epoch"])
        calibrated = [v for v in cell["drop_calibrated"] if not math.isnan(v)]  # runs without a held-out slice
        lines.append(
            f"| {setting} | {alpha:g} | {model} | {split} | {len(cell['drop'])} | {_fmt(cell['peak'])} | {epochs} | "
            f"{_fmt(cell['final'])} | {_fmt(cell['drop'])} | {_fmt(cell['auroc_drop'])} | "
            f"{_fmt_some(calibrated, len(cell['drop']))} | "
            f"{_declines(cell['drop'])} |"
        )
    return lines + [""]


def _fmt_some(values: list[float], runs: int) -> str:
    """Over the runs that have the value; their count when that is not every run of the cell."""
    if not values:
        return "–"
    return _fmt(values) + (f" (n={len(values)})" if len(values) < runs else "")


def _declines(drops: list[float]) -> str:
    mean, std = mean_std(drops)
    if mean <= MATCH_TOLERANCE:
        return "no decline"
    if len(drops) < 2:
        return "declines (one seed: a direction, not a verdict)"
    return "**declines**" if mean > std else "within the seed spread"


def claims_section(cells, runs: list[Run]) -> list[str]:
    """The section, or nothing when the report has neither both methods of a cell nor curves."""
    body = itsr_over_aae(cells) + decline_table(runs)
    return ["## The paper's claims at this report's scale", "", *body] if body else []

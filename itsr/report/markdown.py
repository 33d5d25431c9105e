"""report.md: the tables in reading order (the paper's layouts first, then peers, the match, every
cell, the figures, and what could not be read), so the document's shape lives in one place."""

from __future__ import annotations

from itsr.report.calibration import calibration_table
from itsr.report.claims import claims_section
from itsr.report.endpoint import endpoint_table
from itsr.report.provenance import provenance_table
from itsr.report.runs import Problem, Run
from itsr.report.tables import (
    FIG5_ALPHA,
    MATCH_TOLERANCE,
    TABLE1_ALPHAS,
    aggregate,
    clean_table,
    full_table,
    layout_table,
    match_summary,
    peer_verdicts,
)


def render(runs: list[Run], problems: list[Problem], figures: list[str], every_run: list[Run] | None = None) -> str:
    """The whole report; `figures` are the names of the PNG files written beside it. `runs` hold one run per
    seed; `every_run` adds the runs that repeat a seed with another knob (the hold-out table groups by it)."""
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
    lines += clean_table(cells, problems)
    for alpha in (FIG5_ALPHA, *TABLE1_ALPHAS):
        if alpha in alphas:
            lines += peer_verdicts(cells, alpha)
    lines += claims_section(cells, runs)
    lines += calibration_table(runs if every_run is None else every_run)
    lines += endpoint_table(runs)
    lines += ["## Match with the paper", "", *match_summary(cells)]
    lines += ["## All cells, with AUROC and AP", "", *full_table(cells)]
    if runs:
        lines += provenance_table(runs)
    if figures:
        lines += ["## Figures", "", *[f"![{name}]({name})" for name in figures], ""]
    if problems:
        lines += ["## Skipped or failed runs", "", "| run | status | reason |", "| --- | --- | --- |"]
        lines += [f"| {p.path} | {p.status} | {p.reason} |" for p in problems]
        lines.append("")
    return "\n".join(lines)

"""The report: our runs beside the paper's numbers, as Markdown and figures.

Importable without torch, Lightning, Hydra or matplotlib, so a report over a thousand runs loads no
training stack. Dependencies flow one way: paper and runs (reading run directories) -> tables
(aggregation over seeds, the tables) -> markdown and figures -> cli (`python -m itsr.report`).
`itsr.report.figures` is imported only when a report is drawn.
"""

from itsr.report.cli import main
from itsr.report.markdown import render
from itsr.report.paper import METHODS, PAPER, PAPER_CRITERION, SETTINGS, SPLITS, PaperValue
from itsr.report.runs import Problem, Run, read_csv, read_runs
from itsr.report.tables import Cell, aggregate, mean_std, method_criterion, peers_in

__all__ = [
    "METHODS",
    "PAPER",
    "PAPER_CRITERION",
    "SETTINGS",
    "SPLITS",
    "Cell",
    "PaperValue",
    "Problem",
    "Run",
    "aggregate",
    "main",
    "mean_std",
    "method_criterion",
    "peers_in",
    "read_csv",
    "read_runs",
    "render",
]

"""The report's endpoint table (issue 22.3): a long run's final BACC beside the mean over the last tenth
of its curve (curves.csv), so that a final number that sits at a peak or a dip of a moving curve shows.
The final model stays the one evaluated: this is a reading aid, never early stopping on test data."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterator

from itsr.report.runs import Run, read_csv
from itsr.report.tables import _fmt, method_criterion, method_rank
from itsr.results import CURVES_FILE

TAIL_FRACTION = 0.1  # the last tenth of the curve's points


def tail_mean(values: list[float], fraction: float = TAIL_FRACTION) -> tuple[float, float, float]:
    """(mean, min, max) over the last ceil(fraction * n) points."""
    tail = [v for v in values[-max(1, math.ceil(fraction * len(values))) :] if not math.isnan(v)]
    if not tail:
        return math.nan, math.nan, math.nan
    return sum(tail) / len(tail), min(tail), max(tail)


def method_curves(runs: list[Run]) -> Iterator[tuple[Run, dict, str]]:
    """(run, its curves.csv as columns, the method's criterion) for each run whose curves can be read."""
    for run in runs:
        path = run.path / CURVES_FILE
        if not path.is_file():
            continue
        try:
            curves = read_csv(path)
        except (OSError, UnicodeDecodeError):
            continue
        yield run, curves, method_criterion(run.model)


def endpoint_table(runs: list[Run]) -> list[str]:
    """One row per (setting, alpha, method, split) over the runs that have curves."""
    cells: dict[tuple, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for run, curves, criterion in method_curves(runs):
        for split, by_criterion in run.metrics["metrics"].items():
            column = curves.get(f"{split}_{criterion}_bacc")
            if not column or criterion not in by_criterion or by_criterion[criterion].get("bacc") is None:
                continue
            mean, low, high = tail_mean([v if isinstance(v, float) else math.nan for v in column])
            cell = cells[(run.setting, run.alpha, run.model, split)]
            cell["end"].append(float(by_criterion[criterion]["bacc"]))
            cell["tail"].append(mean)
            cell["low"].append(low)
            cell["high"].append(high)
            cell["points"].append(len(column))
    if not cells:
        return []
    lines = [
        "## Endpoint against the last tenth of the curve",
        "",
        "The final BACC (the model evaluated) beside the mean of `curves.csv`'s BACC over the last tenth of its "
        "points, and that tail's lowest and highest value; mean ± std over seeds. A large gap or range says the "
        "endpoint is one point of a moving curve.",
        "",
        "| setting | α | method | split | runs | curve points | final BACC | last-tenth mean | last-tenth range |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for (setting, alpha, model, split), cell in sorted(
        cells.items(), key=lambda item: (item[0][0], -item[0][1], method_rank(item[0][2]), item[0][3])
    ):
        points = ", ".join(str(int(p)) for p in sorted(set(cell["points"])))
        lines.append(
            f"| {setting} | {alpha:g} | {model} | {split} | {len(cell['end'])} | {points} | {_fmt(cell['end'])} | "
            f"{_fmt(cell['tail'])} | {min(cell['low']):.3f}-{max(cell['high']):.3f} |"
        )
    return lines + [""]

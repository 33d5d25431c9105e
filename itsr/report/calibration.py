"""The report's calibration table (issue 23): each method's BACC and test false-alarm rate under the
paper's rule (thresholds from the training scores) and under the calibrated one (the same percentiles
of a held-out slice of the unlabeled training set), from the same models."""

from __future__ import annotations

import math
from collections import defaultdict

from itsr.report.runs import Run
from itsr.report.tables import _fmt, method_criterion, method_rank


def calibration_table(runs: list[Run]) -> list[str]:
    """One row per (setting, alpha, method, split) over the runs that had a held-out slice."""
    cells: dict[tuple, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for run in runs:
        calibrated = run.metrics.get("metrics_holdout")
        if not calibrated:
            continue
        criterion = method_criterion(run.model)
        for split, by_criterion in run.metrics["metrics"].items():
            if criterion not in by_criterion or criterion not in calibrated.get(split, {}):
                continue
            cell = cells[(run.setting, run.alpha, run.model, split)]
            for rule, values in (("paper", by_criterion[criterion]), ("holdout", calibrated[split][criterion])):
                cell[f"bacc_{rule}"].append(_number(values.get("bacc")))
                tnr = _number(values.get("tnr"))
                cell[f"false_alarms_{rule}"].append(1.0 - tnr)
            cell["holdout_fraction"].append(run.metrics["holdout"]["fraction"])
    if not cells:
        return []
    lines = [
        "## Calibrated thresholds (held-out slice of the training set)",
        "",
        "BACC and the test normals' false-alarm rate (1 - TNR; by construction 10% per criterion on the set the "
        "thresholds come from, up to 20% for `combined`, which flags by either) under the paper's rule "
        "(percentiles of the trained samples' scores) and under the same "
        "percentiles of a held-out slice that was never trained on, from the same models; mean ± std over seeds. "
        "Criterion: the method's own (AE `rec`, AAE and ITSR `combined`, peers `score`).",
        "",
        "| setting | α | method | split | runs | hold-out | BACC paper rule | BACC calibrated | "
        "false alarms paper rule | false alarms calibrated |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for (setting, alpha, model, split), cell in sorted(
        cells.items(), key=lambda item: (item[0][0], -item[0][1], method_rank(item[0][2]), item[0][3])
    ):
        fractions = ", ".join(f"{f:g}" for f in sorted(set(cell["holdout_fraction"])))
        lines.append(
            f"| {setting} | {alpha:g} | {model} | {split} | {len(cell['bacc_paper'])} | {fractions} | "
            f"{_fmt(cell['bacc_paper'])} | {_fmt(cell['bacc_holdout'])} | "
            f"{_fmt(cell['false_alarms_paper'])} | {_fmt(cell['false_alarms_holdout'])} |"
        )
    return lines + [""]


def _number(value) -> float:
    return math.nan if value is None else float(value)

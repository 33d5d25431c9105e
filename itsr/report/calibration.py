"""The report's calibration table (issue 23): each method's BACC and test false-alarm rate under the
paper's rule (thresholds from the training scores) and under the calibrated one (the same percentiles
of a held-out slice of the unlabeled training set), from the same models."""

from __future__ import annotations

import math
from collections import defaultdict

from itsr.report.runs import Run
from itsr.report.tables import _fmt, mean_std, method_criterion, method_rank

# the threshold of each criterion that the table shows (a peer's score threshold stands where T_rec does)
THRESHOLD_KEY = {"rec": "t_rec", "combined": "t_rec", "score": "score"}


def calibration_table(runs: list[Run]) -> list[str]:
    """One row per (setting, alpha, method, split, hold-out fraction) over the runs that had a held-out slice;
    grouping by the fraction lets one table answer how big a hold-out should be."""
    cells: dict[tuple, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for run in runs:
        calibrated = run.metrics.get("metrics_holdout")
        if not calibrated:
            continue
        criterion = method_criterion(run.model)
        fraction = run.metrics["holdout"]["fraction"]
        for split, by_criterion in run.metrics["metrics"].items():
            if criterion not in by_criterion or criterion not in calibrated.get(split, {}):
                continue
            cell = cells[(run.setting, run.alpha, run.model, split, fraction)]
            for rule, values in (("paper", by_criterion[criterion]), ("holdout", calibrated[split][criterion])):
                cell[f"bacc_{rule}"].append(_number(values.get("bacc")))
                tnr = _number(values.get("tnr"))
                cell[f"false_alarms_{rule}"].append(1.0 - tnr)
            threshold = run.metrics.get("thresholds_holdout", {}).get(THRESHOLD_KEY.get(criterion, criterion))
            cell["t_rec_holdout"].append(_number(threshold))
            cell["n_train"].append(_number(run.metrics.get("n_train")))
    if not cells:
        return []
    lines = [
        "## Calibrated thresholds (held-out slice of the training set)",
        "",
        "BACC and the test normals' false-alarm rate (1 - TNR; by construction 10% per criterion on the set the "
        "thresholds come from, up to 20% for `combined`, which flags by either) under the paper's rule "
        "(percentiles of the trained samples' scores) and under the same "
        "percentiles of a held-out slice that was never trained on, from the same models; mean ± std over seeds. "
        "Criterion: the method's own (AE `rec`, AAE and ITSR `combined`, peers `score`). The calibrated T_rec "
        "(peers: the score threshold) with its spread over seeds, and the training images left, show what a "
        "bigger hold-out buys and costs.",
        "",
        "| setting | α | method | split | runs | hold-out | trained on | calibrated T_rec | BACC paper rule | "
        "BACC calibrated | false alarms paper rule | false alarms calibrated |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for (setting, alpha, model, split, fraction), cell in sorted(
        cells.items(), key=lambda item: (item[0][0], -item[0][1], method_rank(item[0][2]), item[0][3], item[0][4])
    ):
        lines.append(
            f"| {setting} | {alpha:g} | {model} | {split} | {len(cell['bacc_paper'])} | {fraction:g} | "
            f"{_fmt_count(cell['n_train'])} | {_fmt_threshold(cell['t_rec_holdout'])} | "
            f"{_fmt(cell['bacc_paper'])} | {_fmt(cell['bacc_holdout'])} | "
            f"{_fmt(cell['false_alarms_paper'])} | {_fmt(cell['false_alarms_holdout'])} |"
        )
    return lines + [""]


def _fmt_count(values: list[float]) -> str:
    mean, _ = mean_std(values)
    return "–" if math.isnan(mean) else f"{mean:.0f}"


def _fmt_threshold(values: list[float]) -> str:
    """A threshold's mean ± std over seeds, in 3 significant digits (T_rec is 1e-2 for an AE, 1 for a peer)."""
    mean, std = mean_std(values)
    return "–" if math.isnan(mean) else f"{mean:.3g} ± {std:.2g}"


def _number(value) -> float:
    return math.nan if value is None else float(value)

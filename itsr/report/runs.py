"""Finding and reading run directories: metrics.json, failed.json and the score and curve CSVs.

Only the run directory contract (itsr.results) is shared with the training side, so that reading a
thousand runs loads no training stack. Failed, half-written and unreadable runs become `Problem`s,
never silent gaps.
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from itsr.results import FAILURE_FILE, METRICS_FILE, METRICS_FORMAT

REPORTED_METRICS = ("bacc", "auroc", "ap")  # per split and criterion in metrics.json; TPR and TNR are not averaged
HYDRA_DIR = ".hydra"  # a run directory Hydra started, finished or not


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
    status: str  # failed | incomplete | unreadable | other-version | duplicate
    reason: str
    key: tuple | None = None  # (setting, alpha, model) when known


def _hydra_key(run_dir: Path) -> tuple | None:
    """(setting, alpha, model) of a run from its saved Hydra config, for runs without metrics."""
    config = run_dir / HYDRA_DIR / "config.yaml"
    if not config.is_file():
        return None
    try:
        # here, not at the top: only a run without metrics pays for it, and `import itsr.report` stays light
        from omegaconf import OmegaConf

        from itsr.settings import register_setting_resolver

        register_setting_resolver()  # a real run's config says setting: ${itsr.setting:...}
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
        for marker in (METRICS_FILE, FAILURE_FILE, HYDRA_DIR):
            candidates |= {p.parent for p in root.rglob(marker)}
    for run_dir in sorted(candidates):
        metrics_file = run_dir / METRICS_FILE
        failure_file = run_dir / FAILURE_FILE
        if failure_file.is_file() and (
            not metrics_file.is_file() or failure_file.stat().st_mtime >= metrics_file.stat().st_mtime
        ):
            # the newer state wins: a failed rerun in a finished directory must not hide behind its old result
            reason = _failure_reason(failure_file)
            if metrics_file.is_file():
                reason += f" (an older {METRICS_FILE} is kept beside it)"
            problems.append(Problem(run_dir, "failed", reason, _hydra_key(run_dir)))
            continue
        if not metrics_file.is_file():
            problems.append(
                Problem(
                    run_dir, "incomplete", f"no {METRICS_FILE} (running, killed or not started)", _hydra_key(run_dir)
                )
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
            problems.append(Problem(run_dir, "unreadable", f"{METRICS_FILE}: {type(error).__name__}: {error}"))
        except OSError as error:
            problems.append(Problem(run_dir, "unreadable", f"{METRICS_FILE}: {error.strerror or error}"))
    return runs, problems


def one_run_per_seed(runs: list[Run]) -> tuple[list[Run], list[Problem]]:
    """Two runs of one setting, alpha, method and seed (a rerun in another precision, a copy) would be
    averaged as two seeds: the first in path order goes into the means, each other one is listed as a
    duplicate. Tables that group by the knob the runs differ in (the hold-out table) still take all runs."""
    first: dict[tuple, Run] = {}
    kept: list[Run] = []
    problems: list[Problem] = []
    for run in runs:
        key = (run.setting, run.alpha, run.model, run.seed)
        if key in first:
            problems.append(
                Problem(
                    run.path,
                    "duplicate",
                    f"left out of the means: the same setting, alpha, method and seed as {first[key].path}; "
                    "pass directories that hold one run per seed (the hold-out table still shows it)",
                )
            )
            continue
        first[key] = run
        kept.append(run)
    return kept, problems


def _failure_reason(path: Path) -> str:
    """The error a failed run left, or why its failed.json cannot be read (the run is failed either way)."""
    try:
        failure = json.loads(path.read_text())
        return f"{failure.get('error')}: {failure.get('message')}"
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError) as error:
        return f"{path.name} unreadable ({type(error).__name__})"


def _check_metrics_shape(metrics: dict) -> None:
    """metrics[split][criterion][metric] (and metrics_holdout's, with its hold-out fraction) is a number or
    null; anything else is another file's shape."""
    if not isinstance(metrics.get("metrics"), dict):
        raise TypeError("no metrics[split][criterion] table")
    for key in ("metrics", "metrics_holdout"):
        if metrics.get(key) is not None:
            _check_table(metrics[key], key)
    for key in ("thresholds", "thresholds_holdout"):
        if metrics.get(key) is not None and not isinstance(metrics[key], dict):
            raise TypeError(f"{key} is {metrics[key]!r}, not a table of thresholds")
    if metrics.get("metrics_holdout"):
        holdout = metrics.get("holdout")
        fraction = holdout.get("fraction") if isinstance(holdout, dict) else None
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)):
            raise TypeError(f"metrics_holdout without a numeric holdout.fraction (holdout is {holdout!r})")


def _check_table(table, key: str) -> None:
    if not isinstance(table, dict):
        raise TypeError(f"{key} is not a table of splits")
    for split, by_criterion in table.items():
        if not isinstance(by_criterion, dict) or not all(isinstance(v, dict) for v in by_criterion.values()):
            raise TypeError(f"{key}[{split!r}] is not a table of criteria")
        for criterion, values in by_criterion.items():
            for name in REPORTED_METRICS:
                value = values.get(name)
                if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                    raise TypeError(f"{key}[{split!r}][{criterion!r}][{name!r}] is {value!r}, not a number")


def read_csv(path: Path) -> dict[str, list[float]]:
    """A run's CSV as columns: numbers where a cell parses as one, the text otherwise (e.g. split, phase)."""
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


def curves_row(run_dir: Path, epoch: int) -> dict[str, float | None] | None:
    """A run's curves.csv row at `epoch` (None without the file or the row): its metrics after that many
    epochs, so that a run can be compared with a longer one at equal training length."""
    path = Path(run_dir) / "curves.csv"
    if not path.is_file():
        return None
    with open(path) as handle:
        for row in csv.DictReader(handle):
            if row.get("epoch") and int(float(row["epoch"])) == epoch:
                return {k: _number(v) for k, v in row.items()}
    return None


def _number(text: str | None) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None

"""The robustness profile (issue 25): which detector, refined or not, at which contamination.

    python -m itsr.report DIR... --profile --out results/robustness/report.md

Built from metrics.json (and, for a base that trained longer than its refined run, its curves.csv), over
every setting (class pair) the runs cover. Each method is judged by its own criterion (AE `rec`, AAE and
ITSR `combined`, peers `score`; a refined method as its base). A setting's value is first averaged over
its seeds, so every class pair weighs the same; spreads are over pairs. A refined method
("knn+itsr-score", "ae+itsr-svm"; "itsr" for the AAE) is paired with its plain base on the same setting,
alpha, seed and split, at equal epochs, to measure what refinement gains.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict

from itsr.report.runs import Run, curves_row
from itsr.report.tables import method_criterion, method_rank

METRICS = ("bacc", "auroc")
SPLITS = ("observed", "unobserved")
EFFECT = 0.01  # a refinement "helps" or "hurts" a pair when it moves BACC by more than this
CHANCE_AUROC = 0.5  # below it a detector ranks anomalies as *more* normal than the normals


def base_method(model: str) -> str | None:
    """The plain method a refined one is compared with: "knn+itsr-score" -> "knn", "itsr" -> "aae"."""
    if model == "itsr":
        return "aae"
    return model.split("+")[0] if "+" in model else None


def _value(run: Run, split: str, metric: str) -> float:
    by_criterion = run.metrics["metrics"].get(split, {})
    value = by_criterion.get(method_criterion(run.model), {}).get(metric)
    return math.nan if value is None else float(value)


def _epochs(run: Run):
    return run.metrics.get("config", {}).get("epochs")


def refinement_gain(run: Run, plain: Run, split: str, metric: str) -> float:
    """A refined run's value minus its plain base's at equal training length: a base that trained longer
    (the plain AE: 150 epochs against the refinement schedule's 80) is read from its curves.csv at the
    refined run's epoch count; NaN where it has no such row."""
    epochs, base_epochs = _epochs(run), _epochs(plain)
    if epochs is None or base_epochs is None or epochs == base_epochs:
        return _value(run, split, metric) - _value(plain, split, metric)
    row = curves_row(plain.path, int(epochs)) or {}
    then = row.get(f"{split}_{method_criterion(plain.model)}_{metric}")
    return math.nan if then is None else _value(run, split, metric) - then


def _mean(values) -> float:
    clean = [v for v in values if not math.isnan(v)]
    return statistics.fmean(clean) if clean else math.nan


def _std(values) -> float:
    clean = [v for v in values if not math.isnan(v)]
    return statistics.stdev(clean) if len(clean) > 1 else (0.0 if clean else math.nan)


def per_setting(runs: list[Run], split: str, metric: str) -> dict[tuple[str, float], dict[str, float]]:
    """{(method, alpha): {setting: mean over seeds}}."""
    seeds: dict[tuple, list[float]] = defaultdict(list)
    for run in runs:
        seeds[(run.model, run.alpha, run.setting)].append(_value(run, split, metric))
    out: dict[tuple[str, float], dict[str, float]] = defaultdict(dict)
    for (model, alpha, setting), values in seeds.items():
        out[(model, alpha)][setting] = _mean(values)
    return out


def _num(value: float, digits: int = 3) -> str:
    return "–" if math.isnan(value) else f"{value:.{digits}f}"


def _signed(value: float) -> str:
    return "–" if math.isnan(value) else f"{value:+.3f}"


def report_order(methods) -> list[str]:
    """Methods in the report's order, each refined one right after its base."""
    return sorted(methods, key=lambda m: (method_rank(m.split("+")[0]), m))


def alpha_table_head(title: str, columns: list[str]) -> list[str]:
    return [
        title,
        "",
        "| method | " + " | ".join(columns) + " |",
        "| --- | " + " | ".join("---" for _ in columns) + " |",
    ]


def level_table(runs: list[Run], split: str) -> list[str]:
    """BACC and AUROC against alpha: mean ± std over class pairs, per method."""
    alphas = sorted({r.alpha for r in runs})
    tables = {metric: per_setting(runs, split, metric) for metric in METRICS}
    lines = alpha_table_head(
        f"### BACC / AUROC against contamination, {split} split (mean ± std over class pairs; pairs in brackets)",
        [f"α = {a:g}" for a in alphas],
    )
    for method in report_order({r.model for r in runs}):
        cells = []
        for alpha in alphas:
            bacc = list(tables["bacc"].get((method, alpha), {}).values())
            roc = list(tables["auroc"].get((method, alpha), {}).values())
            if not bacc:
                cells.append("")
                continue
            cells.append(
                f"{_num(_mean(bacc))} ± {_num(_std(bacc))} / {_num(_mean(roc))} ± {_num(_std(roc))} ({len(bacc)})"
            )
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return lines + [""]


def refinement_gain_table(runs: list[Run], split: str) -> list[str]:
    """Refined minus plain, paired by setting, alpha and seed: mean BACC and AUROC gain, and on how many
    pairs refinement helps or hurts BACC by more than EFFECT."""
    by_key = {(r.model, r.setting, r.alpha, r.seed): r for r in runs}
    gains: dict[tuple[str, float], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for (model, setting, alpha, seed), run in by_key.items():
        base = base_method(model)
        plain = by_key.get((base, setting, alpha, seed)) if base else None
        if plain is None:
            continue
        for metric in METRICS:
            gains[(model, alpha)][metric].append(refinement_gain(run, plain, split, metric))
    if not gains:
        return []
    lines = [
        f"### What refinement gains, {split} split "
        "(refined minus its plain base, same setting, α and seed, at equal epochs)",
        "",
        f"Helps / hurts: BACC up / down by more than {EFFECT}.",
        "",
        "| refined method | α | runs paired | BACC gain, mean (min, max) | AUROC gain, mean | helps | hurts |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for (model, alpha), cell in sorted(gains.items(), key=lambda item: (item[0][0], item[0][1])):
        bacc = [v for v in cell["bacc"] if not math.isnan(v)]
        helps = sum(v > EFFECT for v in bacc)
        hurts = sum(v < -EFFECT for v in bacc)
        spread = f"({_signed(min(bacc))}, {_signed(max(bacc))})" if bacc else ""
        lines.append(
            f"| {model} | {alpha:g} | {len(bacc)} | {_signed(_mean(bacc))} {spread} | "
            f"{_signed(_mean(cell['auroc']))} | {helps} | {hurts} |"
        )
    return lines + [""]


def rank_table(runs: list[Run], split: str) -> list[str]:
    """At each alpha, how many class pairs each method wins on BACC (ties: every method at the top)."""
    table = per_setting(runs, split, "bacc")
    alphas = sorted({a for _, a in table})
    wins: dict[float, dict[str, int]] = {a: defaultdict(int) for a in alphas}
    n_settings: dict[float, int] = {}
    for alpha in alphas:
        settings = {s for (m, a), values in table.items() if a == alpha for s in values}
        n_settings[alpha] = len(settings)
        for setting in settings:
            scores = {m: v[setting] for (m, a), v in table.items() if a == alpha and setting in v}
            scores = {m: v for m, v in scores.items() if not math.isnan(v)}
            if not scores:
                continue
            top = max(scores.values())
            for method, value in scores.items():
                if value >= top - 1e-12:
                    wins[alpha][method] += 1
    lines = alpha_table_head(
        f"### Which method wins how many class pairs on BACC, {split} split",
        [f"α = {a:g} (of {n_settings[a]})" for a in alphas],
    )
    partial = False
    for method in report_order({m for (m, _) in table}):
        cells = []
        for alpha in alphas:
            ran = len(table.get((method, alpha), {}))
            won = wins[alpha].get(method, 0)
            partial |= 0 < ran < n_settings[alpha]
            cells.append("–" if ran == 0 else str(won) if ran == n_settings[alpha] else f"{won} of {ran}")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    if partial:  # a count out of all pairs would read as losses on pairs the method never ran on
        note = '"k of n": the method ran on n of the pairs only and won k of them; elsewhere it did not compete.'
        lines += ["", note]
    return lines + [""]


def _cost(shortfalls: list[float]) -> str:
    return f"{_num(_mean(shortfalls))} / {_num(max(shortfalls))}"


def start_with_table(runs: list[Run], split: str) -> list[str]:
    """At each alpha, the method a user should start with: the highest mean BACC over class pairs, beside
    the one that wins most pairs, each with its shortfall (the pair's best BACC minus its own: mean and
    worst). A method that wins many pairs can still fail badly on the others; the mean shortfall is what
    choosing it costs on average, the worst what it can cost. Only methods with a BACC on every pair of that
    alpha compete, so that every method is averaged over the same pairs; the others are named."""
    table = per_setting(runs, split, "bacc")
    lines = [
        f"### Which method to start with, {split} split",
        "",
        "Shortfall on a pair: the best BACC any compared method reached there minus this method's; mean / worst "
        "over the pairs. Compared: the methods with a BACC on every pair of that α.",
        "",
        "| α | pairs | highest mean BACC | its shortfall, mean / worst | most pairs won | its mean BACC | "
        "its shortfall, mean / worst | not compared |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for alpha in sorted({a for _, a in table}):
        settings = sorted({s for (_, a), values in table.items() if a == alpha for s in values})
        bacc = {m: v for (m, a), v in table.items() if a == alpha}
        full = {m: v for m, v in bacc.items() if all(not math.isnan(v.get(s, math.nan)) for s in settings)}
        left_out = [
            f"{m} ({sum(not math.isnan(x) for x in bacc[m].values())})" for m in report_order(set(bacc) - set(full))
        ]
        if not full:
            lines.append(f"| {alpha:g} | {len(settings)} | – | – | – | – | – | {', '.join(left_out)} |")
            continue
        best = {s: max(v[s] for v in full.values()) for s in settings}
        shortfall = {m: [best[s] - v[s] for s in settings] for m, v in full.items()}
        wins = {m: sum(short <= 1e-12 for short in shortfall[m]) for m in full}
        mean_bacc = {m: _mean(list(v.values())) for m, v in full.items()}
        by_mean = max(report_order(full), key=lambda m: mean_bacc[m])
        by_wins = max(report_order(full), key=lambda m: (wins[m], mean_bacc[m]))
        lines.append(
            f"| {alpha:g} | {len(settings)} | {by_mean} {_num(mean_bacc[by_mean])} | {_cost(shortfall[by_mean])} | "
            f"{by_wins} ({wins[by_wins]}) | {_num(mean_bacc[by_wins])} | {_cost(shortfall[by_wins])} | "
            f"{', '.join(left_out) or '–'} |"
        )
    return lines + [""]


def failures(runs: list[Run], split: str) -> list[str]:
    """Class pairs and alphas where every method's AUROC is below chance."""
    table = per_setting(runs, split, "auroc")
    cells: dict[tuple[str, float], list[float]] = defaultdict(list)
    for (_, alpha), values in table.items():
        for setting, value in values.items():
            cells[(setting, alpha)].append(value)
    failed = [(s, a, max(v)) for (s, a), v in sorted(cells.items()) if v and all(x < CHANCE_AUROC for x in v if x == x)]
    lines = [f"### Where every method fails (AUROC below {CHANCE_AUROC} for all), {split} split", ""]
    if not failed:
        return lines + ["None.", ""]
    return lines + [f"- {s}, α = {a:g}: best AUROC {_num(best)}" for s, a, best in failed] + [""]


def precision_table(runs: list[Run]) -> list[str]:
    """Refinement's final precision against alpha (a random pick has precision alpha), and whether runs whose
    candidates are no better than random end below their plain base (observed BACC)."""
    by_key = {(r.model, r.setting, r.alpha, r.seed): r for r in runs}
    cells: dict[tuple[str, float], dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for (model, setting, alpha, seed), run in by_key.items():
        rounds = run.metrics.get("refinement")
        if not rounds:
            continue
        precision = rounds[-1].get("precision")
        if precision is None:
            continue
        base = base_method(model)
        plain = by_key.get((base, setting, alpha, seed)) if base else None
        gain = refinement_gain(run, plain, "observed", "bacc") if plain else math.nan
        cell = cells[(model, alpha)]
        cell["precision"].append(float(precision))
        cell["recall"].append(float(rounds[-1].get("recall") or math.nan))
        random_like = float(precision) <= 2 * alpha
        cell["random_like"].append(random_like)
        if random_like and not math.isnan(gain):
            cell["random_like_hurt"].append(gain < -EFFECT)
    if not cells:
        return []
    lines = [
        "### Refinement's candidates against a random pick",
        "",
        "Precision and recall of the final candidate set A (labels used for this table only). A random pick "
        'has precision α; "near random" counts runs with precision at most 2α, and "of which hurt" those of '
        f"them whose observed BACC ends more than {EFFECT} below the plain base's.",
        "",
        "| refined method | α | runs | precision, mean (min, max) | recall, mean | near random | of which hurt |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for (model, alpha), cell in sorted(cells.items()):
        p = cell["precision"]
        lines.append(
            f"| {model} | {alpha:g} | {len(p)} | {_num(_mean(p))} ({_num(min(p))}, {_num(max(p))}) | "
            f"{_num(_mean(cell['recall']))} | {sum(cell['random_like'])} | "
            f"{sum(cell['random_like_hurt'])} of {len(cell['random_like_hurt'])} |"
        )
    return lines + [""]


def pair_auroc(positives: list[float], negatives: list[float]) -> float:
    """P(a positive's value > a negative's), ties half: the AUROC of a score, by counting pairs."""
    if not positives or not negatives:
        return math.nan
    wins = sum((p > n) + 0.5 * (p == n) for p in positives for n in negatives)
    return wins / (len(positives) * len(negatives))


def guard_table(runs: list[Run]) -> list[str]:
    """Does a signal that needs no labels tell the runs refinement hurts from the others? The first
    round's `score_gap` (new candidates' mean score above the pool, in the pool's std) per outcome."""
    by_key = {(r.model, r.setting, r.alpha, r.seed): r for r in runs}
    gaps: dict[str, list[float]] = defaultdict(list)
    for (model, setting, alpha, seed), run in by_key.items():
        rounds = run.metrics.get("refinement") or []
        base = base_method(model)
        plain = by_key.get((base, setting, alpha, seed)) if base else None
        gap = rounds[0].get("score_gap") if rounds else None
        if plain is None or gap is None:
            continue
        gain = refinement_gain(run, plain, "observed", "bacc")
        if math.isnan(gain):
            continue
        outcome = "hurt" if gain < -EFFECT else ("helped" if gain > EFFECT else "neutral")
        gaps[outcome].append(float(gap))
    if not gaps:
        return []
    lines = [
        "### A label-free guard? The first round's score gap against what refinement did (observed BACC)",
        "",
        "`score_gap`: the first round's new candidates' mean training score above the pool they were taken "
        "from, in the pool's standard deviations (no labels). A top 2% of a smooth anomaly-free distribution "
        "sits about 2.4 above it. If the gap separates the runs refinement hurts from the others, it can gate "
        "refinement.",
        "",
        "| outcome | runs | score gap, mean ± std (min, max) |",
        "| --- | --- | --- |",
    ]
    for outcome in ("helped", "neutral", "hurt"):
        values = gaps.get(outcome, [])
        if values:
            lines.append(
                f"| {outcome} | {len(values)} | {_num(_mean(values), 2)} ± {_num(_std(values), 2)} "
                f"({_num(min(values), 2)}, {_num(max(values), 2)}) |"
            )
    separation = pair_auroc(gaps.get("helped", []) + gaps.get("neutral", []), gaps.get("hurt", []))
    lines += [
        "",
        f'AUROC of the gap for "not hurt" against "hurt": {_num(separation)} (0.5: no separation).',
        "",
    ]
    return lines


def render_profile(runs: list[Run], problems: list, figures: list[str]) -> str:
    settings = sorted({r.setting for r in runs})
    lines = [
        "# Robustness profile",
        "",
        f"{len(runs)} runs over {len(settings)} class pairs ({', '.join(settings)}), α in "
        f"{', '.join(f'{a:g}' for a in sorted({r.alpha for r in runs}))}; methods judged by their own criterion "
        "(AE `rec`, AAE and ITSR `combined`, peers `score`). Built by `itsr.report --profile` from metrics.json.",
        "",
    ]
    lines += [f"![{name}]({name})" for name in figures] + ([""] if figures else [])
    for split in SPLITS:
        if not any(split in r.metrics["metrics"] for r in runs):
            continue
        lines += [f"## {split.capitalize()} split", ""]
        lines += level_table(runs, split)
        lines += refinement_gain_table(runs, split)
        lines += rank_table(runs, split)
        lines += start_with_table(runs, split)
        lines += failures(runs, split)
    lines += precision_table(runs)
    lines += guard_table(runs)
    if problems:
        lines += ["## Runs not included", ""] + [f"- `{p.path}`: {p.status}: {p.reason}" for p in problems] + [""]
    return "\n".join(lines)

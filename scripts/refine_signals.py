"""Can a signal that needs no labels tell the runs refinement hurts from the others? (issue 25.3)

    python scripts/refine_signals.py DIR... --out results/robustness/signals.md [--csv signals.csv]

Pairs every refined run with its plain base (same setting, alpha, seed and epochs) and reads both runs'
training scores (train_scores.csv, one row per training image in the same order: a peer's `score`, a
network's `rec_error`). Label-free signals:
- `first_gap`: the first round's new candidates above their pool, in the pool's std (metrics.json);
- `gap_ratio`: the last round's gap over the first's (does the tail stay apart as A grows?);
- `candidate_lift`: how much further A stands above the rest under the refined detector than under the base;
- `rank_stability`: Spearman's rho of base and refined training scores outside A.
The outcome (labels, for judging the signals only) is the refined run's BACC minus its base's on the
observed split under the method's own criterion: hurt below -EFFECT. Per signal: the AUROC of "not hurt"
against "hurt", over all runs and per base detector, and the best a threshold on it could do as a guard
(refine only where the signal clears it), with the threshold chosen knowing the outcomes: an upper bound
for any guard built on that signal. Runs whose base trained for other epochs (the networks' plain AE) are
left out: their training scores differ for another reason.

`--guard BASE:SIGNAL:<=|>=:THRESHOLD --guard-chosen-on SETTING,...` tests a guard fixed in advance (one
the best-guard table suggested on some settings) on the runs of BASE in every other setting: the only
evidence for a guard that its own choice did not see.

`--merge signals.csv` keeps the rows of an earlier run of this script for the runs the given directories
do not hold (the score files are not committed, so a grown profile adds its new runs to the committed
rows instead of needing every run directory again); a run found in both is recomputed.
"""

from __future__ import annotations

import argparse
import csv
import math
import statistics
import sys
from pathlib import Path

import numpy as np

from itsr.refinement import candidate_lift, rank_stability
from itsr.report.profile import EFFECT, base_method, pair_auroc, refinement_gain
from itsr.report.runs import read_runs

SIGNALS = ("first_gap", "gap_ratio", "candidate_lift", "rank_stability")
GAIN_KEYS = ("observed", "unobserved", "always_observed", "always_unobserved")
SCORES_FILE = "train_scores.csv"


ROW_TEXT = ("run", "method", "base", "setting")  # signals.csv's columns that stay text; seed is an int, the rest floats
SCORE_COLUMNS = ("score", "rec_error")  # a peer's PyOD score; a network's reconstruction error


def training_scores(run_dir: Path) -> tuple[np.ndarray, np.ndarray | None] | None:
    """(score per training image, A as a boolean mask or None), or None without a score column: a peer's
    `score`, a network's `rec_error` (the score ITSR's retraining and `by=score` act on)."""
    with (run_dir / SCORES_FILE).open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    column = next((c for c in SCORE_COLUMNS if rows and c in rows[0]), None)
    if column is None:
        return None
    scores = np.array([float(r[column]) for r in rows])
    candidates = np.array([r["candidate"] == "1" for r in rows]) if "candidate" in rows[0] else None
    return scores, candidates


def signal_rows(roots: list[Path]) -> tuple[list[dict], list[str]]:
    """One row per refined run with a comparable base: its signals and what refinement did."""
    runs, _ = read_runs(roots)
    by_key = {(r.model, r.setting, r.alpha, r.seed): r for r in runs}
    rows, skipped = [], []
    for (model, setting, alpha, seed), run in sorted(by_key.items()):
        rounds = run.metrics.get("refinement") or []
        plain = by_key.get((base_method(model), setting, alpha, seed)) if base_method(model) else None
        if not rounds or plain is None:
            continue
        if run.metrics["config"].get("epochs") != plain.metrics["config"].get("epochs"):
            skipped.append(f"{run.path}: its base trained for other epochs")
            continue
        if not ((run.path / SCORES_FILE).is_file() and (plain.path / SCORES_FILE).is_file()):
            skipped.append(f"{run.path}: no {SCORES_FILE} beside it or its base")
            continue
        refined_file, base_file = training_scores(run.path), training_scores(plain.path)
        if refined_file is None or base_file is None:
            skipped.append(f"{run.path}: no score column ({', '.join(SCORE_COLUMNS)}) in {SCORES_FILE}")
            continue
        (refined, candidates), (base, _) = refined_file, base_file
        if candidates is None or len(base) != len(refined):
            skipped.append(f"{run.path}: training scores not comparable with its base's")
            continue
        first, last = rounds[0].get("score_gap"), rounds[-1].get("score_gap")
        rows.append(
            {
                "run": str(run.path),
                "method": model,
                "base": plain.model,
                "setting": setting,
                "alpha": alpha,
                "seed": seed,
                "precision": rounds[-1].get("precision"),
                "gain_observed": refinement_gain(run, plain, "observed", "bacc"),
                "gain_unobserved": refinement_gain(run, plain, "unobserved", "bacc"),
                "first_gap": math.nan if first is None else float(first),
                "gap_ratio": math.nan if not first or last is None else float(last) / float(first),
                "candidate_lift": candidate_lift(base, refined, candidates),
                "rank_stability": rank_stability(base, refined, candidates),
            }
        )
    return rows, skipped


def row_key(row: dict) -> tuple:
    """What identifies a refined run across machines and folders: method, setting, alpha, seed."""
    return (row["method"], row["setting"], float(row["alpha"]), int(row["seed"]))


def typed(column: str, text: str | None):
    """One signals.csv cell as `signal_rows` makes it: text, the seed an int, any other a float (empty: NaN)."""
    if column in ROW_TEXT:
        return text
    if column == "seed":
        return int(text)
    return float(text) if text else math.nan


def read_signal_rows(path: Path) -> list[dict]:
    """The rows of an earlier signals.csv, typed as `signal_rows` makes them; ValueError names what is wrong."""
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        expected = set(ROW_TEXT) | {"alpha", "seed", "precision", "gain_observed", "gain_unobserved", *SIGNALS}
        missing = sorted(expected - set(reader.fieldnames or ()))
        if missing:
            raise ValueError(f"{path} is not a signals.csv of this script: it lacks the columns {', '.join(missing)}")
        rows = []
        for line, raw in enumerate(reader, start=2):
            try:
                row = {column: typed(column, text) for column, text in raw.items()}
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{path} line {line}: {exc}") from None
            rows.append(row)
    return rows


def merge_rows(new: list[dict], earlier: list[dict]) -> list[dict]:
    """`new` plus the earlier rows of runs it does not hold, in a stable order."""
    fresh = {row_key(r) for r in new}
    return sorted(new + [r for r in earlier if row_key(r) not in fresh], key=lambda r: (r["base"],) + row_key(r))


def with_signal(rows: list[dict], signal: str) -> list[dict]:
    """The rows that have both the signal and an observed gain (older runs recorded no `score_gap`)."""
    return [r for r in rows if not math.isnan(r[signal]) and not math.isnan(r["gain_observed"])]


def separation(rows: list[dict], signal: str) -> tuple[float, int, int]:
    """(AUROC of the signal for not-hurt against hurt, runs not hurt, runs hurt)."""
    clean = with_signal(rows, signal)
    hurt = [r[signal] for r in clean if r["gain_observed"] < -EFFECT]
    fine = [r[signal] for r in clean if r["gain_observed"] >= -EFFECT]
    return pair_auroc(fine, hurt), len(fine), len(hurt)


def best_guard(rows: list[dict], signal: str) -> dict:
    """The threshold on a signal that maximises the mean observed gain when runs on the wrong side of it keep
    their base (gain 0), in the direction the signal's AUROC points; chosen with the outcomes in hand."""
    clean = with_signal(rows, signal)
    auroc, _, _ = separation(clean, signal)
    sign = 1.0 if math.isnan(auroc) or auroc >= 0.5 else -1.0
    if not clean:
        return {"threshold": math.nan, "refined": 0, "runs": 0, **dict.fromkeys(GAIN_KEYS, math.nan)}
    unobserved_always = [r["gain_unobserved"] for r in clean if not math.isnan(r["gain_unobserved"])]
    always = {
        "always_observed": sum(r["gain_observed"] for r in clean) / len(clean),
        "always_unobserved": sum(unobserved_always) / len(clean),
    }
    best = {"threshold": math.nan, "observed": 0.0, "unobserved": 0.0, "refined": 0, "runs": len(clean), **always}
    for t in sorted({r[signal] for r in clean}):
        kept = [r for r in clean if sign * r[signal] >= sign * t]
        observed = sum(r["gain_observed"] for r in kept) / len(clean)
        if observed > best["observed"]:
            unobserved = [r["gain_unobserved"] for r in kept if not math.isnan(r["gain_unobserved"])]
            best = {
                "threshold": t,
                "direction": ">=" if sign > 0 else "<=",
                "observed": observed,
                "unobserved": sum(unobserved) / len(clean),
                "refined": len(kept),
                "runs": len(clean),
                **always,
            }
    return best


def parse_guard(text: str) -> dict:
    """BASE:SIGNAL:<=|>=:THRESHOLD as a dict; ValueError says what is wrong and what a guard looks like."""
    parts = text.split(":")
    example = "e.g. deepsvdd:rank_stability:<=:0.109"
    if len(parts) != 4:
        raise ValueError(f"--guard {text!r}: give BASE:SIGNAL:<=|>=:THRESHOLD, {example}")
    base, signal, direction, threshold = parts
    if signal not in SIGNALS:
        raise ValueError(f"--guard {text!r}: unknown signal {signal!r}; one of {', '.join(SIGNALS)}")
    if direction not in ("<=", ">="):
        raise ValueError(f"--guard {text!r}: the direction is <= or >=, {example}")
    try:
        value = float(threshold)
    except ValueError:
        raise ValueError(f"--guard {text!r}: the threshold {threshold!r} is not a number, {example}") from None
    return {"base": base, "signal": signal, "direction": direction, "threshold": value}


def held_out_guard(rows: list[dict], guard: dict, chosen_on: set[str]) -> dict:
    """A fixed guard on the runs of its base outside the settings it was chosen on: how many it refines, the
    mean gains refining always against guarded (a run the guard skips keeps its base: gain 0), and how well
    its signal separates the not-hurt from the hurt runs there."""
    signal, sign = guard["signal"], 1.0 if guard["direction"] == ">=" else -1.0
    test = [r for r in with_signal(rows, signal) if r["base"] == guard["base"] and r["setting"] not in chosen_on]
    refined = [r for r in test if sign * r[signal] >= sign * guard["threshold"]]

    def mean_gain(kept: list[dict], split: str) -> float:
        values = [r[f"gain_{split}"] for r in kept if not math.isnan(r[f"gain_{split}"])]
        return sum(values) / len(test) if test else math.nan

    auroc, fine, hurt = separation(test, signal)
    return {
        "runs": len(test),
        "settings": len({r["setting"] for r in test}),
        "refined": len(refined),
        "hurt": hurt,
        "auroc": auroc,
        **{f"always_{s}": mean_gain(test, s) for s in ("observed", "unobserved")},
        **{f"guarded_{s}": mean_gain(refined, s) for s in ("observed", "unobserved")},
    }


def render(rows: list[dict], skipped: list[str], command: str, guards=(), chosen_on: frozenset = frozenset()) -> str:
    def num(v: float, digits: int = 3) -> str:
        return "–" if math.isnan(v) else f"{v:.{digits}f}"

    bases = sorted({r["base"] for r in rows})
    lines = [
        "# Label-free signals against what refinement did",
        "",
        f"`{command}`",
        "",
        f"{len(rows)} refined runs paired with their plain base ({', '.join(bases)}); hurt: observed BACC more "
        f"than {EFFECT} below the base's ({sum(r['gain_observed'] < -EFFECT for r in rows)} runs). "
        "Labels judge the signals only.",
        "",
        "## How well each signal separates the runs refinement did not hurt from those it hurt",
        "",
        "AUROC of the signal for not hurt against hurt (0.5: no separation; below 0.5: the other way round).",
        "",
        "| signal | all runs | " + " | ".join(bases) + " |",
        "| --- | --- | " + " | ".join("---" for _ in bases) + " |",
    ]
    for signal in SIGNALS:
        cells = []
        for subset in [rows] + [[r for r in rows if r["base"] == b] for b in bases]:
            auroc, fine, hurt = separation(subset, signal)
            cells.append(f"{num(auroc)} ({fine} / {hurt})")
        lines.append(f"| {signal} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "In brackets: runs not hurt / hurt.",
        "",
        "## Mean signal by outcome",
        "",
        "| signal | helped | neutral | hurt |",
        "| --- | --- | --- | --- |",
    ]
    outcome = {
        "helped": lambda g: g > EFFECT,
        "neutral": lambda g: -EFFECT <= g <= EFFECT,
        "hurt": lambda g: g < -EFFECT,
    }
    for signal in SIGNALS:
        cells = []
        for test in outcome.values():
            values = [r[signal] for r in rows if test(r["gain_observed"]) and not math.isnan(r[signal])]
            cells.append(f"{num(statistics.fmean(values), 2)} ({len(values)})" if values else "–")
        lines.append(f"| {signal} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## The best guard each signal allows (threshold chosen knowing the outcomes: an upper bound)",
        "",
        "Mean BACC gain per paired run when refinement is kept only where the signal clears the threshold "
        "(elsewhere the base is kept, gain 0), per base detector (a threshold over all detectors would mostly "
        "pick a detector) and over all runs; `always`: refining every run. Runs without the signal "
        "(older runs recorded no `score_gap`) are left out of that signal's row.",
        "",
        "| base | signal | refine where | runs refined | observed gain: always → guarded "
        "| unobserved gain: always → guarded |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for base in bases + ["all"]:
        subset = rows if base == "all" else [r for r in rows if r["base"] == base]
        for signal in SIGNALS:
            guard = best_guard(subset, signal)
            where = f"{signal} {guard['direction']} {num(guard['threshold'])}" if "direction" in guard else "nowhere"
            lines.append(
                f"| {base} | {signal} | {where} | {guard['refined']} of {guard['runs']} | "
                f"{num(guard['always_observed'])} → {num(guard['observed'])} | "
                f"{num(guard['always_unobserved'])} → {num(guard['unobserved'])} |"
            )
    if guards:
        lines += [
            "",
            "## Guards fixed in advance, on runs they were not chosen on",
            "",
            f"Chosen on: {', '.join(sorted(chosen_on)) or 'nothing named'}. Tested on every other setting's runs of "
            "the guard's base: the only evidence for a guard that its own choice did not see. AUROC as above, "
            "not hurt against hurt: a `>=` guard needs it above 0.5 there, a `<=` guard below.",
            "",
            "| guard | runs (settings) | hurt | AUROC | runs refined | observed gain: always → guarded "
            "| unobserved gain: always → guarded |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for guard in guards:
            test = held_out_guard(rows, guard, set(chosen_on))
            rule = f"{guard['base']}: refine where {guard['signal']} {guard['direction']} {guard['threshold']:g}"
            lines.append(
                f"| {rule} | {test['runs']} ({test['settings']}) | {test['hurt']} | {num(test['auroc'])} | "
                f"{test['refined']} of {test['runs']} | {num(test['always_observed'])} → "
                f"{num(test['guarded_observed'])} | {num(test['always_unobserved'])} → "
                f"{num(test['guarded_unobserved'])} |"
            )
    if skipped:
        lines += ["", "## Left out", ""] + [f"- {s}" for s in skipped]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dirs", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, required=True, help="the markdown report")
    parser.add_argument("--csv", type=Path, help="also one row per refined run, with its signals")
    parser.add_argument(
        "--merge",
        type=Path,
        metavar="CSV",
        help="an earlier --csv output: keep its rows for runs the directories do not hold (may be the --csv file)",
    )
    parser.add_argument(
        "--guard",
        action="append",
        default=[],
        metavar="BASE:SIGNAL:<=|>=:THRESHOLD",
        help="a guard fixed in advance, tested on the settings outside --guard-chosen-on (repeatable)",
    )
    parser.add_argument(
        "--guard-chosen-on",
        default="",
        metavar="SETTINGS",
        help="comma-separated settings the guards were chosen on (e.g. mnist_0v2,mnist_3v1), left out of their test",
    )
    args = parser.parse_args(argv)
    try:
        guards = [parse_guard(text) for text in args.guard]
    except ValueError as exc:
        parser.error(str(exc))
    chosen_on = frozenset(s for s in args.guard_chosen_on.split(",") if s)
    if guards and not chosen_on:
        parser.error("--guard needs --guard-chosen-on: the settings it was chosen on, which its test leaves out")
    missing = [d for d in args.dirs if not d.is_dir()]
    if missing:
        parser.error(f"no such directory: {', '.join(map(str, missing))}")
    earlier = []
    if args.merge:
        if not args.merge.is_file():
            parser.error(f"--merge {args.merge}: no such file; give the signals.csv an earlier run wrote with --csv")
        try:
            earlier = read_signal_rows(args.merge)
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            parser.error(f"--merge {args.merge}: {exc}")
    found, skipped = signal_rows(args.dirs)
    rows = merge_rows(found, earlier)
    if not rows:
        parser.error(f"no refined run with its plain base and {SCORES_FILE} under {', '.join(map(str, args.dirs))}")
    command = "python scripts/refine_signals.py " + " ".join(sys.argv[1:] if argv is None else argv)
    args.out.write_text(render(rows, skipped, command, guards, chosen_on))
    if args.csv:
        with args.csv.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    kept = f", {len(rows) - len(found)} of them kept from {args.merge}" if args.merge else ""
    print(f"wrote {args.out} ({len(rows)} paired runs{kept})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

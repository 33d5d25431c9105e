"""The robustness profile's grid (issue 25): detectors, plain and refined, over contamination and class pairs.

    python scripts/profile_grid.py --out multirun/profile [--pairs-per-dataset 8] [--draw-seed 0]
        [--models knn,iforest,pca] [--alphas 0,0.01,0.05,0.1,0.2] [--seeds 0]
        [--paper-pairs-only | --drawn-pairs-only] [--refine-by auto] [--shard I/N] [--skip-existing]
        [--committed DIR ...] [--dry-run] [-- extra overrides...]
    python -m itsr.report multirun/profile --profile --out results/robustness/report.md

Class pairs: the paper's three plus `--pairs-per-dataset` ordered (normal, anomaly) pairs per dataset
drawn with `--draw-seed` (committed, so the same pairs come back), never one of the paper's. Each pair
is one Hydra multirun over model x refine (none, itsr) x alpha x seed into OUT/<setting>/<model>; with
`--refine-by svm,batch` (networks; peers always refine by score) each way of finding candidates is a
multirun of its own, OUT/<setting>/<model>+itsr-<by>, beside the plain one, OUT/<setting>/<model>. PyOD refuses
contamination 0, so peers run with `model.detector.contamination=0.1` (PyOD's default) at every alpha:
it sets only their `contamination` criterion; the profile compares peers by `score` (p90 of the
training scores), which does not depend on it. Networks (ae, aae) take the quick preset's epochs.

A grid grows over sessions: `--skip-existing` leaves out the sweeps whose directory exists under OUT, and
`--committed DIR` the runs already collected into DIR/<setting>/<sweep> (`scripts/collect_runs.py`), read by
the alpha and seed in their metrics.json: a sweep narrows to the alphas and seeds with a run missing there
(their product, so a few collected runs may run again), so a fresh clone continues a committed grid without
rerunning what it holds.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np

from itsr.results import METRICS_FILE

# (dataset, normal class, anomaly class) of the paper's Fig. 5 settings, and their own dataset configs (which
# name them as the paper's settings in the reports)
PAPER_PAIRS = (("mnist", 0, 2), ("fmnist", 0, 9), ("fmnist", 0, 2))
PAPER_CONFIGS = {("mnist", 0, 2): "mnist", ("fmnist", 0, 9): "fmnist_boot", ("fmnist", 0, 2): "fmnist"}
N_CLASSES = 10
PEER_CONTAMINATION = 0.1  # PyOD's default, valid at alpha = 0 where ${alpha} is not
NETWORKS = ("ae", "aae")


def draw_pairs(per_dataset: int, seed: int) -> list[tuple[str, int, int]]:
    """The paper's pairs, then per dataset `per_dataset` other ordered pairs drawn without replacement
    (the first k of one seeded permutation, so a smaller draw is a prefix of a larger one)."""
    rng = np.random.default_rng(seed)
    pairs = list(PAPER_PAIRS)
    for dataset in ("mnist", "fmnist"):
        others = [
            (dataset, a, b)
            for a in range(N_CLASSES)
            for b in range(N_CLASSES)
            if a != b and (dataset, a, b) not in PAPER_PAIRS
        ]
        pairs += [others[i] for i in rng.permutation(len(others))[:per_dataset]]
    return pairs


def commands(args, pairs, extra: list[str]) -> list[list[str]]:
    """One Hydra multirun per pair and model (refine x alpha x seed): a peer's contamination override
    must be composed with the peer already chosen, which a sweep over models would not do."""
    out = []
    for dataset, normal, anomaly in pairs:
        paper = PAPER_CONFIGS.get((dataset, normal, anomaly))
        setting = paper or f"{dataset}_{normal}v{anomaly}"
        classes = [] if paper else [f"dataset.normal_class={normal}", f"dataset.anomaly_class={anomaly}"]
        for model in args.models.split(","):
            for refine, sweep in refine_variants(model, args.refine_by):
                cmd = [
                    *(sys.executable, "-m", "itsr.run", "-m", "experiment=quick", f"dataset={paper or dataset}"),
                    *classes,
                    *(f"model={model}", *refine, f"alpha={args.alphas}", f"seed={args.seeds}"),
                    *("progress.enabled=false", f"hydra.sweep.dir={args.out / setting / sweep}"),
                ]
                if model not in NETWORKS:
                    cmd.append(f"model.detector.contamination={PEER_CONTAMINATION}")
                out.append(cmd + extra)
    return out


def refine_variants(model: str, refine_by: str) -> list[tuple[list[str], str]]:
    """(overrides, sweep directory name) per multirun of one model: plain and refined in one sweep with the
    model's default way of finding candidates (`auto`), or the plain model and one sweep per `by`."""
    if refine_by == "auto" or model not in NETWORKS:
        return [(["refine=none,itsr"], model)]
    return [(["refine=none"], model)] + [
        (["refine=itsr", f"model.refinement.by={by}"], f"{model}+itsr-{by}") for by in refine_by.split(",")
    ]


def uncollected(cmd: list[str], committed: list[Path]) -> list[str] | None:
    """The sweep narrowed to the alphas and seeds whose runs are not yet collected under the `committed`
    sweep folders (read from their metrics.json), or None when every run of it is there. A sweep over
    refine=none,itsr needs both runs of an (alpha, seed)."""
    value = {c.split("=", 1)[0]: c.split("=", 1)[1] for c in cmd if "=" in c}
    alphas, seeds = value["alpha"].split(","), value["seed"].split(",")
    runs_each = len(value["refine"].split(","))
    found = Counter(run_alpha_seed(path) for d in committed for path in sorted(d.glob(f"*/{METRICS_FILE}")))
    missing = [(a, s) for a in alphas for s in seeds if found[(float(a), int(s))] < runs_each]
    if not missing:
        return None
    narrowed = {
        "alpha": ",".join(dict.fromkeys(a for a, _ in missing)),
        "seed": ",".join(dict.fromkeys(s for _, s in missing)),
    }
    return [f"{k}={narrowed[k]}" if k in narrowed else c for c in cmd for k in [c.split("=", 1)[0]]]


def run_alpha_seed(metrics_path: Path) -> tuple[float, int]:
    """(alpha, seed) of a collected run, or a one-line refusal naming the file that is not a run's metrics."""
    try:
        config = json.loads(metrics_path.read_text())["config"]
        return float(config["alpha"]), int(config["seed"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise SystemExit(
            f"--committed: {metrics_path} is not a finished run's metrics.json ({type(err).__name__}: {err}); "
            "point --committed at a folder of collected runs (DIR/<setting>/<sweep>/<run>/metrics.json)"
        ) from None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        epilog="Arguments after -- are passed to every run as Hydra overrides, e.g. -- threads=1",
    )
    parser.add_argument("--out", type=Path, required=True, help="folder of the sweeps: OUT/<setting>/<model>")
    parser.add_argument(
        "--pairs-per-dataset", type=int, default=8, help="drawn pairs per dataset besides the paper's 3"
    )
    parser.add_argument("--draw-seed", type=int, default=0, help="seed of the pair draw (0: the committed profile's)")
    parser.add_argument(
        "--models", default="knn,iforest,pca", help="comma-separated model configs: peers (knn, ocsvm, ...) or ae, aae"
    )
    parser.add_argument("--alphas", default="0,0.01,0.05,0.1,0.2", help="contamination levels, comma-separated")
    parser.add_argument("--seeds", default="0", help="seeds, comma-separated")
    which_pairs = parser.add_mutually_exclusive_group()
    which_pairs.add_argument("--paper-pairs-only", action="store_true", help="only the paper's 3 pairs, no drawn ones")
    which_pairs.add_argument(
        "--drawn-pairs-only", action="store_true", help="only the drawn pairs (e.g. where the paper's ran elsewhere)"
    )
    parser.add_argument(
        "--refine-by",
        default="auto",
        help="auto (one sweep refine=none,itsr), or networks' ways of finding candidates, e.g. svm,score,batch",
    )
    parser.add_argument(
        "--shard",
        default="0/1",
        help="I/N: run only every N-th pair starting at I (N jobs side by side, one core each)",
    )
    parser.add_argument(
        "--skip-existing",
        action="store_true",
        help="leave out a pair and model whose sweep directory exists (a grown grid)",
    )
    parser.add_argument(
        "--committed",
        type=Path,
        action="append",
        default=[],
        metavar="DIR",
        help="leave out the runs already collected as DIR/<setting>/<sweep>/*/metrics.json (committed runs, e.g. "
        "results/robustness/nets/drawn/runs): a sweep runs only its alphas and seeds not found there; repeatable",
    )
    parser.add_argument("--dry-run", action="store_true", help="print the pairs and commands, run nothing")
    args = parser.parse_args(argv)
    for folder in args.committed:
        if not folder.is_dir():
            parser.error(f"--committed {folder}: no such folder (a folder of collected runs, DIR/<setting>/<sweep>)")
    pairs = list(PAPER_PAIRS) if args.paper_pairs_only else draw_pairs(args.pairs_per_dataset, args.draw_seed)
    if args.drawn_pairs_only:
        pairs = [pair for pair in pairs if pair not in PAPER_PAIRS]
    index, count = (int(v) for v in args.shard.split("/"))
    pairs = pairs[index::count]
    print("class pairs:", ", ".join(f"{d}_{a}v{b}" for d, a, b in pairs), flush=True)
    failed = 0
    for cmd in commands(args, pairs, extra):
        sweep_dir = Path(next(c for c in cmd if c.startswith("hydra.sweep.dir=")).split("=", 1)[1])
        if args.skip_existing and sweep_dir.exists():
            print(f"exists, left out: {sweep_dir}", flush=True)
            continue
        if args.committed:
            cmd = uncollected(cmd, [d / sweep_dir.parent.name / sweep_dir.name for d in args.committed])
            if cmd is None:
                print(f"committed, left out: {sweep_dir.parent.name}/{sweep_dir.name}", flush=True)
                continue
        print(" ".join(cmd[1:]), flush=True)
        if not args.dry_run:
            failed += subprocess.run(cmd).returncode != 0
    if failed:
        print(f"{failed} sweeps had failed jobs; the report lists them", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

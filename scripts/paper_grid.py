"""Which runs of the paper's Fig. 5 grid (issue 24) are still missing from results/paper/runs, and the
command that runs each: one list for the CPU queue, a SLURM grid and the GPU script
(scripts/device-paper-grid.sh), so nobody has to read the README to know what remains.

    python scripts/paper_grid.py                      # a table: run, why it is wanted, command
    python scripts/paper_grid.py --format specs       # "name model dataset seed" per line, for scripts
    python scripts/paper_grid.py --format specs --order shortest   # the shortest runs first (a GPU's pool)
    python scripts/paper_grid.py --format args        # "name override ..." per line: what the GPU script runs

A run belongs to the grid when its metrics.json says the grid's precision (bf16-mixed, recorded in
`provenance`) and it has a held-out slice (both threshold rules). A grid run in another precision, or
without a hold-out, is listed as a rerun: scripts/paper_queue.py moves it aside (results/paper/fp32/) when
it collects the rerun; by hand, move it before collecting, since scripts/collect_runs.py never overwrites a
committed run.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from omegaconf import OmegaConf

from itsr.results import METRICS_FILE

# Fig. 5's three settings: the dataset config that runs each (conf/dataset/) and the setting name runs
# are filed under (itsr.settings.PAPER_SETTINGS)
FIG5_DATASETS = {"mnist": "mnist_0v2", "fmnist_boot": "fmnist_tshirt_v_boot", "fmnist": "fmnist_tshirt_v_pullover"}
FIG5_MODELS = ("ae", "aae", "itsr")
# --order shortest: a run's paper epochs (conf/dataset/*.yaml, Sec. 5: AAE 1000, ITSR 2000-2500, AE 4000 on
# MNIST and 10000 on Fashion-MNIST) times its relative cost per epoch, so that a pool with a deadline finishes
# as many runs as it can. An AAE or ITSR epoch takes three optimizer steps per batch (reconstruction,
# discriminator, generator; Sec. 3), the AE's one: the AE's epoch measured 0.91 s against the AAE's 3.1 s
# on 2 CPU threads (results/paper/README.md), about a third.
EPOCH_COST = {"ae": 1 / 3, "aae": 1.0, "itsr": 1.0}
CONF = Path(__file__).resolve().parent.parent / "conf"
FIG5_ALPHA = 0.05  # Fig. 5's contamination (Sec. 5)
PAPER_ALPHAS = (0.05, 0.01, 0.001)  # Fig. 5, then Table 1's two columns (Sec. 5)
GRID_PRECISION = "bf16-mixed"  # decided on evidence in results/paper/precision/ (issue 24)
GRID_HOLDOUT = 0.1  # scoring.holdout_fraction: every grid run reports the paper's and the calibrated rule


def run_name(model: str, dataset: str, alpha: float, seed: int) -> str:
    return f"{model}_{FIG5_DATASETS[dataset]}_a{alpha:g}_s{seed}"


def overrides(model: str, dataset: str, alpha: float, seed: int) -> list[str]:
    """The grid's `itsr.run` overrides for one run (scripts/paper_queue.py and the GPU script run these)."""
    return [
        "experiment=paper",
        f"model={model}",
        f"dataset={dataset}",
        f"alpha={alpha:g}",
        f"seed={seed}",
        f"trainer.precision={GRID_PRECISION}",
        f"scoring.holdout_fraction={GRID_HOLDOUT:g}",
    ]


def command(model: str, dataset: str, alpha: float, seed: int) -> str:
    return "python -m itsr.run " + " ".join(overrides(model, dataset, alpha, seed))


def recorded_precision(metrics: dict) -> str | None:
    """The precision a run's metrics.json records (None: not recorded, i.e. fp32 from before provenance)."""
    provenance = metrics.get("provenance")
    return provenance.get("precision") if isinstance(provenance, dict) else None


def why_wanted(run_dir: Path) -> str | None:
    """None when `run_dir` holds a finished grid run; else why it must (re)run."""
    metrics_file = run_dir / METRICS_FILE
    if not metrics_file.is_file():
        return "missing"
    try:
        metrics = json.loads(metrics_file.read_text())
    except (OSError, ValueError) as error:
        return f"unreadable {METRICS_FILE} ({type(error).__name__})"
    if not isinstance(metrics, dict):
        return f"unreadable {METRICS_FILE} (not an object)"
    precision = recorded_precision(metrics)
    if precision != GRID_PRECISION:
        recorded = precision or "not recorded (fp32, before provenance)"
        return f"rerun: precision {recorded}, the grid runs {GRID_PRECISION}"
    if not metrics.get("holdout"):
        return "rerun: no held-out slice (only the paper's threshold rule)"
    return None


def dataset_epochs(dataset: str) -> dict:
    """The `epochs` block of conf/dataset/<dataset>.yaml, following its `defaults` (fmnist_boot -> fmnist)."""
    spec = OmegaConf.to_container(OmegaConf.load(CONF / "dataset" / f"{dataset}.yaml"))
    if "epochs" in spec:
        return spec["epochs"]
    bases = [d for d in spec.get("defaults", []) if isinstance(d, str) and d != "_self_"]
    return dataset_epochs(bases[0])


def paper_epochs(model: str, dataset: str) -> int:
    """Epochs a grid run trains: ITSR's pretraining, d rounds and retraining (Sec. 4.2, 5), else the model's."""
    epochs = dataset_epochs(dataset)
    if model != "itsr":
        return epochs[model]
    rounds = OmegaConf.load(CONF / "refine" / "itsr.yaml").model.refinement.rounds
    return epochs["itsr_pretrain"] + rounds * epochs["itsr_round"] + epochs["itsr_retrain"]


def run_cost(model: str, dataset: str) -> float:
    """A run's length in AAE-epoch units, for ordering only."""
    return paper_epochs(model, dataset) * EPOCH_COST[model]


def todo(runs: Path, alpha: float, seeds: list[int]) -> list[tuple[str, str, str, int, str]]:
    """(name, model, dataset, seed, why) for each grid run not yet in `runs`; the longest-waiting cell
    first: by seed, then setting, then model."""
    out = []
    for seed in seeds:
        for dataset in FIG5_DATASETS:
            for model in FIG5_MODELS:
                name = run_name(model, dataset, alpha, seed)
                why = why_wanted(runs / name)
                if why is not None:
                    out.append((name, model, dataset, seed, why))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=Path, default=Path("results/paper/runs"), help="committed runs")
    parser.add_argument("--alpha", type=float, default=FIG5_ALPHA, help="contamination (Fig. 5: 0.05)")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    parser.add_argument(
        "--format",
        choices=("table", "specs", "args"),
        default="table",
        help="table: Markdown with why and the command; specs: 'name model dataset seed' per line; args: "
        "'name' and the run's itsr.run overrides per line (scripts/device-paper-grid.sh runs these)",
    )
    parser.add_argument(
        "--order",
        choices=("seed", "shortest"),
        default="seed",
        help="seed: by seed, setting, model; shortest: by the paper's epochs times a model's cost per epoch "
        "(AAE, the AE on MNIST, ITSR on Fashion-MNIST, on MNIST, the AE on Fashion-MNIST), the order in which a "
        "pool with a deadline finishes most runs",
    )
    parser.add_argument(
        "--skip",
        default="",
        help="comma-separated run names to leave out (runs training elsewhere, e.g. on the CPU queue)",
    )
    args = parser.parse_args(argv)
    if not args.runs.is_dir():
        print(f"paper_grid: {args.runs} is not a directory; pass --runs results/paper/runs", file=sys.stderr)
        return 2
    try:
        seeds = list(dict.fromkeys(int(s) for s in args.seeds.split(",")))  # a repeated seed: once
    except ValueError:
        print(f"paper_grid: --seeds {args.seeds!r}: give integers separated by commas, e.g. 0,1,2", file=sys.stderr)
        return 2
    wanted = todo(args.runs, args.alpha, seeds)
    skipped = {name for name in args.skip.split(",") if name}
    known = {run_name(m, d, args.alpha, s) for s in seeds for d in FIG5_DATASETS for m in FIG5_MODELS}
    if skipped - known:
        print(
            f"paper_grid: --skip {','.join(sorted(skipped - known))}: not a grid run name; names look like "
            f"{run_name('ae', 'mnist', args.alpha, seeds[0])} (see the table without --format specs)",
            file=sys.stderr,
        )
        return 2
    wanted = [w for w in wanted if w[0] not in skipped]
    if args.order == "shortest":
        wanted.sort(key=lambda w: (run_cost(w[1], w[2]), w[3]))
    if args.format in ("specs", "args"):  # nothing at all when nothing is left (a script's loop then runs nothing)
        for name, model, dataset, seed, _ in wanted:
            rest = (
                [model, dataset, str(seed)] if args.format == "specs" else overrides(model, dataset, args.alpha, seed)
            )
            print(" ".join([name, *rest]))
        return 0
    total = len(FIG5_DATASETS) * len(FIG5_MODELS) * len(seeds)
    print(f"{total - len(wanted)} of {total} grid runs are in {args.runs}; {len(wanted)} to run:\n")
    print("| run | why | command |\n| --- | --- | --- |")
    for name, model, dataset, seed, why in wanted:
        print(f"| {name} | {why} | `{command(model, dataset, args.alpha, seed)}` |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

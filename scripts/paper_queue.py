"""The paper grid's CPU queue (issue 24; Fig. 5, then Table 1): start it at the beginning of a session, stop
it with the session.

    python scripts/paper_queue.py --jobs 2                # every missing grid run, two at a time, one thread each
    python scripts/paper_queue.py --jobs 2 --alpha 0.01   # Table 1's 1% column once Fig. 5's grid is done
    python scripts/paper_queue.py --jobs 1 --dry-run      # the queue, each run's state, and its command
    python scripts/paper_queue.py --jobs 1 --skip NAME,.. -- trainer.precision=bf16-mixed   # overrides last

A run lives in OUT/<name> (default outputs/paper/<name>), its log in OUT/<name>.log. The queue takes the
grid's missing runs (scripts/paper_grid.py: not in results/paper/runs in the grid's precision) in this
order: runs cut short in an earlier session first (their checkpoint resumes, `ckpt_path=auto`, so a run
longer than a session finishes over several), then new runs, shortest first. A run whose directory a job
holds (the lock of itsr.runtime: another queue, a hand-started run) is left to it, so two queues side by
side (`--jobs 1` each) never train one run twice. A run that finished in OUT
but is not yet in results/paper/runs is collected (scripts/collect_runs.py), not rerun; so is every run
that finishes while the queue runs. A finished rerun (a committed run in another precision, or without a
hold-out: see scripts/paper_grid.py) first moves the run it replaces aside, to RUNS/../fp32/<name> (or
RUNS/../<precision>-no-holdout/<name>), so that the report reads the grid's run and the old one stays
committed for comparison. Committing stays a person's step. Run it from a git worktree: Hydra re-reads
conf/ for each run, and an edit in the checkout would change runs mid-queue.

`--start-within MINUTES` starts no run once that many minutes have passed since the queue started (a run
still collects when it finishes): size the queue to a session, since a run cut short restarts from its
last checkpoint only where OUT survives to the next session.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from itsr.results import FAILURE_FILE, METRICS_FILE
from itsr.runtime import last_checkpoint, run_dir_holder

REPO = Path(__file__).resolve().parent.parent
PROGRESS_EVERY = 50  # epochs between progress lines in a run's log


def load_paper_grid():
    """scripts/paper_grid.py as a module: the one list of the grid's runs and their overrides."""
    spec = importlib.util.spec_from_file_location("paper_grid", REPO / "scripts" / "paper_grid.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def state(run_dir: Path) -> str:
    """finished (results written), live (a job holds the run directory's lock: training elsewhere),
    resumable (a checkpoint, no results), failed, or new."""
    if (run_dir / METRICS_FILE).is_file() and not (run_dir / FAILURE_FILE).is_file():
        return "finished"
    if run_dir_holder(run_dir) is not None:
        return "live"
    if last_checkpoint(run_dir).exists():
        return "resumable"
    if (run_dir / FAILURE_FILE).is_file():
        return "failed"
    return "new"


def queue(grid, runs: Path, out: Path, skip: set[str], alpha: float) -> list[tuple[str, str, str, int, str]]:
    """(name, model, dataset, seed, state) of every grid run at `alpha` still missing from `runs`: finished
    ones first (to collect), then resumable, then new or failed ones, each group shortest first."""
    wanted = [w for w in grid.todo(runs, alpha, [0, 1, 2]) if w[0] not in skip]
    rank = {"finished": 0, "resumable": 1, "new": 2, "failed": 2, "live": 3}
    rows = [(name, model, dataset, seed, state(out / name)) for name, model, dataset, seed, _ in wanted]
    return sorted(rows, key=lambda r: (rank[r[4]], grid.run_cost(r[1], r[2]), r[3]))


def run_command(
    grid, name: str, model: str, dataset: str, alpha: float, seed: int, out: Path, extra: list[str]
) -> list[str]:
    """The grid's command for one run, one thread, into OUT/<name> (the same command resumes it)."""
    return [
        sys.executable,
        "-m",
        "itsr.run",
        *grid.overrides(model, dataset, alpha, seed),
        "threads=1",
        f"progress.every_n_epochs={PROGRESS_EVERY}",
        f"hydra.run.dir={out / name}",
        *extra,
    ]


def superseded_home(grid, runs: Path, name: str) -> Path | None:
    """Where the committed run `name` goes when its grid rerun is collected: RUNS/../fp32/<name> for a run
    in fp32 (recorded as 32-true, or before provenance was recorded), RUNS/../<precision>-no-holdout/<name>
    for one without a held-out slice; None when `runs` holds no such run."""
    committed = runs / name
    why = grid.why_wanted(committed)
    if not committed.is_dir() or why is None or not why.startswith("rerun"):
        return None  # nothing there, or unreadable: collect_runs.py then refuses to overwrite it, by name
    precision = grid.recorded_precision(json.loads((committed / METRICS_FILE).read_text())) or "32-true"
    folder = "fp32" if precision == "32-true" else f"{precision}-no-holdout"
    return runs.parent / folder / name


def collect(grid, name: str, out: Path, runs: Path) -> int:
    home = superseded_home(grid, runs, name)
    if home is not None:
        if home.exists():
            print(
                f"{name}: cannot move the run it replaces out of {runs}: {home} exists; move one of them by hand, "
                f"then run the queue again to collect {out / name}",
                flush=True,
            )
            return 1
        home.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(runs / name), str(home))
        print(f"{name}: the run it replaces moved to {home}", flush=True)
    return subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "collect_runs.py"),
            str(out / name),
            "--into",
            str(runs),
            "--name",
            name,
        ]
    ).returncode


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1, help="runs at once, one thread each (at most the cores)")
    parser.add_argument("--runs", type=Path, default=REPO / "results/paper/runs", help="committed grid runs")
    parser.add_argument("--out", type=Path, default=REPO / "outputs/paper", help="where the runs train")
    parser.add_argument("--skip", default="", help="comma-separated run names to leave out (running elsewhere)")
    parser.add_argument(
        "--alpha",
        type=float,
        default=None,
        help="contamination: 0.05 (Fig. 5, the default), 0.01 or 0.001 (Table 1's columns)",
    )
    parser.add_argument("--dry-run", action="store_true", help="print the queue and the commands, run nothing")
    parser.add_argument(
        "--start-within",
        type=float,
        default=None,
        metavar="MINUTES",
        help="start no run after this many minutes (finished runs are still collected); default: no limit",
    )
    args = parser.parse_args(argv)
    if args.start_within is not None and not args.start_within > 0:
        print(f"paper_queue: --start-within {args.start_within:g}: give a positive number of minutes", file=sys.stderr)
        return 2
    cores = os.cpu_count() or 1
    if not 1 <= args.jobs <= cores:
        print(
            f"paper_queue: --jobs {args.jobs}: give 1 to {cores} (this machine's cores; one thread each)",
            file=sys.stderr,
        )
        return 2
    if not args.runs.is_dir():
        print(f"paper_queue: {args.runs} is not a directory; pass --runs results/paper/runs", file=sys.stderr)
        return 2
    grid = load_paper_grid()
    alpha = grid.FIG5_ALPHA if args.alpha is None else args.alpha
    if alpha not in grid.PAPER_ALPHAS:
        print(
            f"paper_queue: --alpha {alpha:g}: the paper's grid has "
            f"{', '.join(f'{a:g}' for a in grid.PAPER_ALPHAS)} (Fig. 5, then Table 1); for another "
            "contamination run `python -m itsr.run experiment=paper alpha=...` yourself",
            file=sys.stderr,
        )
        return 2
    skip = {name for name in args.skip.split(",") if name}
    rows = queue(grid, args.runs, args.out, skip, alpha)

    def command(row) -> list[str]:
        name, model, dataset, seed, _ = row
        return run_command(grid, name, model, dataset, alpha, seed, args.out, extra)

    for row in rows:
        print(f"{row[4]:<9} {row[0]}: {' '.join(command(row)[1:])}")
    live = [r[0] for r in rows if r[4] == "live"]
    if live:
        print(
            f"left out, a job runs there now: {', '.join(live)}; once it has stopped, run the queue again to resume it",
            flush=True,
        )
    rows = [r for r in rows if r[4] != "live"]
    if args.dry_run or not rows:
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "WANDB_MODE": os.environ.get("WANDB_MODE", "offline"),
    }
    lock = threading.Lock()
    failures, late, taken = [], [], []
    last_start = None if args.start_within is None else time.monotonic() + 60 * args.start_within

    def one(row) -> None:
        name = row[0]
        run_state = state(args.out / name)  # again: another queue may have taken or finished it meanwhile
        if run_state == "live":  # another queue took it after this one listed it
            with lock:
                taken.append(name)
                print(f"{name}: a job runs there now; left to it", flush=True)
            return
        if run_state != "finished" and last_start is not None and time.monotonic() > last_start:
            with lock:
                late.append(name)
                print(f"{name}: not started, --start-within {args.start_within:g} min has passed", flush=True)
            return
        if run_state != "finished":
            with open(args.out / f"{name}.log", "a") as log:
                done = subprocess.run(
                    command(row), cwd=REPO, env=env, stdout=log,
                    stderr=subprocess.STDOUT,
                )  # fmt: skip
            if done.returncode != 0:
                with lock:
                    failures.append(name)
                    print(f"{name}: exit {done.returncode}; its log: {args.out / name}.log", flush=True)
                return
        with lock:
            if collect(grid, name, args.out, args.runs) != 0:
                failures.append(name)

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        list(pool.map(one, rows))
    done = len(rows) - len(failures) - len(late) - len(taken)
    print(f"queue done: {done} of {len(rows)} runs finished and collected into {args.runs}", flush=True)
    if taken:
        print(f"left to the job that took it meanwhile (run the queue again once it ends): {', '.join(taken)}")
    if late:
        print(f"not started (--start-within): {', '.join(late)}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

"""Which bf16 variant trains an epoch fastest? (issue 11; figures in results/bench/bf16_notes.md)

    python scripts/bf16_variants.py {ae,aae} [--n-train 512] [--rounds 6] [--variants fp32,bf16,bf16-foreach]
    python scripts/bf16_variants.py aae --profile bf16   # torch.profiler table of one epoch

The plain loop of itsr/bench/loop.py (the module's networks, optimizers and losses) on the first
n-train images, one thread. Every variant gets one untimed warm-up epoch, then the variants take
turns epoch by epoch, so a drift in machine load hits all alike; the speedup of a variant is the
median over rounds of (first variant's epoch / this variant's epoch). Variants: fp32 or bf16
(autocast, as trainer.precision=bf16-mixed), with "-foreach" (Adam foreach instead of fused),
"-compile" (torch.compile of the networks), "-bfx" (training images kept in bf16).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from itsr.bench.loop import autocast, benchmark_data, build_module, plain_step
from itsr.data.fetch import default_data_dir
from itsr.library_warnings import silence_third_party_noise

DEVICE = torch.device("cpu")
PROFILE_ROWS = 30  # rows of the profiler table


def optimizers_of(module, variant: str):
    """The module's optimizers; "-foreach" swaps the fused Adam for the foreach one, same settings."""
    optimizers = module.configure_optimizers()
    if "foreach" not in variant:
        return optimizers
    many = optimizers if isinstance(optimizers, list) else [optimizers]
    swapped = [
        torch.optim.Adam(o.param_groups[0]["params"], lr=o.defaults["lr"], betas=o.defaults["betas"], foreach=True)
        for o in many
    ]
    return swapped if isinstance(optimizers, list) else swapped[0]


def make(kind: str, x: torch.Tensor, variant: str) -> dict:
    module, _ = build_module(kind, x.shape[1])
    state = {"kind": kind, "module": module, "opts": optimizers_of(module, variant)}
    state["precision"] = "32-true" if variant.startswith("fp32") else "bf16-mixed"
    state["x"] = x.bfloat16() if "bfx" in variant else x
    if "compile" in variant:
        module.compile_networks()
    return state


def epoch(state: dict, batch_size: int) -> None:
    module, opts, x = state["module"], state["opts"], state["x"]
    weights = torch.ones(x.shape[0])
    for idx in torch.randperm(x.shape[0]).split(batch_size):
        xb, wb = x[idx], weights[idx]
        with autocast(DEVICE, state["precision"]):
            plain_step(state["kind"], module, opts, xb, wb)


def timed(state: dict, batch_size: int) -> float:
    start = time.perf_counter()
    epoch(state, batch_size)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("kind", choices=("ae", "aae"), help="which network's loop to time")
    parser.add_argument("--n-train", type=int, default=512, help="training images of an epoch")
    parser.add_argument("--rounds", type=int, default=6, help="timed epochs per variant, taken in turns")
    parser.add_argument(
        "--variants", default="fp32,bf16,bf16-foreach", help="comma-separated; the first is the baseline"
    )
    parser.add_argument("--profile", metavar="VARIANT", help="profile one epoch of this variant instead")
    parser.add_argument("--data-dir", default=str(default_data_dir()), help="IDX cache (python -m itsr.data fetch)")
    args = parser.parse_args()
    silence_third_party_noise()
    torch.set_num_threads(1)
    dm = benchmark_data(args.data_dir, args.n_train)
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        state = make(args.kind, dm.train.x, args.profile)
        epoch(state, dm.batch_size)  # warm-up
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            epoch(state, dm.batch_size)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=PROFILE_ROWS))
        return
    names = args.variants.split(",")
    states = {v: make(args.kind, dm.train.x, v) for v in names}
    for v in names:
        print(f"warm-up {v}: {timed(states[v], dm.batch_size):.2f} s", flush=True)
    seconds: dict[str, list[float]] = {v: [] for v in names}
    for r in range(args.rounds):
        for v in names:
            seconds[v].append(timed(states[v], dm.batch_size))
        print(r, {v: round(s[-1], 3) for v, s in seconds.items()}, flush=True)
    for v in names:
        ratios = [a / b for a, b in zip(seconds[names[0]], seconds[v])]
        print(
            f"{v:<16} median {statistics.median(seconds[v]):.3f} s/epoch, speedup over {names[0]} "
            f"(median of paired ratios) {statistics.median(ratios):.2f}x"
        )


if __name__ == "__main__":
    main()

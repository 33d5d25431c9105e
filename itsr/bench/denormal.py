"""The optimizer step late in a long run, when Adam's moments have sunk into float32's denormal range.

Fresh weights (as in the epoch timings) never show this: measured on the paper-scale AE's checkpoint at
epoch 1950, 49% of Adam's moment entries were denormal (below 1.2e-38) and a fused Adam step took 59 ms
with denormals kept against 3.2 ms with them flushed (one thread). Runs flush them (`flush_denormal`,
itsr.runtime.configure_torch). This times the module's own optimizer on moments set to that state, so the
figure can be re-measured on any machine without a checkpoint.
"""

from __future__ import annotations

import statistics
import time

import torch

from itsr.bench.loop import build_module

DENORMAL_FRACTION = 0.5  # share of Adam's moment entries below 1.2e-38 at epoch 1950 of the AE run (0.49)
DENORMAL_VALUE = 1e-40  # a float32 denormal (the smallest normal is 1.18e-38)
NORMAL_VALUE = 1e-12  # a typical small moment
WARMUP_STEPS = 2
TIMED_STEPS = 10


def late_adam_state(optimizer: torch.optim.Optimizer, params: list[torch.nn.Parameter], generator) -> None:
    """Gradients and both Adam moments as in a long run: DENORMAL_FRACTION of the entries denormal."""
    for p in params:
        denormal = torch.rand(p.shape, generator=generator) < DENORMAL_FRACTION
        value = torch.where(denormal, torch.tensor(DENORMAL_VALUE), torch.tensor(NORMAL_VALUE))
        p.grad = value.clone()
        state = optimizer.state[p]
        state["step"] = torch.tensor(100_000.0)
        state["exp_avg"] = value.clone()
        state["exp_avg_sq"] = value.clone()


def adam_step_ms(kind: str, input_dim: int, flush: bool, restore: bool, steps: int = TIMED_STEPS) -> float:
    """Median ms per step of the module's reconstruction optimizer (fused Adam) on a late-run state.
    The moments are reset before every step, so each one meets the denormals (flushing would zero them).
    torch has no getter for the flush setting: `restore` is the one to leave behind."""
    module, _ = build_module(kind, input_dim)
    optimizers = module.configure_optimizers()
    optimizer = optimizers[0] if isinstance(optimizers, (list, tuple)) else optimizers
    params = [p for group in optimizer.param_groups for p in group["params"]]
    times = []
    try:
        for i in range(WARMUP_STEPS + steps):
            torch.set_flush_denormal(False)  # the state is written with its denormals kept
            late_adam_state(optimizer, params, torch.Generator().manual_seed(i))
            torch.set_flush_denormal(flush)
            start = time.perf_counter()
            optimizer.step()
            times.append(time.perf_counter() - start)
    finally:
        torch.set_flush_denormal(restore)
    return 1000 * statistics.median(times[WARMUP_STEPS:])


def denormal_figures(kind: str, input_dim: int, restore: bool, steps: int = TIMED_STEPS) -> dict:
    """latest.json's "denormal" entry: the late-run optimizer step with denormals kept and flushed."""
    kept = adam_step_ms(kind, input_dim, flush=False, restore=restore, steps=steps)
    flushed = adam_step_ms(kind, input_dim, flush=True, restore=restore, steps=steps)
    return {
        "model": kind,
        "denormal_fraction": DENORMAL_FRACTION,
        "adam_step_ms_kept": round(kept, 2),
        "adam_step_ms_flushed": round(flushed, 2),
        "slowdown_kept": round(kept / flushed, 2),
    }

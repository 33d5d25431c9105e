"""Memory of a short ITSR run with all three phases: RSS per epoch must stay flat."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate

from itsr.bench.loop import build_module
from itsr.data.datamodule import BenchmarkDataModule

# A schedule with every phase and more than one round, short enough for the benchmark
SHORT_SCHEDULE = {"pretrain_epochs": 3, "rounds": 3, "round_epochs": 2, "retrain_epochs": 3}
KIB_PER_MIB = 1024


def current_rss_mb() -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / KIB_PER_MIB
    return float("nan")


def peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / KIB_PER_MIB


class RssSampler(pl.Callback):
    def __init__(self):
        self.rss_mb: list[float] = []

    def on_train_epoch_end(self, trainer, pl_module):
        self.rss_mb.append(round(current_rss_mb(), 1))


def itsr_memory(dm: BenchmarkDataModule, device: torch.device) -> dict:
    """RSS per epoch over a short ITSR schedule with all three phases: it must stay flat."""
    module, cfg = build_module("itsr", dm.input_dim)
    callback = instantiate(cfg.model.refinement, **SHORT_SCHEDULE)  # the run's refinement, shortened
    sampler = RssSampler()
    dm.set_sample_weights(torch.ones(len(dm.train)))
    pl.Trainer(
        accelerator="gpu" if device.type == "cuda" else "cpu",
        devices=1,
        max_epochs=callback.schedule.total_epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[callback, sampler],
    ).fit(module, datamodule=dm)
    dm.set_sample_weights(torch.ones(len(dm.train)))
    return {
        "rss_mb_per_epoch": sampler.rss_mb,
        "growth_mb_after_first_round": round(sampler.rss_mb[-1] - sampler.rss_mb[callback.schedule.pretrain_epochs], 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }

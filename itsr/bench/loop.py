"""Timed epochs: our training path (Lightning) and the plain PyTorch loop it is compared against.

Both run in either precision ("32-true" or "bf16-mixed", Lightning's names). The plain loop uses the
module's own networks, optimizers and loss functions (itsr.models.base), so it cannot drift from
what a run trains; it only leaves out Lightning and the DataLoader.
"""

from __future__ import annotations

import statistics
import time

import pytorch_lightning as pl
import torch

from itsr.bench.matmul import RateProbe, sync
from itsr.bf16_matmul import bf16_matmuls
from itsr.data.datamodule import BenchmarkDataModule, LabelledImages
from itsr.models.base import discriminator_loss, drop_stale_casts, generator_loss, weighted_mean
from itsr.run import CONFIG_DIR
from itsr.runtime import available_cores
from itsr.scoring import reconstruction_error

PRECISIONS = ("32-true", "bf16-mixed")  # Lightning's names, as trainer.precision takes them
WARMUP_EPOCHS = 1  # the first epoch warms up allocators and caches; it is not timed
PARALLEL_TIMEOUT_S = 1800  # a parallel job that has not reported by then has hung


def benchmark_threads(threads: int | None) -> int:
    """Torch threads for the benchmark: as asked, else every core this job owns."""
    return threads or available_cores()


def benchmark_data(
    data_dir: str, n_train: int | None = None, batch_size: int = 128, prepare: bool = True
) -> BenchmarkDataModule:
    """MNIST 0 vs 2 at alpha 5% (the quick preset's first cell); n_train keeps only the first images
    (a short check of the benchmark itself, not a figure to compare). prepare=False trusts a cache
    the parent process has already verified."""
    dm = BenchmarkDataModule("mnist", 0, 2, 0.05, 0, data_dir, batch_size=batch_size)
    if prepare:
        dm.prepare_data()
    dm.setup()
    if n_train is not None and n_train < len(dm.train):
        t = dm.train
        dm.train = LabelledImages(t.x[:n_train].clone(), t.labels[:n_train], t.is_anomaly[:n_train])
        dm.sample_weights = torch.ones(n_train)
    return dm


def autocast(device: torch.device, precision: str):
    """The autocast context Lightning's bf16-mixed opens around a training step; off for 32-true."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16-mixed")


class EpochTimer(pl.Callback):
    """Seconds per epoch; a matmul burst (RateProbe) runs just before each epoch's clock starts."""

    def __init__(self, device: torch.device, probe: RateProbe | None = None):
        self.device = device
        self.probe = probe
        self.seconds: list[float] = []

    def on_train_epoch_start(self, trainer, pl_module):
        if self.probe is not None:
            self.probe.probe()
        sync(self.device)
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module):
        sync(self.device)
        self.seconds.append(time.perf_counter() - self._start)


def build_module(kind: str, input_dim: int):
    """The modules a run builds, from the same config files."""
    from hydra import compose, initialize_config_dir

    from itsr import build

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("config", overrides=[f"model={kind}", "data_dir=unused"])
    return build.build_module(cfg, input_dim), cfg


def time_our_path(
    kind: str,
    dm: BenchmarkDataModule,
    epochs: int,
    device: torch.device,
    precision: str = "32-true",
    probe: RateProbe | None = None,
    bf16_route: str | None = None,
    compile_options: dict | None = None,
) -> list[float]:
    """The real training path: the same LightningModule and DataModule that a run uses, its bf16 matrix
    products on the route a run takes (itsr.bf16_matmul); with compile_options, its networks compiled as
    `compile.enabled=true +compile.options.mode=...` does (the compilation falls in the untimed warm-up epoch)."""
    module, _ = build_module(kind, dm.input_dim)
    if compile_options is not None:
        module.compile_networks(**compile_options)
    timer = EpochTimer(device, probe)
    trainer = pl.Trainer(
        accelerator="gpu" if device.type == "cuda" else "cpu",
        devices=1,
        precision=precision,
        max_epochs=epochs + WARMUP_EPOCHS,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer],
    )
    with bf16_matmuls(bf16_route):
        trainer.fit(module, datamodule=dm)
    return timer.seconds[WARMUP_EPOCHS:]


def plain_step(kind: str, module, optimizers, xb: torch.Tensor, wb: torch.Tensor) -> None:
    """One batch of the AE or AAE in plain PyTorch, with the module's networks, optimizers and loss
    functions (so it cannot drift from the module): the reference our Lightning path is timed against."""
    enc, dec = module.encoder, module.decoder
    if kind == "ae":
        loss = weighted_mean(reconstruction_error(xb, dec(enc(xb))), wb)
        optimizers.zero_grad(set_to_none=True)
        loss.backward()
        optimizers.step()
        return
    opt_rec, opt_disc, opt_gen = optimizers
    disc = module.discriminator
    z = enc(xb)
    loss = weighted_mean(reconstruction_error(xb, dec(z)), wb)
    opt_rec.zero_grad(set_to_none=True)
    loss.backward()
    opt_rec.step()
    drop_stale_casts()
    codes = z.detach()
    d_loss = discriminator_loss(disc(torch.randn_like(codes)), disc(codes), wb)
    opt_disc.zero_grad(set_to_none=True)
    d_loss.backward()
    opt_disc.step()
    drop_stale_casts()
    for p in disc.parameters():
        p.requires_grad_(False)
    z_gen = enc(xb)
    g_loss = generator_loss(disc(z_gen), z_gen, wb)
    opt_gen.zero_grad(set_to_none=True)
    g_loss.backward()
    opt_gen.step()
    drop_stale_casts()
    for p in disc.parameters():
        p.requires_grad_(True)


def time_plain_loop(
    kind: str,
    x: torch.Tensor,
    batch_size: int,
    epochs: int,
    device: torch.device,
    precision: str = "32-true",
    probe: RateProbe | None = None,
    bf16_route: str | None = None,
) -> list[float]:
    """Reference: the same networks, optimizers and losses, a plain loop over in-memory tensor slices (bf16
    products on the same route as ours)."""
    module, _ = build_module(kind, x.shape[1])
    module.to(device)
    x = x.to(device)
    weights = torch.ones(x.shape[0], device=device)
    # the same optimizers as the module (fused Adam), so the ratio measures the framework alone
    optimizers = module.configure_optimizers()
    seconds = []
    for _ in range(epochs + WARMUP_EPOCHS):
        if probe is not None:
            probe.probe()
        sync(device)
        start = time.perf_counter()
        order = torch.randperm(x.shape[0], device=device)
        for batch_idx in order.split(batch_size):
            xb, wb = x[batch_idx], weights[batch_idx]
            # one context per batch, as Lightning's training step
            with bf16_matmuls(bf16_route), autocast(device, precision):
                plain_step(kind, module, optimizers, xb, wb)
        sync(device)
        seconds.append(time.perf_counter() - start)
    return seconds[WARMUP_EPOCHS:]


def _parallel_worker(
    kind: str, data_dir: str, n_train: int | None, epochs: int, threads: int, device: str, barrier, results
) -> None:
    torch.set_num_threads(threads)
    dm = benchmark_data(data_dir, n_train, prepare=False)
    barrier.wait()  # all jobs train at the same time
    results.put(time_our_path(kind, dm, epochs, torch.device(device)))


def parallel_jobs(
    kind: str, n_jobs: int, data_dir: str, n_train: int | None, epochs: int, device: torch.device
) -> dict:
    """n_jobs runs at once in separate processes, each with its share of the cores (the parallel
    launcher's setup): seconds per epoch of each while all of them train."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(n_jobs), ctx.Queue()
    threads = max(1, torch.get_num_threads() // n_jobs)
    workers = [
        ctx.Process(
            target=_parallel_worker, args=(kind, data_dir, n_train, epochs, threads, str(device), barrier, results)
        )
        for _ in range(n_jobs)
    ]
    for worker in workers:
        worker.start()
    seconds = [s for _ in workers for s in results.get(timeout=PARALLEL_TIMEOUT_S)]
    for worker in workers:
        worker.join()
    return {"jobs": n_jobs, "threads_per_job": threads, "s_per_epoch_each": round(statistics.median(seconds), 4)}

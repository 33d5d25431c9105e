"""Speed benchmark: our training path against a plain PyTorch loop and the FLOP lower bound.

    python -m itsr.bench [--epochs 4] [--repeats 3] [--threads N] [--device cpu|cuda] [--out FILE]

Everything is measured in one process run, so the ratios compare like with like. Prints a table and
writes JSON (default results/bench/latest.json). The plain loop below is the reference: the same
networks and losses over in-memory tensor slices, with no Lightning, no DataLoader.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch

from itsr.data.datamodule import BenchmarkDataModule
from itsr.data.fetch import default_data_dir
from itsr.io import write_json_atomic
from itsr.models.base import discriminator_loss, generator_loss, weighted_mean
from itsr.noise import silence_third_party_noise
from itsr.refinement import detect_candidates
from itsr.run import CONFIG_DIR, available_cores
from itsr.scoring import reconstruction_error

DEFAULT_OUT = Path("results/bench/latest.json")
MATMUL_SHAPE = (128, 1000, 1000)  # the hidden layers' shape at batch 128
PAPER_SCHEDULES = {  # epochs, Sec. 5
    "itsr_mnist": 500 + 10 * 100 + 1000,
    "itsr_fmnist": 500 + 10 * 100 + 500,
    "ae_mnist": 4000,
    "ae_fmnist": 10000,
}
SVM_SIZES = (6_000, 60_000, 600_000)
EXACT_SVM_MAX = 60_000  # libsvm's one-class SVM grows about quadratically; 600k would take hours
PLANTED_FRACTION = 0.05


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_flops_per_s(device: torch.device, repeats: int = 20) -> float:
    """Throughput of the networks' dominant operation, measured here and now."""
    m, k, n = MATMUL_SHAPE
    a, b = torch.randn(m, k, device=device), torch.randn(k, n, device=device)
    for _ in range(3):
        a @ b
    sync(device)
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(repeats):
            a @ b
        sync(device)
        best = min(best, (time.perf_counter() - start) / repeats)
    return 2.0 * m * k * n / best


def linear_macs(sizes: list[int]) -> tuple[int, int]:
    """Multiply-accumulates per sample of an MLP: (all layers, first layer)."""
    macs = [a * b for a, b in zip(sizes[:-1], sizes[1:])]
    return sum(macs), macs[0]


def epoch_flops(kind: str, n: int, input_dim: int, hidden: list[int], latent: int, disc_hidden: list[int]) -> float:
    """FLOPs of one training epoch: forward = 1 MAC per weight, backward = 2 (weights + inputs), minus
    the input gradient of layers whose input needs none (images, detached codes, prior samples)."""
    enc, enc_first = linear_macs([input_dim, *hidden, latent])
    dec, _ = linear_macs([latent, *hidden[::-1], input_dim])
    if kind == "ae":
        per_sample = 3 * (enc + dec) - enc_first
    else:
        disc, disc_first = linear_macs([latent, *disc_hidden, 1])
        reconstruction = 3 * (enc + dec) - enc_first
        discriminator = 2 * (3 * disc - disc_first)  # prior samples + codes, no input gradients
        generator = 3 * enc - enc_first + 2 * disc  # discriminator frozen: forward + input gradients
        per_sample = reconstruction + discriminator + generator
    return 2.0 * per_sample * n  # 2 FLOPs per MAC


class EpochTimer(pl.Callback):
    def __init__(self, device: torch.device):
        self.device = device
        self.seconds: list[float] = []

    def on_train_epoch_start(self, trainer, pl_module):
        sync(self.device)
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module):
        sync(self.device)
        self.seconds.append(time.perf_counter() - self._start)


def build_module(kind: str, input_dim: int):
    """The modules a run builds, from the same config files."""
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("config", overrides=[f"model={kind}", "data_dir=unused"])
    return instantiate(cfg.model.module, input_dim=input_dim, _convert_="all"), cfg


def time_our_path(kind: str, dm: BenchmarkDataModule, epochs: int, device: torch.device) -> list[float]:
    """The real training path: the same LightningModule and DataModule that a run uses."""
    module, _ = build_module(kind, dm.input_dim)
    timer = EpochTimer(device)
    trainer = pl.Trainer(
        accelerator="gpu" if device.type == "cuda" else "cpu",
        devices=1,
        max_epochs=epochs + 1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer],
    )
    trainer.fit(module, datamodule=dm)
    return timer.seconds[1:]  # the first epoch warms up allocators and caches


def time_plain_loop(kind: str, x: torch.Tensor, batch_size: int, epochs: int, device: torch.device) -> list[float]:
    """Reference: the same networks and losses, a plain loop over in-memory tensor slices."""
    module, _ = build_module(kind, x.shape[1])
    module.to(device)
    x = x.to(device)
    weights = torch.ones(x.shape[0], device=device)
    enc, dec = module.encoder, module.decoder
    # the same optimizers as the module (fused Adam), so the ratio measures the framework alone
    optimizers = module.configure_optimizers()
    if kind == "ae":
        opt = optimizers
    else:
        disc = module.discriminator
        opt_rec, opt_disc, opt_gen = optimizers
    seconds = []
    for _ in range(epochs + 1):
        sync(device)
        start = time.perf_counter()
        order = torch.randperm(x.shape[0], device=device)
        for batch_idx in order.split(batch_size):
            xb, wb = x[batch_idx], weights[batch_idx]
            if kind == "ae":
                loss = weighted_mean(reconstruction_error(xb, dec(enc(xb))), wb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                continue
            z = enc(xb)
            loss = weighted_mean(reconstruction_error(xb, dec(z)), wb)
            opt_rec.zero_grad(set_to_none=True)
            loss.backward()
            opt_rec.step()
            codes = z.detach()
            lp, lc = disc(torch.randn_like(codes)), disc(codes)
            d_loss = discriminator_loss(lp, lc, wb)  # the module's own loss functions: no drift
            opt_disc.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_disc.step()
            for p in disc.parameters():
                p.requires_grad_(False)
            z_gen = enc(xb)
            g_loss = generator_loss(disc(z_gen), z_gen, wb)
            opt_gen.zero_grad(set_to_none=True)
            g_loss.backward()
            opt_gen.step()
            for p in disc.parameters():
                p.requires_grad_(True)
        sync(device)
        seconds.append(time.perf_counter() - start)
    return seconds[1:]


def planted_codes(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """2-D codes: N(0, I) plus a fraction of sparse, far outliers (Sec. 4.2's expectation)."""
    rng = np.random.default_rng(seed)
    n_out = int(n * PLANTED_FRACTION)
    normal = rng.normal(size=(n - n_out, 2))
    angle, radius = rng.uniform(0, 2 * np.pi, n_out), rng.uniform(3.5, 6.0, n_out)
    outliers = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)
    return np.concatenate([normal, outliers]), np.r_[np.zeros(n - n_out, bool), np.ones(n_out, bool)]


def time_svm(n: int, method: str) -> dict:
    codes, truth = planted_codes(n)
    start = time.perf_counter()
    flagged = detect_candidates(codes, np.zeros(n, bool), nu=0.02, method=method)
    seconds = time.perf_counter() - start
    return {
        "n": n,
        "method": method,
        "seconds": seconds,
        "planted_found": int((flagged & truth).sum()),
        "planted": int(truth.sum()),
        "flagged": int(flagged.sum()),
    }


@dataclass
class Row:
    name: str
    value: str


def current_rss_mb() -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _parallel_worker(kind: str, data_dir: str, epochs: int, threads: int, device: str, barrier, results) -> None:
    torch.set_num_threads(threads)
    dm = BenchmarkDataModule("mnist", 0, 2, 0.05, 0, data_dir, batch_size=128)
    dm.setup()
    barrier.wait()  # all jobs train at the same time
    results.put(time_our_path(kind, dm, epochs, torch.device(device)))


def parallel_jobs(kind: str, n_jobs: int, data_dir: str, epochs: int, device: torch.device) -> dict:
    """n_jobs runs at once in separate processes, each with its share of the cores (the parallel
    launcher's setup): seconds per epoch of each while all of them train."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(n_jobs), ctx.Queue()
    threads = max(1, torch.get_num_threads() // n_jobs)
    workers = [
        ctx.Process(target=_parallel_worker, args=(kind, data_dir, epochs, threads, str(device), barrier, results))
        for _ in range(n_jobs)
    ]
    for worker in workers:
        worker.start()
    seconds = [s for _ in workers for s in results.get(timeout=1800)]
    for worker in workers:
        worker.join()
    return {"jobs": n_jobs, "threads_per_job": threads, "s_per_epoch_each": round(statistics.median(seconds), 4)}


class RssSampler(pl.Callback):
    def __init__(self):
        self.rss_mb: list[float] = []

    def on_train_epoch_end(self, trainer, pl_module):
        self.rss_mb.append(round(current_rss_mb(), 1))


def itsr_memory(dm: BenchmarkDataModule, device: torch.device) -> dict:
    """RSS per epoch over a short ITSR schedule with all three phases: it must stay flat."""
    from itsr.refinement import ITSRRefinement

    module, cfg = build_module("itsr", dm.input_dim)
    ref = dict(cfg.model.refinement)
    ref.update(pretrain_epochs=3, rounds=3, round_epochs=2, retrain_epochs=3)
    callback = ITSRRefinement(**ref, score_batch_size=2048)
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
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m itsr.bench", description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=4, help="timed epochs per repeat (after one warm-up)")
    parser.add_argument("--repeats", type=int, default=2, help="alternating repeats of ours vs plain")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--data-dir", default=str(default_data_dir()))
    parser.add_argument("--parallel-jobs", type=int, default=2, help="jobs at once for the parallel-launcher check")
    parser.add_argument("--skip-svm-scaling", action="store_true", help="skip the 6k/60k/600k SVM timing")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--show", type=Path, help="print the table of a benchmark JSON written earlier, run nothing")
    args = parser.parse_args(argv)
    silence_third_party_noise()
    if args.show:
        result = json.loads(args.show.read_text())
        print_table(result)
        return result

    torch.set_num_threads(args.threads or available_cores())
    device = torch.device(args.device)
    pl.seed_everything(0)
    dm = BenchmarkDataModule("mnist", 0, 2, 0.05, 0, args.data_dir, batch_size=128)
    dm.prepare_data()
    dm.setup()
    flops_per_s = matmul_flops_per_s(device)
    result: dict = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "n_train": len(dm.train),
        "batch_size": dm.batch_size,
        "matmul_gflops": round(flops_per_s / 1e9, 1),
        "models": {},
    }
    for kind in ("ae", "aae"):
        ours, plain = [], []
        for _ in range(args.repeats):  # alternate, so drift in machine load hits both alike
            ours += time_our_path(kind, dm, args.epochs, device)
            plain += time_plain_loop(kind, dm.train.x, dm.batch_size, args.epochs, device)
        module, cfg = build_module(kind, dm.input_dim)
        hp = cfg.model.module
        flops = epoch_flops(
            kind, len(dm.train), dm.input_dim, list(hp.hidden), hp.latent_dim, list(hp.get("disc_hidden", []))
        )
        s, s_plain, s_bound = statistics.median(ours), statistics.median(plain), flops / flops_per_s
        result["models"][kind] = {
            "s_per_epoch": round(s, 4),
            "s_per_epoch_plain": round(s_plain, 4),
            "s_per_epoch_bound": round(s_bound, 4),
            "ratio_vs_plain": round(s / s_plain, 3),
            "ratio_vs_bound": round(s / s_bound, 3),
            "gflop_per_epoch": round(flops / 1e9, 1),
            "samples_ours": [round(v, 4) for v in ours],
            "samples_plain": [round(v, 4) for v in plain],
        }
    for kind in ("ae", "aae"):
        single = result["models"][kind]["s_per_epoch"]
        par = parallel_jobs(kind, args.parallel_jobs, args.data_dir, args.epochs, device)
        par["throughput_gain"] = round(par["jobs"] * single / par["s_per_epoch_each"], 3)
        result["models"][kind]["parallel"] = par
    aae_epoch = result["models"]["aae"]["s_per_epoch"]
    ae_epoch = result["models"]["ae"]["s_per_epoch"]

    module, _ = build_module("aae", dm.input_dim)
    module.to(device)
    start = time.perf_counter()
    codes = module.score(dm.train.x, 2048)["code"].double().numpy()
    detect_candidates(codes, np.zeros(len(codes), bool), nu=0.02)
    round_s = time.perf_counter() - start
    result["refinement_round_s"] = round(round_s, 3)
    result["refinement_round_vs_100_epochs"] = round(round_s / (100 * aae_epoch), 4)
    result["projected_paper_wall_h"] = {
        name: round(epochs * (ae_epoch if name.startswith("ae") else aae_epoch) / 3600, 2)
        for name, epochs in PAPER_SCHEDULES.items()
    }
    result["memory"] = itsr_memory(dm, device) | {"peak_rss_mb": round(peak_rss_mb(), 1)}
    if not args.skip_svm_scaling:
        svm = []
        for n in SVM_SIZES:
            for method in ("exact", "nystroem"):
                if method == "exact" and n > EXACT_SVM_MAX:
                    svm.append({"n": n, "method": method, "seconds": None, "note": "not run: quadratic growth"})
                    continue
                svm.append(time_svm(n, method))
        result["svm_scaling"] = svm
    write_json_atomic(args.out, result)
    print_table(result)
    print(f"written: {args.out}")
    return result


def print_table(r: dict) -> None:
    print(
        f"itsr benchmark, {r['date']}, {r['device']}, torch {r['torch']}, {r['threads']} threads, "
        f"n_train {r['n_train']}, batch {r['batch_size']}, matmul {r['matmul_gflops']} GFLOP/s"
    )
    print(f"{'model':<6} {'ours s/ep':>10} {'plain s/ep':>11} {'bound s/ep':>11} {'ours/plain':>11} {'ours/bound':>11}")
    for kind, m in r["models"].items():
        print(
            f"{kind:<6} {m['s_per_epoch']:>10.3f} {m['s_per_epoch_plain']:>11.3f} {m['s_per_epoch_bound']:>11.3f} "
            f"{m['ratio_vs_plain']:>11.3f} {m['ratio_vs_bound']:>11.3f}"
        )
    for kind, m in r["models"].items():
        if "parallel" in m:
            p = m["parallel"]
            print(
                f"{kind}: {p['jobs']} jobs at once, {p['threads_per_job']} thread(s) each: {p['s_per_epoch_each']:.3f} "
                f"s/epoch each = {p['throughput_gain']:.2f}x the epochs per second of one job alone"
            )
    print(
        f"refinement round (encode + one-class SVM): {r['refinement_round_s']:.2f} s = "
        f"{100 * r['refinement_round_vs_100_epochs']:.2f}% of the 100 epochs it precedes"
    )
    mem = r["memory"]
    print(
        f"ITSR RSS per epoch (MB): {mem['rss_mb_per_epoch']}; growth after round 1: "
        f"{mem['growth_mb_after_first_round']} MB; peak RSS of this process {mem['peak_rss_mb']} MB"
    )
    print(
        "projected wall time at the paper's schedules (h): "
        + ", ".join(f"{k} {v}" for k, v in r["projected_paper_wall_h"].items())
    )
    for row in r.get("svm_scaling", []):
        if row["seconds"] is None:
            print(f"one-class SVM {row['method']:<9} n={row['n']:>7}: {row['note']}")
        else:
            print(
                f"one-class SVM {row['method']:<9} n={row['n']:>7}: {row['seconds']:7.2f} s, "
                f"found {row['planted_found']}/{row['planted']} planted, flagged {row['flagged']}"
            )


if __name__ == "__main__":
    main()

"""The FLOP lower bound of an epoch: its matmul FLOPs, and the matmul rate measured here and now.

The rate is measured in short bursts interleaved with the timed epochs (RateProbe), not once before
them: on a busy machine one early measurement can be far off the rate the epochs actually got, and
the bound then says nothing. The bound uses the best burst; a wide spread between bursts is reported.
"""

from __future__ import annotations

import time

import torch

MATMUL_SHAPE = (128, 1000, 1000)  # the hidden layers' shape at batch 128
BURST_MATMULS = 10  # matmuls per timed burst: about 30 ms in fp32 on one busy core
BURST_TRIES = 3  # bursts per probe; the best counts (a burst that lost the core is not the rate)
WARMUP_MATMULS = 3  # first calls pick kernels and fault in pages
# Best over worst rate of one dtype's probes above which the bounds are called uncertain: a machine
# that gives the same process 1.5x less throughput from one epoch to the next is shared.
SPREAD_LIMIT = 1.5
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_flops_per_s(
    device: torch.device, dtype: torch.dtype = torch.float32, matmuls: int = BURST_MATMULS, tries: int = BURST_TRIES
) -> float:
    """Throughput of the networks' dominant operation in `dtype`, best of `tries` short bursts."""
    m, k, n = MATMUL_SHAPE
    a, b = torch.randn(m, k, device=device, dtype=dtype), torch.randn(k, n, device=device, dtype=dtype)
    for _ in range(WARMUP_MATMULS):
        a @ b
    sync(device)
    best = float("inf")
    for _ in range(tries):
        start = time.perf_counter()
        for _ in range(matmuls):
            a @ b
        sync(device)
        best = min(best, (time.perf_counter() - start) / matmuls)
    return 2.0 * m * k * n / best


class RateProbe:
    """Matmul rates per dtype, one burst each time `probe()` is called (before every timed epoch)."""

    def __init__(self, device: torch.device, dtypes: dict[str, torch.dtype] = DTYPES):
        self.device = device
        self.dtypes = dtypes
        self.samples: dict[str, list[float]] = {name: [] for name in dtypes}

    def probe(self) -> None:
        for name, dtype in self.dtypes.items():
            self.samples[name].append(matmul_flops_per_s(self.device, dtype))

    def best(self, name: str) -> float:
        return max(self.samples[name])


def rate_spread(samples: list[float]) -> float:
    """Best over worst of the repeats of one rate (1.0: all equal)."""
    return max(samples) / min(samples)


def spread_warnings(samples: dict[str, list[float]], limit: float = SPREAD_LIMIT) -> list[str]:
    """A warning per dtype whose matmul rate varied by more than `limit` (best/worst) across repeats."""
    warnings = []
    for name, values in samples.items():
        if len(values) > 1 and rate_spread(values) > limit:
            warnings.append(
                f"{name} matmul rate varied {rate_spread(values):.2f}x (best/worst of {len(values)} repeats, "
                f"{min(values) / 1e9:.0f} to {max(values) / 1e9:.0f} GFLOP/s, limit {limit}x): "
                "machine busy, bounds are uncertain"
            )
    return warnings


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

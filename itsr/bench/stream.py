"""The memory term of the honest bound: bytes every optimizer step streams through memory.

At batch 128 the FLOP bound alone is not the floor: each Adam step reads and writes every parameter
it updates (weight, gradient, two moments), and in bf16 autocast casts every weight a forward uses.
Those bytes, at the memory bandwidth measured here and now, give a time no epoch can beat either;
`make bench` reports the FLOP term, this term and the ratio of an epoch to their sum.
"""

from __future__ import annotations

import math
import time

import torch

from itsr.bench.matmul import linear_macs, sync

FP32_BYTES, BF16_BYTES = 4, 2
# Fused Adam per parameter and step: read weight, gradient, exp_avg, exp_avg_sq; write weight, exp_avg,
# exp_avg_sq; plus the gradient's write in the backward pass: 8 fp32 values.
ADAM_BYTES_PER_PARAM = 8 * FP32_BYTES
# bf16 autocast: each forward reads the fp32 weight and writes its bf16 copy (itsr drops the copies
# after every optimizer step, so each step's forwards cast again).
CAST_BYTES_PER_PARAM = FP32_BYTES + BF16_BYTES
STREAM_ELEMENTS = 16 * 2**20  # 64 MiB of fp32 per buffer: far beyond the caches
STREAM_TRIES = 5


def mlp_params(sizes: list[int]) -> int:
    """Weights and biases of an MLP with these layer sizes (batch norm's few parameters left out)."""
    macs, _ = linear_macs(sizes)
    return macs + sum(sizes[1:])


def epoch_bytes(
    kind: str,
    n: int,
    batch_size: int,
    input_dim: int,
    hidden: list[int],
    latent: int,
    disc_hidden: list[int],
    bf16: bool,
) -> float:
    """Bytes the optimizer steps (and, in bf16, the weight casts) stream in one epoch."""
    enc = mlp_params([input_dim, *hidden, latent])
    dec = mlp_params([latent, *hidden[::-1], input_dim])
    if kind == "ae":
        stepped, cast = enc + dec, enc + dec
    else:
        disc = mlp_params([latent, *disc_hidden, 1])
        # reconstruction steps encoder + decoder, discriminator its own, generator the encoder;
        # forwards: encoder + decoder (step 1), discriminator twice (step 2), encoder + discriminator (step 3)
        stepped, cast = (enc + dec) + disc + enc, (enc + dec) + disc + (enc + disc)
    per_step = stepped * ADAM_BYTES_PER_PARAM + (cast * CAST_BYTES_PER_PARAM if bf16 else 0)
    return math.ceil(n / batch_size) * per_step


def stream_bytes_per_s(device: torch.device, elements: int = STREAM_ELEMENTS, tries: int = STREAM_TRIES) -> float:
    """Memory bandwidth as a copy between two large buffers sees it (read + write), best of `tries`."""
    source = torch.rand(elements, device=device)
    target = torch.empty_like(source)
    target.copy_(source)
    sync(device)
    best = float("inf")
    for _ in range(tries):
        start = time.perf_counter()
        target.copy_(source)
        sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * elements * FP32_BYTES / best

"""Would k runs trained together in one process pay? (issue 24: `k_runs_speedup`)

k independent AEs (the paper's 784-1000-1000-32 networks, each with its own initialisation, shuffle and
Adam state) trained for one epoch one after the other, against the same k trained together: their
weights stacked along a new first dimension (`torch.func.stack_module_state`), one `vmap`-ed forward
and backward over a [k, batch, 784] input (each model its own batch), and one fused Adam over the
stacked weights, which is k independent Adams elementwise. Both in the plain loop of `itsr.bench.loop`
(no Lightning), same threads, same precision. The AE only: the AAE's batch norm updates running
statistics in place, which `vmap` does not batch without rewriting the modules.

`k_runs_speedup` = (seconds of the k separate epochs) / (seconds of the k-together epoch). Above 1 it
would pay to build the k-runs path into `itsr.run`; the benchmark measures before anything is built.
"""

from __future__ import annotations

import copy
import statistics
import time

import torch
from torch import nn

from itsr.bench.loop import WARMUP_EPOCHS, autocast
from itsr.bench.matmul import sync
from itsr.models.base import adam
from itsr.nets import Decoder, Encoder
from itsr.scoring import reconstruction_error

AE_HIDDEN = (1000, 1000)  # Sec. 5, as conf/model/ae.yaml
AE_LATENT = 32
AE_LR, AE_BETAS = 1.0e-3, (0.9, 0.999)  # conf/model/ae.yaml


def autoencoder(input_dim: int) -> nn.Sequential:
    return nn.Sequential(
        Encoder(input_dim, AE_HIDDEN, AE_LATENT, batch_norm=False), Decoder(AE_LATENT, AE_HIDDEN, input_dim)
    )


def separate_step(model: nn.Module, optimizer, xb: torch.Tensor, device, precision: str) -> None:
    """One AE step, as the plain loop of itsr.bench.loop takes it."""
    with autocast(device, precision):
        loss = reconstruction_error(xb, model(xb)).mean()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def stacked(models: list[nn.Module]):
    """(forward, params): the models' weights stacked along a first dimension of size k (copies), and a
    vmap-ed forward taking them and a [k, batch, features] input."""
    from torch.func import functional_call, stack_module_state, vmap

    template = copy.deepcopy(models[0]).to("meta")
    params, _ = stack_module_state(models)

    def one(p, xb):
        return functional_call(template, p, (xb,))

    return vmap(one), params


def together_step(forward, params: dict, optimizer, xb: torch.Tensor, device, precision: str) -> None:
    """One step of k AEs at once; xb is [k, batch, features], one batch per model. The loss is the sum
    over models of each model's batch mean, so each model's gradient is that of its own loss."""
    k = xb.shape[0]
    with autocast(device, precision):
        out = forward(params, xb)
        loss = reconstruction_error(xb.flatten(0, 1), out.flatten(0, 1)).view(k, -1).mean(dim=1).sum()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def _epoch_separate(models, optimizers, x, batch_size, device, precision) -> float:
    sync(device)
    start = time.perf_counter()
    for model, optimizer in zip(models, optimizers):
        for idx in torch.randperm(x.shape[0], device=device).split(batch_size):
            separate_step(model, optimizer, x[idx], device, precision)
    sync(device)
    return time.perf_counter() - start


def _epoch_together(forward, params, optimizer, x, k, batch_size, device, precision) -> float:
    n = x.shape[0]
    sync(device)
    start = time.perf_counter()
    orders = torch.stack([torch.randperm(n, device=device) for _ in range(k)])  # each model its own shuffle
    for step in range(0, n, batch_size):
        together_step(forward, params, optimizer, x[orders[:, step : step + batch_size]], device, precision)
    sync(device)
    return time.perf_counter() - start


def k_runs_speedup(
    x: torch.Tensor, k: int, batch_size: int, epochs: int, device: torch.device, precision: str = "32-true"
) -> dict:
    """Seconds per epoch of k AEs trained one after the other and trained together, and their ratio."""
    x = x.to(device)
    models = [autoencoder(x.shape[1]).to(device) for _ in range(k)]
    forward, params = stacked(models)  # copies: the separate models below keep their own weights
    together_opt = adam(params.values(), AE_LR, AE_BETAS)
    separate_opts = [adam(m.parameters(), AE_LR, AE_BETAS) for m in models]
    separate, together = [], []
    for epoch in range(epochs + WARMUP_EPOCHS):  # alternate, so both see the same machine load
        s = _epoch_separate(models, separate_opts, x, batch_size, device, precision)
        t = _epoch_together(forward, params, together_opt, x, k, batch_size, device, precision)
        if epoch >= WARMUP_EPOCHS:
            separate.append(s)
            together.append(t)
    s_sep, s_tog = statistics.median(separate), statistics.median(together)
    return {
        "k": k,
        "precision": precision,
        "s_per_epoch_k_separate": round(s_sep, 4),
        "s_per_epoch_k_together": round(s_tog, 4),
        "k_runs_speedup": round(s_sep / s_tog, 3),
        "samples_k_separate": [round(v, 4) for v in separate],
        "samples_k_together": [round(v, 4) for v in together],
    }

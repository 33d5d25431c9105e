"""The k-runs benchmark compares equal work: k AEs stepped together take the same steps as k alone."""

from __future__ import annotations

import torch

from itsr.bench.kruns import autoencoder, separate_step, stacked, together_step
from itsr.models.base import adam


def test_k_models_stepped_together_equal_k_models_stepped_alone() -> None:
    torch.manual_seed(0)
    k, features = 3, 24
    models = [autoencoder(features) for _ in range(k)]
    forward, params = stacked(models)
    assert all(v.shape[0] == k for v in params.values())
    batches = torch.rand(k, 16, features)  # each model its own batch
    together = adam(params.values(), 1e-3, (0.9, 0.999))
    alone = [adam(m.parameters(), 1e-3, (0.9, 0.999)) for m in models]
    cpu = torch.device("cpu")
    for _ in range(3):
        together_step(forward, params, together, batches, cpu, "32-true")
        for i, model in enumerate(models):
            separate_step(model, alone[i], batches[i], cpu, "32-true")
    for i, model in enumerate(models):
        for name, value in model.named_parameters():
            torch.testing.assert_close(params[name][i], value, rtol=1e-4, atol=1e-6)
    # and the models did move, differently from each other (independent initialisations and batches)
    first = dict(models[0].named_parameters())
    assert not torch.allclose(params["0.net.0.weight"][1], first["0.net.0.weight"])

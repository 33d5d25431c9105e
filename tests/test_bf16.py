"""bf16-mixed training computes what fp32 computes, up to rounding: no stale weights between steps."""

from __future__ import annotations

import torch

from itsr.models.base import drop_stale_casts


def _step_then_forward(drop: bool) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    layer = torch.nn.Linear(4, 3)
    x = torch.randn(2, 4)
    optimizer = torch.optim.SGD(layer.parameters(), lr=1.0)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # one context around several steps, as Lightning's
        before = layer(x)
        before.float().sum().backward()
        optimizer.step()
        if drop:
            drop_stale_casts()
        after = layer(x)
    return before, after


def test_autocast_reuses_stale_weights_without_the_drop() -> None:
    """The hazard itself: autocast's cast cache hides an in-place weight update (torch 2.x)."""
    before, after = _step_then_forward(drop=False)
    assert torch.equal(before, after)


def test_dropping_the_casts_makes_the_next_forward_see_the_update() -> None:
    before, after = _step_then_forward(drop=True)
    assert not torch.equal(before, after)


def test_dropping_the_casts_outside_autocast_is_harmless() -> None:
    layer = torch.nn.Linear(4, 3)
    x = torch.randn(2, 4)
    expected = layer(x)
    drop_stale_casts()
    assert torch.equal(layer(x), expected)

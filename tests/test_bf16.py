"""bf16-mixed training computes what fp32 computes, up to rounding: no stale weights between steps; and on a
CPU without native bf16 its matrix products through fp32 GEMMs are native bf16's, not fp32's."""

from __future__ import annotations

import pytest
import torch

from itsr.bf16_matmul import (
    MATMULS,
    NATIVE,
    VIA_FP32,
    Bf16MatmulViaFp32,
    bf16_matmuls,
    compile_conflict,
    route,
    slow_route_warning,
)
from itsr.models.base import drop_stale_casts
from tests.conftest import run_itsr, tiny_overrides


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


def count_routed(monkeypatch) -> dict:
    """Counts the products the route takes over ({'forward': n, 'backward': n}, by whether autograd's engine
    is running), as a spy around Bf16MatmulViaFp32.__torch_dispatch__."""
    counts = {"forward": 0, "backward": 0}
    original = Bf16MatmulViaFp32.__torch_dispatch__

    def spy(self, func, types, args=(), kwargs=None):
        if func in MATMULS and any(isinstance(a, torch.Tensor) and a.dtype == torch.bfloat16 for a in args):
            counts["backward" if torch._C._current_graph_task_id() >= 0 else "forward"] += 1
        return original(self, func, types, args, kwargs)

    monkeypatch.setattr(Bf16MatmulViaFp32, "__torch_dispatch__", spy)
    return counts


def _linear_step(chosen: str | None) -> tuple[torch.Tensor, ...]:
    """A paper-sized layer's forward and backward under bf16 autocast: output, weight and input gradients,
    and the layer's bias."""
    torch.manual_seed(0)
    layer = torch.nn.Linear(784, 1000)
    x = torch.randn(128, 784, requires_grad=True)
    with bf16_matmuls(chosen), torch.autocast("cpu", dtype=torch.bfloat16):
        out = layer(x)
        (out.float() ** 2).mean().backward()
    return out, layer.weight.grad, x.grad, layer.bias.detach()


def test_bf16_products_through_fp32_gemms_are_native_bf16_products() -> None:
    """The route changes only fp32 summation order: the output stays bf16, nearly every element equals the
    native kernel's bit for bit and none differs by more than one bf16 step; the gradients agree to bf16
    rounding. What it must not do is compute in fp32: the output differs from the fp32 layer's at bf16's scale."""
    native_out, native_w, native_x, bias = _linear_step(NATIVE)
    out, grad_w, grad_x, _ = _linear_step(VIA_FP32)
    assert out.dtype == torch.bfloat16
    assert (out == native_out).float().mean() > 0.99
    # one step of bf16 (8 significant bits) at the product's scale: a kernel may round the product before it
    # adds the bias, and where the bias cancels the product that step exceeds the output's own
    one_step = (native_out.float().abs() + bias.abs()) * 2.0**-7
    assert ((out.float() - native_out.float()).abs() <= one_step).all()
    torch.testing.assert_close(grad_w, native_w, rtol=2**-6, atol=1e-6)
    torch.testing.assert_close(grad_x, native_x, rtol=2**-6, atol=1e-6)
    torch.manual_seed(0)
    fp32_layer = torch.nn.Linear(784, 1000)
    fp32_out = fp32_layer(torch.randn(128, 784))
    assert (out.float() - fp32_out).abs().max() > 1e-3  # bf16 operands, not fp32 ones


def test_the_route_takes_the_products_of_forward_and_backward_and_only_where_it_is_chosen(monkeypatch) -> None:
    counts = count_routed(monkeypatch)
    _linear_step(VIA_FP32)
    assert counts["forward"] >= 1 and counts["backward"] >= 2  # addmm; the input's and the weight's gradients
    before = dict(counts)
    _linear_step(NATIVE)
    _linear_step(None)
    assert counts == before


def test_the_route_computes_the_fp32_product_of_the_bf16_operands_and_leaves_fp32_alone() -> None:
    torch.manual_seed(0)
    a, b, bias = torch.randn(64, 300).bfloat16(), torch.randn(300, 200).bfloat16(), torch.randn(200).bfloat16()
    # the same fp32 kernels on the same operands, so bit for bit on any CPU
    expected_mm = torch.mm(a.float(), b.float()).bfloat16()
    expected_addmm = torch.addmm(bias.float(), a.float(), b.float()).bfloat16()
    expected_bmm = torch.bmm(a.float()[None], b.float()[None]).bfloat16()
    with bf16_matmuls(VIA_FP32):
        assert torch.equal(torch.mm(a, b), expected_mm)
        assert torch.equal(torch.addmm(bias, a, b), expected_addmm)
        assert torch.equal(torch.bmm(a[None], b[None]), expected_bmm)
        fp32 = torch.mm(a.float(), b.float())
        with pytest.raises(RuntimeError, match="same dtype"):  # mixed operands: refused as torch refuses them
            torch.mm(a, b.float())
    assert torch.equal(fp32, torch.mm(a.float(), b.float()))


@pytest.mark.parametrize(
    ("choice", "precision", "device", "native", "expected"),
    [
        ("auto", "bf16-mixed", "cpu", False, VIA_FP32),  # the AVX2-only CPU: the fast route
        ("auto", "bf16-mixed", "cpu", True, NATIVE),  # AMX / AVX512-BF16: torch's own kernels
        ("auto", "bf16-mixed", "cpu", None, NATIVE),  # flags unknown: no guess
        ("fp32", "bf16-mixed", "cpu", True, VIA_FP32),
        ("native", "bf16-mixed", "cpu", False, NATIVE),
        ("auto", "32-true", "cpu", False, None),  # no bf16 products at all
        ("fp32", "bf16-mixed", "cuda", False, None),  # a GPU multiplies bf16 itself
    ],
)
def test_the_route_follows_the_choice_the_precision_and_the_cpu(choice, precision, device, native, expected) -> None:
    assert route(choice, precision, device, native) == expected


def test_an_unknown_choice_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="cpu_bf16_matmul must be one of auto, fp32, native, got 'fast'"):
        route("fast", "bf16-mixed", "cpu", False)


def test_torchs_own_kernels_warn_only_on_a_cpu_that_would_emulate_them() -> None:
    assert "cpu_bf16_matmul=auto" in slow_route_warning(NATIVE, False)
    assert slow_route_warning(NATIVE, True) is None
    assert slow_route_warning(NATIVE, None) is None  # flags unknown: no guess
    assert slow_route_warning(VIA_FP32, False) is None
    assert slow_route_warning(None, False) is None


def test_the_route_and_torch_compile_exclude_each_other() -> None:
    """torch.compile skips every frame under a dispatch mode: refused with the way out, not silently eager."""
    assert "compile.enabled=false" in compile_conflict(VIA_FP32, True)
    assert compile_conflict(VIA_FP32, False) is None
    assert compile_conflict(NATIVE, True) is None
    assert compile_conflict(None, True) is None


def test_compiling_under_the_route_is_refused_from_the_command_line_before_any_training(tmp_path) -> None:
    run_dir = tmp_path / "run"
    done = run_itsr(
        *tiny_overrides("ae"),
        "experiment=quick",
        "trainer.precision=bf16-mixed",
        "cpu_bf16_matmul=fp32",
        "compile.enabled=true",
        f"hydra.run.dir={run_dir}",
        timeout=300,
    )
    assert done.returncode == 1, done.stderr[-2000:]
    assert "compile.enabled=false" in done.stderr and "Traceback" not in done.stderr
    assert not (run_dir / "metrics.json").exists() and not (run_dir / "checkpoints").exists()

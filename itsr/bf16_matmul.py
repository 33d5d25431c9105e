"""bf16 matrix products on a CPU without native bf16, through fp32 GEMMs: the same numbers, many times faster.

Under trainer.precision=bf16-mixed, autocast casts the Linear layers' operands to bf16 and torch multiplies
them with its bf16 kernels. A CPU without avx512_bf16 or amx_bf16 has no such instructions and torch emulates
them: 2.3 against 75 GFLOP/s for fp32 on an AVX2-only AMD EPYC, a bf16 epoch 11-13x slower than an fp32 one
(results/bench). Yet a product of two bf16 numbers is exact in fp32 (8 + 8 significant bits, fp32 holds 24),
and a native bf16 GEMM sums those products in fp32 and rounds the sum to bf16. So casting the bf16 operands
to fp32, multiplying with fp32 GEMMs and rounding the result to bf16 computes the native result up to fp32
summation order: the freedom two CPUs' native kernels (AMX, AVX512-BF16) already have. Everything else
(which ops run in bf16, the casts, the fp32 master weights) stays autocast's. `make bench` measures the
route against torch's kernels (bf16_route_speedup; results/bench).

The route is a TorchDispatchMode, entered around training only when it applies (`route`): fp32 runs, GPU runs
and CPUs with native bf16 never see it. torch.compile skips every frame while such a mode is on, so the
route and compile.enabled exclude each other (`compile_conflict`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from itsr.provenance import BF16_CPU_FLAGS

CHOICES = ("auto", "fp32", "native")  # the config key cpu_bf16_matmul (conf/config.yaml)
VIA_FP32 = "fp32-gemm"  # how provenance names the route: bf16 operands multiplied by fp32 GEMMs
NATIVE = "native"  # torch's own bf16 kernels (native instructions, or torch's emulation of them)
_aten = torch.ops.aten
MATMULS = frozenset({_aten.mm.default, _aten.addmm.default, _aten.bmm.default, _aten.baddbmm.default})


class Bf16MatmulViaFp32(TorchDispatchMode):
    """Runs every bf16 matrix product (mm, addmm, bmm, baddbmm, all operands bf16) in fp32 and rounds the
    result to bf16 once; every other op passes through unchanged (each op pays a Python call while the mode
    is on, which is why it is entered only where it applies)."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in MATMULS:  # the membership test first: every other op passes through at once
            tensors = [a for a in args if isinstance(a, torch.Tensor)]
            if tensors and all(t.dtype == torch.bfloat16 for t in tensors):  # mixed dtypes: torch refuses them
                result = func(*(a.float() if isinstance(a, torch.Tensor) else a for a in args), **(kwargs or {}))
                return result.to(torch.bfloat16)
        return func(*args, **(kwargs or {}))


def route(choice: str, precision: str, device_type: str, native: bool | None) -> str | None:
    """How this run's bf16 matrix products go: VIA_FP32 or NATIVE, or None where it has none on a CPU (fp32
    runs, GPU runs). `choice`: cpu_bf16_matmul; `native`: itsr.provenance.cpu_bf16_native() (None: unknown,
    which auto treats as native)."""
    if choice not in CHOICES:
        raise ValueError(f"cpu_bf16_matmul must be one of {', '.join(CHOICES)}, got {choice!r}")
    if not precision.startswith("bf16") or device_type != "cpu":
        return None
    if choice == "fp32" or (choice == "auto" and native is False):
        return VIA_FP32
    return NATIVE


def slow_route_warning(chosen: str | None, native: bool | None) -> str | None:
    """A warning where torch's own bf16 kernels were chosen (cpu_bf16_matmul=native) on a CPU that would
    emulate them: correct, but many times slower than fp32."""
    if chosen != NATIVE or native is not False:
        return None
    return (
        f"cpu_bf16_matmul=native on a CPU without native bf16 (none of {', '.join(BF16_CPU_FLAGS)} in "
        "/proc/cpuinfo): torch emulates bf16 matrix products there, many times slower than fp32 (11-13x per "
        "epoch measured on an AVX2-only AMD EPYC; `python -m itsr.bench` measures this machine); "
        "cpu_bf16_matmul=auto computes the same products through fp32 GEMMs, or train with trainer.precision=32-true"
    )


def compile_conflict(chosen: str | None, compile_enabled: bool) -> str | None:
    """Why the fp32 route and torch.compile cannot go together (None where they do not meet)."""
    if chosen != VIA_FP32 or not compile_enabled:
        return None
    return (
        "compile.enabled=true with bf16 products through fp32 GEMMs (cpu_bf16_matmul, a CPU without native "
        "bf16): torch.compile skips every frame under that route, so nothing would be compiled; set "
        "compile.enabled=false, or cpu_bf16_matmul=native to compile torch's own (slow, emulated) bf16 kernels"
    )


@contextmanager
def bf16_matmuls(chosen: str | None) -> Iterator[None]:
    """Within: bf16 matrix products through fp32 GEMMs if `chosen` is VIA_FP32, else torch's own kernels."""
    if chosen != VIA_FP32:
        yield
        return
    with Bf16MatmulViaFp32():
        yield

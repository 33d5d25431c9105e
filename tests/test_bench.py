"""The benchmark's arithmetic, its warning logic and its JSON (speed itself is measured by `make bench`)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from itsr.bench import epoch_flops, linear_macs, planted_codes, spread_warnings
from itsr.bench.matmul import SPREAD_LIMIT, rate_spread
from tests.conftest import DATA_DIR


def test_flop_count_of_the_paper_networks() -> None:
    assert linear_macs([784, 1000, 1000, 32]) == (784_000 + 1_000_000 + 32_000, 784_000)
    # AE: forward + backward (weights and inputs) of encoder and decoder, no input gradient for images
    per_sample = 3 * (1_816_000 + 1_816_000) - 784_000
    assert epoch_flops("ae", 10, 784, [1000, 1000], 32, []) == pytest.approx(2 * per_sample * 10)
    aae = epoch_flops("aae", 6235, 784, [1000, 1000], 2, [1000, 1000])
    assert 250e9 < aae < 330e9  # about 45 MFLOP per sample, three steps


def test_the_memory_term_counts_adam_and_the_casts_per_step() -> None:
    """Issue 24's honest bound: 32 bytes per stepped parameter (Adam), + 6 per cast parameter in bf16."""
    from itsr.bench.stream import epoch_bytes, mlp_params

    assert mlp_params([784, 1000, 32]) == 784 * 1000 + 1000 * 32 + 1000 + 32
    enc, dec = mlp_params([784, 1000, 1000, 32]), mlp_params([32, 1000, 1000, 784])
    steps = -(-6235 // 128)  # 49 steps an epoch
    assert epoch_bytes("ae", 6235, 128, 784, [1000, 1000], 32, [], bf16=False) == steps * 32 * (enc + dec)
    assert epoch_bytes("ae", 6235, 128, 784, [1000, 1000], 32, [], bf16=True) == steps * 38 * (enc + dec)
    # the AE's 3.6M parameters: about 116 MB an Adam step, 5.6 GB an epoch
    assert 5.5e9 < epoch_bytes("ae", 6235, 128, 784, [1000, 1000], 32, [], bf16=False) < 5.8e9
    aae = epoch_bytes("aae", 6235, 128, 784, [1000, 1000], 2, [1000, 1000], bf16=False)
    enc2, dec2, disc = (
        mlp_params([784, 1000, 1000, 2]),
        mlp_params([2, 1000, 1000, 784]),
        mlp_params([2, 1000, 1000, 1]),
    )
    assert aae == steps * 32 * (2 * enc2 + dec2 + disc)  # the encoder is stepped twice (reconstruction, generator)


def test_planted_codes_have_the_planted_fraction() -> None:
    codes, truth = planted_codes(1000)
    assert codes.shape == (1000, 2) and truth.sum() == 50


def test_repeats_that_agree_raise_no_warning() -> None:
    assert rate_spread([100e9, 90e9, 95e9]) == pytest.approx(100 / 90)
    assert spread_warnings({"fp32": [100e9, 90e9], "bf16": [400e9, 300e9]}) == []
    assert spread_warnings({"fp32": [30e9]}) == []  # one burst has no spread


def test_repeats_that_disagree_name_the_dtype_and_the_spread() -> None:
    warnings = spread_warnings({"fp32": [100e9, 95e9], "bf16": [400e9, 100e9]})
    assert len(warnings) == 1
    assert warnings[0].startswith("bf16 matmul rate varied 4.00x")
    assert "machine busy, bounds are uncertain" in warnings[0]
    # the limit is a ratio best/worst, strictly exceeded
    assert spread_warnings({"fp32": [SPREAD_LIMIT * 10e9, 10e9]}) == []
    assert len(spread_warnings({"fp32": [100e9, 10e9]}, limit=9.0)) == 1


@pytest.mark.skipif(not (DATA_DIR / "mnist").exists(), reason="needs the MNIST cache (python -m itsr.data fetch)")
def test_a_tiny_benchmark_writes_every_key(tmp_path, capsys, monkeypatch) -> None:
    """One timed epoch on 256 images, no parallel jobs, no SVM scaling: the keys, not the speed. As on a CPU
    without native bf16 (on any CPU): bf16 runs on the fp32-GEMM route, and torch's own kernels are timed too.
    --compile: our path timed again with the networks compiled (here the eager backend, no code generation)
    once per model in fp32; bf16 on the fp32-GEMM route is skipped with the route's reason."""
    from itsr.bench.__main__ import main
    from itsr.models.base import AnomalyModel

    monkeypatch.setattr("itsr.bench.__main__.cpu_bf16_native", lambda: False)
    compiled_with = []
    original = AnomalyModel.compile_networks

    def recording(self, **options):
        compiled_with.append(options)
        original(self, **options)

    monkeypatch.setattr(AnomalyModel, "compile_networks", recording)
    out = tmp_path / "bench.json"
    args = ["--epochs", "1", "--repeats", "1", "--threads", "1", "--n-train", "256", "--parallel-jobs", "0"]
    main([*args, "--compile", "backend=eager", "--skip-svm-scaling", "--data-dir", str(DATA_DIR), "--out", str(out)])
    result = json.loads(out.read_text())
    assert compiled_with == [{"backend": "eager"}] * 2  # AE and AAE, fp32 only
    for kind in ("ae", "aae"):
        m = result["models"][kind]
        c = m["compiled"]["backend=eager"]
        assert c["s_per_epoch"] > 0 and c["speedup"] == pytest.approx(m["s_per_epoch"] / c["s_per_epoch"], rel=2e-2)
        assert "s_per_epoch_bf16" not in c and "torch.compile skips every frame" in c["skipped_bf16"]
    assert result["n_train"] == 256
    for key in ("matmul_gflops", "matmul_gflops_bf16", "matmul_spread", "warnings"):
        assert key in result
    # a burst before every epoch, warm-up included: 2 models x (2 paths x 2 precisions + torch's bf16 kernels)
    # x 2 epochs
    assert len(result["matmul_samples_gflops"]["fp32"]) == len(result["matmul_samples_gflops"]["bf16"]) == 20
    assert result["bf16_matmul"] == "fp32-gemm"
    for kind in ("ae", "aae"):
        m = result["models"][kind]
        for key in ("s_per_epoch", "s_per_epoch_plain", "s_per_epoch_bound", "ratio_vs_plain", "ratio_vs_bound"):
            assert m[key] > 0 and m[f"{key}_bf16"] > 0
        assert m["speedup_bf16"] == pytest.approx(m["s_per_epoch"] / m["s_per_epoch_bf16"], rel=1e-2)
        assert m["ratio_vs_bound_bf16"] == pytest.approx(m["s_per_epoch_bf16"] / m["s_per_epoch_bound_bf16"], rel=1e-2)
        assert len(m["samples_ours_bf16"]) == len(m["samples_plain_bf16"]) == 1
        for suffix in ("", "_bf16"):  # the honest bound: FLOP term + memory term, and the ratio to their sum
            flop, memory = m[f"s_per_epoch_bound{suffix}"], m[f"s_per_epoch_memory_bound{suffix}"]
            assert memory > 0 and m[f"s_per_epoch_honest_bound{suffix}"] == pytest.approx(flop + memory, abs=2e-4)
            assert m[f"ratio_vs_honest_bound{suffix}"] == pytest.approx(
                m[f"s_per_epoch{suffix}"] / m[f"s_per_epoch_honest_bound{suffix}"], rel=2e-2
            )
        assert m["s_per_epoch_memory_bound_bf16"] > m["s_per_epoch_memory_bound"]  # the casts stream more
        assert m["bf16_route_speedup"] == pytest.approx(
            m["s_per_epoch_bf16_torch_kernels"] / m["s_per_epoch_bf16"], rel=2e-2
        )
    assert [d["model"] for d in result["denormal"]] == ["ae", "aae"]
    for d in result["denormal"]:
        assert d["adam_step_ms_kept"] > 0 and d["adam_step_ms_flushed"] > 0
        assert d["slowdown_kept"] == pytest.approx(d["adam_step_ms_kept"] / d["adam_step_ms_flushed"], rel=2e-2)
    for precision, k_runs in result["k_runs"].items():  # k AEs together vs one after the other, the ratio
        assert k_runs["k"] == 3 and len(k_runs["samples_k_together"]) == 1
        assert result["k_runs_speedup"][precision] == pytest.approx(
            k_runs["s_per_epoch_k_separate"] / k_runs["s_per_epoch_k_together"], rel=2e-2
        )
    printed = capsys.readouterr().out
    assert "bf16 speedup" in printed and "denormal" in printed and "honest bound" in printed
    assert "k runs in one process" in printed and "bf16 products through fp32 GEMMs" in printed
    assert "aae compiled (backend=eager): fp32" in printed
    assert result["stream_gbytes_per_s"] > 0


def test_an_unknown_compile_mode_is_named_with_the_choices() -> None:
    bad = subprocess.run(
        [sys.executable, "-m", "itsr.bench", "--compile", "default,fastest"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "'fastest' is not a torch.compile mode" in bad.stderr
    assert "reduce-overhead" in bad.stderr and "Traceback" not in bad.stderr

    from itsr.bench.__main__ import parse_args

    assert parse_args(["--compile", "reduce-overhead,backend=aot_eager"]).compile == [
        ("reduce-overhead", {"mode": "reduce-overhead"}),
        ("backend=aot_eager", {"backend": "aot_eager"}),
    ]

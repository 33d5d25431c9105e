"""Speed benchmark: our training path against a plain PyTorch loop and the FLOP lower bound, fp32 and bf16.

    python -m itsr.bench [--epochs 4] [--repeats 2] [--threads N] [--device cpu|cuda] [--out FILE]

Everything is measured in one process run, so the ratios compare like with like. Prints a table and
writes JSON (default results/bench/latest.json). The plain loop (itsr/bench/loop.py) is the
reference: the same networks, optimizers and losses over in-memory tensor slices, with no Lightning,
no DataLoader. The matmul rates behind the bounds are measured in a short burst before every timed
epoch; the bounds use the best burst, and a wide spread is reported as a warning. On CPU it also times
the optimizer step late in a long run, with denormal floats kept and flushed (itsr/bench/denormal.py).
With --compile MODES our path is timed again with its networks compiled, per torch.compile mode (a GPU
question: there a step is bound by kernel launches, results/bench/README.md).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import statistics
from pathlib import Path

import pytorch_lightning as pl
import torch

from itsr.atomic import write_json_atomic
from itsr.bench.denormal import denormal_figures
from itsr.bench.loop import (
    PRECISIONS,
    benchmark_data,
    benchmark_threads,
    build_module,
    parallel_jobs,
    time_our_path,
    time_plain_loop,
)
from itsr.bench.matmul import SPREAD_LIMIT, RateProbe, epoch_flops, rate_spread, spread_warnings
from itsr.bench.memory import itsr_memory
from itsr.bench.stream import epoch_bytes, stream_bytes_per_s
from itsr.bench.svm import refinement_round_s, svm_scaling
from itsr.bf16_matmul import NATIVE, VIA_FP32, compile_conflict, route
from itsr.cli import program_name
from itsr.data.fetch import default_data_dir
from itsr.library_warnings import silence_third_party_noise
from itsr.provenance import cpu_bf16_native

DEFAULT_OUT = Path("results/bench/latest.json")
PAPER_SCHEDULES = {  # epochs, Sec. 5
    "itsr_mnist": 500 + 10 * 100 + 1000,
    "itsr_fmnist": 500 + 10 * 100 + 500,
    "ae_mnist": 4000,
    "ae_fmnist": 10000,
}
EPOCHS_PER_ROUND = 100  # a refinement round precedes this many epochs (Sec. 5)
SECONDS_PER_HOUR = 3600
# torch.compile's modes (`--compile`); "backend=NAME" picks a backend instead (e.g. eager, aot_eager)
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def compile_spec(text: str) -> tuple[str, dict]:
    """One `--compile` item as (its name, torch.compile's options): a mode, or backend=NAME."""
    if text.startswith("backend="):
        return text, {"backend": text.removeprefix("backend=")}
    if text not in COMPILE_MODES:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a torch.compile mode; give one of {', '.join(COMPILE_MODES)} or backend=NAME"
        )
    return text, {"mode": text}


def compiled_figures(
    kind: str, dm, epochs: int, repeats: int, device: torch.device, bf16_route: str | None, specs, row: dict
) -> dict:
    """Our path with its networks compiled, per spec and precision: s/epoch and the speedup over the
    uncompiled path in `row`. On a GPU a step is bound by kernel launches (results/bench/README.md);
    compiling fuses them, and reduce-overhead replays them as CUDA graphs. A precision whose bf16 route
    excludes compile (itsr.bf16_matmul.compile_conflict) is skipped with the reason."""
    out: dict = {}
    for name, options in specs:
        figures: dict = {}
        for precision, suffix in SUFFIX.items():
            chosen = bf16_route if precision == "bf16-mixed" else None
            conflict = compile_conflict(chosen, True)
            if conflict:
                figures[f"skipped{suffix}"] = conflict
                continue
            samples = []
            for _ in range(repeats):
                samples += time_our_path(kind, dm, epochs, device, precision, None, chosen, options)
            s = statistics.median(samples)
            figures[f"s_per_epoch{suffix}"] = round(s, 4)
            figures[f"speedup{suffix}"] = round(row[f"s_per_epoch{suffix}"] / s, 3)
            figures[f"samples{suffix}"] = [round(v, 4) for v in samples]
        out[name] = figures
    return out


GIGA = 1e9
SUFFIX = {"32-true": "", "bf16-mixed": "_bf16"}  # JSON key suffix per precision; fp32 keeps today's keys


def time_model(
    kind: str, dm, epochs: int, repeats: int, device: torch.device, probe: RateProbe, bf16_route: str | None
) -> dict:
    """Seconds per epoch of our path and the plain loop in each precision, alternated per repeat so a
    drift in machine load hits all four alike; bf16's products on the route a run takes. Where that route
    is the fp32 GEMMs (a CPU without native bf16), also one repeat of ours on torch's own bf16 kernels."""
    samples = {(path, p): [] for path in ("ours", "plain") for p in PRECISIONS}
    for _ in range(repeats):
        for precision in PRECISIONS:
            chosen = bf16_route if precision == "bf16-mixed" else None  # fp32 never runs under the mode
            samples["ours", precision] += time_our_path(kind, dm, epochs, device, precision, probe, chosen)
            samples["plain", precision] += time_plain_loop(
                kind, dm.train.x, dm.batch_size, epochs, device, precision, probe, chosen
            )
    if bf16_route == VIA_FP32:
        samples["ours", "bf16-torch-kernels"] = time_our_path(kind, dm, epochs, device, "bf16-mixed", probe, NATIVE)
    return samples


def model_figures(
    kind: str, dm, samples: dict, probe: RateProbe, bandwidth: float, bf16_route: str | None = None
) -> dict:
    """The model's row of latest.json: medians, bounds at the best matmul rates, and their ratios; the
    honest bound adds the optimizer's and the casts' bytes at the measured bandwidth to the FLOP bound.
    bf16's FLOP bound takes the rate of the GEMMs its products run on (fp32's on the fp32 route)."""
    _, cfg = build_module(kind, dm.input_dim)
    hp = cfg.model.module
    flops = epoch_flops(
        kind, len(dm.train), dm.input_dim, list(hp.hidden), hp.latent_dim, list(hp.get("disc_hidden", []))
    )
    row: dict = {}
    for precision, suffix in SUFFIX.items():
        s = statistics.median(samples["ours", precision])
        s_plain = statistics.median(samples["plain", precision])
        s_bound = flops / probe.best("bf16" if suffix and bf16_route != VIA_FP32 else "fp32")
        streamed = epoch_bytes(
            kind,
            len(dm.train),
            dm.batch_size,
            dm.input_dim,
            list(hp.hidden),
            hp.latent_dim,
            list(hp.get("disc_hidden", [])),
            bf16=bool(suffix),
        )
        s_memory = streamed / bandwidth
        row |= {
            f"s_per_epoch{suffix}": round(s, 4),
            f"s_per_epoch_plain{suffix}": round(s_plain, 4),
            f"s_per_epoch_bound{suffix}": round(s_bound, 4),
            f"s_per_epoch_memory_bound{suffix}": round(s_memory, 4),
            f"s_per_epoch_honest_bound{suffix}": round(s_bound + s_memory, 4),
            f"ratio_vs_plain{suffix}": round(s / s_plain, 3),
            f"ratio_vs_bound{suffix}": round(s / s_bound, 3),
            f"ratio_vs_honest_bound{suffix}": round(s / (s_bound + s_memory), 3),
        }
    row["speedup_bf16"] = round(row["s_per_epoch"] / row["s_per_epoch_bf16"], 3)
    row["speedup_plain_bf16"] = round(row["s_per_epoch_plain"] / row["s_per_epoch_plain_bf16"], 3)
    if ("ours", "bf16-torch-kernels") in samples:  # how much the fp32 route saves over torch's emulation
        s_kernels = statistics.median(samples["ours", "bf16-torch-kernels"])
        row["s_per_epoch_bf16_torch_kernels"] = round(s_kernels, 4)
        row["bf16_route_speedup"] = round(s_kernels / row["s_per_epoch_bf16"], 3)
    row["gflop_per_epoch"] = round(flops / GIGA, 1)
    for precision, suffix in SUFFIX.items():
        row[f"samples_ours{suffix}"] = [round(v, 4) for v in samples["ours", precision]]
        row[f"samples_plain{suffix}"] = [round(v, 4) for v in samples["plain", precision]]
    return row


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=program_name("itsr.bench"), description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=4, help="timed epochs per repeat (after one warm-up)")
    parser.add_argument(
        "--repeats", type=int, default=2, help="alternating repeats of ours vs plain, fp32 vs bf16 (default 2)"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    parser.add_argument(
        "--device",
        default="cuda" if torch.cuda.is_available() else "cpu",
        help="cpu or cuda (default: cuda if present)",
    )
    parser.add_argument("--data-dir", default=str(default_data_dir()), help="IDX cache (python -m itsr.data fetch)")
    parser.add_argument(
        "--n-train",
        type=int,
        default=None,
        help="keep only the first N training images (a short check of the benchmark, not comparable figures)",
    )
    parser.add_argument(
        "--parallel-jobs", type=int, default=2, help="jobs at once for the parallel-launcher check (0: skip it)"
    )
    parser.add_argument(
        "--k-runs", type=int, default=3, help="k AEs trained together vs one after the other (0: skip it)"
    )
    parser.add_argument("--skip-svm-scaling", action="store_true", help="skip the 6k/60k/600k SVM timing")
    parser.add_argument(
        "--compile",
        type=lambda text: [compile_spec(item) for item in text.split(",") if item],
        default=[],
        metavar="MODES",
        help="also time our path with the networks compiled, per comma-separated torch.compile mode "
        f"({', '.join(COMPILE_MODES)}) or backend=NAME; a GPU question (none: skip it, the default)",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="benchmark JSON to write (default: %(default)s)")
    parser.add_argument("--show", type=Path, help="print the table of a benchmark JSON written earlier, run nothing")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    silence_third_party_noise()
    if args.show:
        result = json.loads(args.show.read_text())
        print_table(result)
        return result

    torch.set_num_threads(benchmark_threads(args.threads))
    device = torch.device(args.device)
    pl.seed_everything(0)
    dm = benchmark_data(args.data_dir, args.n_train)
    flush_denormal = build_module("ae", dm.input_dim)[1].flush_denormal
    torch.set_flush_denormal(flush_denormal)  # as a run does (itsr.runtime.configure_torch)
    probe = RateProbe(device)
    bf16_route = route("auto", "bf16-mixed", device.type, cpu_bf16_native())  # as a run's default does
    result: dict = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "n_train": len(dm.train),
        "batch_size": dm.batch_size,
        "bf16_matmul": bf16_route,
        "models": {},
    }
    bandwidth = stream_bytes_per_s(device)
    result["stream_gbytes_per_s"] = round(bandwidth / GIGA, 1)
    for kind in ("ae", "aae"):
        samples = time_model(kind, dm, args.epochs, args.repeats, device, probe, bf16_route)
        result["models"][kind] = model_figures(kind, dm, samples, probe, bandwidth, bf16_route)
        if args.compile:
            result["models"][kind]["compiled"] = compiled_figures(
                kind, dm, args.epochs, args.repeats, device, bf16_route, args.compile, result["models"][kind]
            )
    result |= {
        "matmul_gflops": round(probe.best("fp32") / GIGA, 1),
        "matmul_gflops_bf16": round(probe.best("bf16") / GIGA, 1),
        "matmul_samples_gflops": {name: [round(v / GIGA, 1) for v in s] for name, s in probe.samples.items()},
        "matmul_spread": {name: round(rate_spread(s), 2) for name, s in probe.samples.items()},
        "matmul_spread_limit": SPREAD_LIMIT,
        "warnings": spread_warnings(probe.samples),
    }
    if args.k_runs > 0:  # would training k seeds in one process pay? (itsr.bench.kruns)
        from itsr.bench.kruns import k_runs_speedup

        result["k_runs"] = {
            precision: k_runs_speedup(dm.train.x, args.k_runs, dm.batch_size, args.epochs, device, precision)
            for precision in PRECISIONS
        }
        result["k_runs_speedup"] = {p: r["k_runs_speedup"] for p, r in result["k_runs"].items()}
    if args.parallel_jobs > 0:
        for kind in ("ae", "aae"):
            single = result["models"][kind]["s_per_epoch"]
            par = parallel_jobs(kind, args.parallel_jobs, args.data_dir, args.n_train, args.epochs, device)
            par["throughput_gain"] = round(par["jobs"] * single / par["s_per_epoch_each"], 3)
            result["models"][kind]["parallel"] = par
    aae_epoch = result["models"]["aae"]["s_per_epoch"]
    ae_epoch = result["models"]["ae"]["s_per_epoch"]

    module, _ = build_module("aae", dm.input_dim)
    module.to(device)
    round_s = refinement_round_s(module, dm.train.x)
    result["refinement_round_s"] = round(round_s, 3)
    result["refinement_round_vs_100_epochs"] = round(round_s / (EPOCHS_PER_ROUND * aae_epoch), 4)
    result["projected_paper_wall_h"] = {
        name: round(epochs * (ae_epoch if name.startswith("ae") else aae_epoch) / SECONDS_PER_HOUR, 2)
        for name, epochs in PAPER_SCHEDULES.items()
    }
    if device.type == "cpu":  # the flush setting is a CPU one
        result["denormal"] = [denormal_figures(kind, dm.input_dim, flush_denormal) for kind in ("ae", "aae")]
    result["memory"] = itsr_memory(dm, device)
    if not args.skip_svm_scaling:
        result["svm_scaling"] = svm_scaling()
    write_json_atomic(args.out, result)
    print_table(result)
    print(f"written: {args.out}")
    return result


def print_table(r: dict) -> None:
    bf16_rate = f", bf16 {r['matmul_gflops_bf16']}" if "matmul_gflops_bf16" in r else ""
    print(
        f"itsr benchmark, {r['date']}, {r['device']}, torch {r['torch']}, {r['threads']} threads, "
        f"n_train {r['n_train']}, batch {r['batch_size']}, matmul {r['matmul_gflops']}{bf16_rate} GFLOP/s (best)"
    )
    for suffix, label in (("", "fp32"), ("_bf16", "bf16")):
        if f"s_per_epoch{suffix}" not in next(iter(r["models"].values())):
            continue  # a JSON written before bf16 was measured
        print(
            f"{label:<6} {'ours s/ep':>10} {'plain s/ep':>11} {'bound s/ep':>11} {'ours/plain':>11} {'ours/bound':>11}"
        )
        for kind, m in r["models"].items():
            print(
                f"{kind:<6} {m[f's_per_epoch{suffix}']:>10.3f} {m[f's_per_epoch_plain{suffix}']:>11.3f} "
                f"{m[f's_per_epoch_bound{suffix}']:>11.3f} {m[f'ratio_vs_plain{suffix}']:>11.3f} "
                f"{m[f'ratio_vs_bound{suffix}']:>11.3f}"
            )
            if f"s_per_epoch_honest_bound{suffix}" in m:
                print(
                    f"{'':<6} honest bound {m[f's_per_epoch_honest_bound{suffix}']:.3f} s/ep = FLOP "
                    f"{m[f's_per_epoch_bound{suffix}']:.3f} + memory {m[f's_per_epoch_memory_bound{suffix}']:.3f} "
                    f"(optimizer and casts at {r['stream_gbytes_per_s']} GB/s); ours / honest bound "
                    f"{m[f'ratio_vs_honest_bound{suffix}']:.2f}"
                )
    for kind, m in r["models"].items():
        if "speedup_bf16" in m:
            print(
                f"{kind}: bf16 speedup (fp32 s/epoch over bf16 s/epoch) ours {m['speedup_bf16']:.2f}x, "
                f"plain loop {m['speedup_plain_bf16']:.2f}x"
            )
        if "bf16_route_speedup" in m:
            print(
                f"{kind}: bf16 products through fp32 GEMMs (no native bf16 on this CPU): torch's own bf16 kernels "
                f"{m['s_per_epoch_bf16_torch_kernels']:.3f} s/epoch, {m['bf16_route_speedup']:.2f}x the route's"
            )
    for kind, m in r["models"].items():
        for name, c in m.get("compiled", {}).items():
            parts = [
                f"{label} {c[f's_per_epoch{suffix}']:.3f} s/epoch ({c[f'speedup{suffix}']:.2f}x uncompiled)"
                if f"s_per_epoch{suffix}" in c
                else f"{label} skipped ({c[f'skipped{suffix}']})"
                for suffix, label in (("", "fp32"), ("_bf16", "bf16"))
            ]
            print(f"{kind} compiled ({name}): " + "; ".join(parts))
    if "k_runs_speedup" in r:
        k = next(iter(r["k_runs"].values()))["k"]
        print(
            f"k runs in one process (AE, k = {k}, stacked weights + vmap) vs one after the other: "
            + ", ".join(f"{p} {v:.2f}x" for p, v in r["k_runs_speedup"].items())
        )
    if "matmul_spread" in r:
        spread = ", ".join(f"{k} {v:.2f}x" for k, v in r["matmul_spread"].items())
        print(f"matmul rate spread over {len(r['matmul_samples_gflops']['fp32'])} bursts (best/worst): {spread}")
    for warning in r.get("warnings", []):
        print(f"WARNING: {warning}")
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
    for d in r.get("denormal", []):
        print(
            f"{d['model']}: optimizer step late in a long run ({100 * d['denormal_fraction']:.0f}% of Adam's moments "
            f"denormal): {d['adam_step_ms_kept']:.1f} ms kept, {d['adam_step_ms_flushed']:.1f} ms flushed "
            f"({d['slowdown_kept']:.1f}x; runs flush them, flush_denormal=true)"
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

"""The report: aggregation on hand-made runs, the paper's values in the right cells, problems listed."""

from __future__ import annotations

import json
import math
import struct
import subprocess
import sys

import pytest

from itsr.atomic import write_json_atomic
from itsr.report import PAPER, aggregate, main, read_runs, render
from itsr.results import METRICS_FORMAT
from tests.conftest import REPO_ROOT, run_itsr, tiny_overrides

# a report over a thousand runs should not load a training stack, nor a plotting one before it draws
TRAINING_STACK = ("torch", "pytorch_lightning", "lightning", "hydra", "omegaconf")
PLOTTING = ("matplotlib",)


def fake_run(root, name, setting="mnist_0v2", alpha=0.05, model="itsr", seed=0, bacc=0.9, fmt=METRICS_FORMAT):
    criteria = ("rec",) if model == "ae" else ("rec", "lik", "combined")
    values = {"tpr": bacc, "tnr": bacc, "bacc": bacc, "auroc": 0.95, "ap": None}
    metrics = {
        "format_version": fmt,
        "config": {"setting": setting, "alpha": alpha, "model": model, "seed": seed},
        "thresholds": {"t_rec": 0.1, "t_prior": None if model == "ae" else -3.0},
        "metrics": {s: {c: dict(values) for c in criteria} for s in ("observed", "unobserved")},
    }
    write_json_atomic(root / name / "metrics.json", metrics)
    return root / name


def test_means_stds_and_grouping_over_seeds(tmp_path) -> None:
    fake_run(tmp_path, "a", seed=0, bacc=0.90)
    fake_run(tmp_path, "b", seed=1, bacc=0.94)
    fake_run(tmp_path, "c", model="ae", seed=0, bacc=0.70)
    runs, problems = read_runs([tmp_path])
    assert not problems and len(runs) == 3
    cells = aggregate(runs)
    cell = cells[("mnist_0v2", 0.05, "itsr", "observed", "combined")]
    assert sorted(cell.bacc) == [0.90, 0.94] and sorted(cell.seeds) == [0, 1]
    assert math.isnan(cell.ap[0]), "null metrics stay undefined, not zero"
    assert ("mnist_0v2", 0.05, "ae", "observed", "combined") not in cells
    text = render(runs, problems, [])
    # ITSR MNIST observed at 5%: ours 0.92 +- 0.028, paper 0.93 (Fig. 5), within 0.03
    assert "0.920 ± 0.028 (n=2) · paper 0.93 · Δ -0.010 ✓" in text
    assert "| AE | observed | 0.700 (n=1) · paper 0.70 · Δ +0.000 ✓ | missing · paper 0.74 |" in text


def loaded(names: tuple[str, ...]) -> str:
    """Python source that prints which of these top-level packages the interpreter has loaded."""
    return f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({names!r})))"


def test_the_report_loads_no_training_stack(tmp_path) -> None:
    """In a fresh interpreter, since this one has torch already: the import loads neither stack; writing
    the report and its figures adds matplotlib, never torch, Lightning or Hydra."""
    fake_run(tmp_path, "a")
    code = "\n".join(
        (
            "import sys",
            "import itsr.report",
            loaded(TRAINING_STACK + PLOTTING),
            f"assert itsr.report.main([{str(tmp_path)!r}, '--out', {str(tmp_path / 'r.md')!r}]) == 0",
            loaded(TRAINING_STACK),
        )
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    assert lines[0] == "[]", f"import itsr.report loaded {lines[0]}"
    assert lines[-1] == "[]", f"writing the report loaded {lines[-1]}"
    assert (tmp_path / "fig5_bacc.png").is_file(), "the figures were drawn, so the plotting path was taken"


def test_paper_values_sit_in_the_right_cells() -> None:
    assert PAPER[("fmnist_tshirt_v_pullover", 0.05, "itsr", "observed", "combined")].bacc == 0.84
    assert PAPER[("fmnist_tshirt_v_boot", 0.01, "aae", "unobserved", "combined")].bacc == 0.78
    assert PAPER[("mnist_0v2", 0.001, "ae", "observed", "rec")].bacc == 0.68
    assert PAPER[("fmnist_tshirt_v_pullover", 0.0, "aae", "observed", "lik")].bacc == 0.73
    assert "Table 1" in PAPER[("mnist_0v2", 0.01, "itsr", "unobserved", "combined")].source
    assert len([k for k in PAPER if k[1] > 0]) == 3 * 3 * 3 * 2


def test_failed_half_written_and_foreign_runs_are_listed_not_dropped(tmp_path, capsys) -> None:
    from omegaconf import OmegaConf

    from itsr.settings import SETTING_RESOLVER

    OmegaConf.clear_resolver(SETTING_RESOLVER)  # as in a report process, which never composes a config
    fake_run(tmp_path, "good")
    fake_run(tmp_path, "old", fmt=0)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "metrics.json").write_text('{"format_version": 1, "conf')
    (tmp_path / "running" / ".hydra").mkdir(parents=True)
    failed = tmp_path / "failed"
    (failed / ".hydra").mkdir(parents=True)
    (failed / ".hydra" / "config.yaml").write_text(
        # as Hydra saves it: the setting is an interpolation of the resolver that names it
        "dataset: {name: fmnist, normal_class: 0, anomaly_class: 9,\n"
        "  setting: '${itsr.setting:${dataset.name},${dataset.normal_class},${dataset.anomaly_class}}'}\n"
        "alpha: 0.05\nmodel: {name: aae}\n"
    )
    write_json_atomic(failed / "failed.json", {"error": "NonFiniteLossError", "message": "nan at epoch 3"})
    assert main([str(tmp_path), "--out", str(tmp_path / "r.md")]) == 0
    err = capsys.readouterr().err
    for name, status in (
        ("old", "other-version"),
        ("broken", "unreadable"),
        ("running", "incomplete"),
        ("failed", "failed"),
    ):
        assert f"{tmp_path / name}: {status}" in err
    text = (tmp_path / "r.md").read_text()
    assert "**failed** (1 run) · paper 0.78" in text
    assert "NonFiniteLossError: nan at epoch 3" in text


def test_a_grid_whose_runs_all_failed_still_gets_its_report(tmp_path) -> None:
    """Issue 21.3: the report is most needed when a grid failed; it lists each failure and exits 0."""
    import os
    import subprocess
    import sys
    import time

    from tests.conftest import REPO_ROOT

    grid = tmp_path / "grid"
    for name, message in (("0_itsr", "nan at epoch 3"), ("1_aae", "killed at epoch 9")):
        (grid / name).mkdir(parents=True)
        write_json_atomic(grid / name / "failed.json", {"error": "NonFiniteLossError", "message": message})
    rerun = fake_run(grid, "2_ae_rerun", model="ae")  # finished once, then rerun over and failed
    time.sleep(0.01)
    write_json_atomic(rerun / "failed.json", {"error": "OSError", "message": "disk full at epoch 4"})
    os.utime(rerun / "metrics.json", (1, 1))
    out = subprocess.run(
        [sys.executable, "-m", "itsr.report", str(grid)], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr
    assert "no finished run" in out.stderr and "the report lists the failures" in out.stderr
    text = (grid / "report.md").read_text()
    assert "0 finished runs; 3 skipped or failed" in text
    for reason in ("nan at epoch 3", "killed at epoch 9", "OSError: disk full at epoch 4"):
        assert reason in text


def test_nothing_readable_is_an_error(tmp_path) -> None:
    assert main([str(tmp_path)]) == 1
    assert main([str(tmp_path / "absent")]) == 1


def png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


@pytest.mark.slow
def test_a_tiny_sweep_then_the_report_fills_every_cell_and_draws_the_figures(tmp_path) -> None:
    sweep = tmp_path / "sweep"
    # model.module.disc_hidden does not exist for the AE: the preset's model list is narrowed to AAE/ITSR
    out = run_itsr(
        "-m",
        "experiment=quick",
        "alpha=0.05",
        *tiny_overrides("itsr")[1:],
        "model.module.disc_hidden=[32,32]",
        "dataset.epochs.ae=2",
        "dataset.epochs.aae=2",
        "dataset.epochs.itsr_pretrain=1",
        "dataset.epochs.itsr_round=1",
        "dataset.epochs.itsr_retrain=1",
        "curves.every_n_epochs=1",
        f"hydra.sweep.dir={sweep}",
        "model=aae,itsr",
        timeout=900,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert len(list(sweep.glob("*/metrics.json"))) == 6, "2 models x 3 settings"
    assert main([str(sweep)]) == 0
    text = (sweep / "report.md").read_text()
    fig5 = text.split("### Fig. 5")[1].split("###")[0]
    for line in [row for row in fig5.splitlines() if row.startswith(("| AAE", "| ITSR"))]:
        assert "missing" not in line and "failed" not in line, line
    for figure in ("fig5_bacc.png", "fig4_itsr.png", "fig5def_itsr_errors.png"):
        width, height = png_size(sweep / figure)
        assert width > 400 and height > 250
    assert json.loads((next(sweep.glob("*itsr*")) / "metrics.json").read_text())["refinement"]


def test_the_endpoint_table_sets_the_final_bacc_beside_the_curves_last_tenth(tmp_path) -> None:
    """Issue 22.3: a final number at the peak of a moving curve shows as a gap to the last tenth's mean."""
    from itsr.report.endpoint import tail_mean

    assert tail_mean([0.1] * 18 + [0.7, 0.9]) == (0.8, 0.7, 0.9)  # the last ceil(20 / 10) = 2 points
    assert tail_mean([0.5, 0.6, 0.7]) == (0.7, 0.7, 0.7)
    run_dir = fake_run(tmp_path, "itsr0", bacc=0.871)
    rows = ["epoch,observed_combined_bacc,unobserved_combined_bacc"]
    rows += [f"{10 * i},{0.80 if i < 18 else 0.76},{0.85}" for i in range(19)] + ["190,0.871,0.85"]
    (run_dir / "curves.csv").write_text("\n".join(rows) + "\n")
    runs, problems = read_runs([tmp_path])
    text = render(runs, problems, [])
    assert "| mnist_0v2 | 0.05 | itsr | observed | 1 | 20 | 0.871 | 0.816 | 0.760-0.871 |" in text


def test_a_rerun_of_the_same_seed_is_listed_not_averaged_as_a_second_seed(tmp_path) -> None:
    """An fp32 run and its bf16 rerun (or a copy) of one seed would pass for n=2 with a spread that is not
    a seed spread; the report takes the first one into the means and names the other and why."""
    fake_run(tmp_path, "a_fp32", seed=0, bacc=0.90)
    fake_run(tmp_path, "b_bf16", seed=0, bacc=0.80)
    fake_run(tmp_path, "c_seed1", seed=1, bacc=0.94)
    out = subprocess.run(
        [sys.executable, "-m", "itsr.report", str(tmp_path), "--out", str(tmp_path / "r.md")],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert f"skipped {tmp_path / 'b_bf16'}: duplicate: left out of the means" in out.stderr
    assert str(tmp_path / "a_fp32") in out.stderr, "the message names the run that is reported"
    text = (tmp_path / "r.md").read_text()
    assert "0.920 ± 0.028 (n=2) · paper 0.93" in text, "seeds 0 and 1 only, not 0.88 over three runs"
    assert f"| {tmp_path / 'b_bf16'} | duplicate |" in text


def test_the_claims_section_sets_itsr_against_the_aae_and_reads_declines_off_the_curves(tmp_path) -> None:
    """Issue 24: cell by cell, does ITSR lead the AAE beyond the seed spread, and does a method's BACC fall
    from its best epoch to its last, under the paper's rule and under the calibrated one."""
    for seed, (itsr, aae) in enumerate(((0.90, 0.80), (0.92, 0.82))):  # ITSR ahead by 0.10, std 0.014
        fake_run(tmp_path, f"m_itsr{seed}", model="itsr", seed=seed, bacc=itsr)
        fake_run(tmp_path, f"m_aae{seed}", model="aae", seed=seed, bacc=aae)
    for seed, (itsr, aae) in enumerate(((0.70, 0.80), (0.72, 0.82))):  # the AAE ahead
        fake_run(tmp_path, f"b_itsr{seed}", "fmnist_tshirt_v_boot", model="itsr", seed=seed, bacc=itsr)
        fake_run(tmp_path, f"b_aae{seed}", "fmnist_tshirt_v_boot", model="aae", seed=seed, bacc=aae)
    for seed, (itsr, aae) in enumerate(((0.80, 0.83), (0.90, 0.85))):  # 0.01 apart, std 0.07
        fake_run(tmp_path, f"p_itsr{seed}", "fmnist_tshirt_v_pullover", model="itsr", seed=seed, bacc=itsr)
        fake_run(tmp_path, f"p_aae{seed}", "fmnist_tshirt_v_pullover", model="aae", seed=seed, bacc=aae)
    for seed in (0, 1):  # the AE: 0.9 at epoch 50, 0.5 at the end; the calibrated rule falls 0.88 -> 0.85
        run_dir = fake_run(tmp_path, f"ae{seed}", model="ae", seed=seed, bacc=0.5)
        rows = ["epoch,observed_rec_bacc,observed_rec_auroc,observed_rec_bacc_holdout"]
        rows += ["1,0.8,0.95,0.8", f"50,{0.9 + seed / 100},0.96,0.88", "100,0.6,0.95,0.86", "150,0.5,0.95,0.85"]
        (run_dir / "curves.csv").write_text("\n".join(rows) + "\n")
        if seed == 0:
            metrics = json.loads((run_dir / "metrics.json").read_text())
            metrics["holdout"] = {"fraction": 0.1, "n": 600, "n_anomalies": 30}
            metrics["metrics_holdout"] = {"observed": {"rec": {"tpr": 0.8, "tnr": 0.9, "bacc": 0.85}}}
            write_json_atomic(run_dir / "metrics.json", metrics)
    assert main([str(tmp_path), "--out", str(tmp_path / "r.md")]) == 0
    text = (tmp_path / "r.md").read_text()
    section = text[text.index("## The paper's claims") : text.index("## Calibrated")]
    lines = [line for line in section.splitlines() if line.startswith("| ")]
    rows = {tuple(c.strip() for c in line.split("|")[1:4]): line for line in lines}
    mnist = rows[("MNIST 0 vs 2", "0.05", "observed")]
    assert "| +0.100 | +0.11 | +0.000 | **holds**: ITSR ahead by 0.100" in mnist
    assert "**does not hold**: AAE ahead by 0.100" in rows[("T-shirt vs Boot", "0.05", "unobserved")]
    pullover = rows[("T-shirt vs Pullover", "0.05", "observed")]
    assert "ITSR ahead by 0.010, within the seed spread (std up to 0.071)" in pullover
    ae = rows[("mnist_0v2", "0.05", "ae")]
    assert "| observed | 2 | 0.905 ± 0.007 | 50, 50 | 0.500 ± 0.000 | 0.405 ± 0.007 | 0.010 ± 0.000 |" in ae
    assert "| 0.030 (n=1) | **declines** |" in ae, "the calibrated drop over the one run with a held-out slice"

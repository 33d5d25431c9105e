"""scripts/paper_grid.py: which of Fig. 5's 27 runs a results folder still lacks in the grid's precision."""

from __future__ import annotations

import json
import subprocess

from tests.conftest import run_script


def paper_grid(*arguments) -> subprocess.CompletedProcess:
    return run_script("paper_grid.py", *arguments)


def grid_run(runs, name, provenance=None, holdout=True) -> None:
    metrics = {"config": {"model": name.split("_")[0]}}
    if provenance is not None:
        metrics["provenance"] = provenance
    if holdout:
        metrics["holdout"] = {"fraction": 0.1}
    (runs / name).mkdir(parents=True)
    (runs / name / "metrics.json").write_text(json.dumps(metrics))


def test_the_grid_lists_missing_runs_and_reruns_those_in_another_precision_or_without_a_holdout(tmp_path) -> None:
    runs = tmp_path / "runs"
    grid_run(runs, "aae_mnist_0v2_a0.05_s0", {"precision": "bf16-mixed"})  # in the grid
    grid_run(runs, "itsr_mnist_0v2_a0.05_s0")  # fp32, before provenance was recorded
    grid_run(runs, "ae_mnist_0v2_a0.05_s0", {"precision": "bf16-mixed"}, holdout=False)
    (runs / "aae_mnist_0v2_a0.05_s1").mkdir()
    (runs / "aae_mnist_0v2_a0.05_s1" / "metrics.json").write_text("{cut short")

    table = paper_grid("--runs", runs)
    assert table.returncode == 0, table.stderr
    assert "1 of 27 grid runs are in" in table.stdout and "26 to run" in table.stdout
    assert "| aae_mnist_0v2_a0.05_s0 |" not in table.stdout
    assert "| itsr_mnist_0v2_a0.05_s0 | rerun: precision not recorded" in table.stdout
    assert "| ae_mnist_0v2_a0.05_s0 | rerun: no held-out slice" in table.stdout
    assert "| aae_mnist_0v2_a0.05_s1 | unreadable metrics.json (JSONDecodeError)" in table.stdout
    assert (
        "`python -m itsr.run experiment=paper model=ae dataset=fmnist_boot alpha=0.05 seed=2 "
        "trainer.precision=bf16-mixed scoring.holdout_fraction=0.1`" in table.stdout
    )

    specs = paper_grid("--runs", runs, "--format", "specs", "--order", "shortest", "--seeds", "1,0,1")
    lines = specs.stdout.splitlines()
    assert len(lines) == len(set(lines)) == 17  # seed 1 once: 9 runs, seed 0: 8
    assert lines[0] == "aae_fmnist_tshirt_v_boot_a0.05_s0 aae fmnist_boot 0"  # the AAE's 1000 epochs, seed 0 first
    runs_in_order = [tuple(line.split()[1:3]) for line in lines]
    # by epochs x cost per epoch: AAE 1000, the AE's 4000 MNIST epochs at a third of the cost, ITSR's 2000
    # on Fashion-MNIST, its 2500 on MNIST, the AE's 10000 on Fashion-MNIST last
    kinds = ["aae", "ae-mnist", "itsr-fmnist", "itsr-mnist", "ae-fmnist"]
    kind = [m if m == "aae" else f"{m}-{'mnist' if d == 'mnist' else 'fmnist'}" for m, d in runs_in_order]
    assert kind == sorted(kind, key=kinds.index) and set(kind) == set(kinds)

    args = paper_grid("--runs", runs, "--format", "args", "--order", "shortest", "--seeds", "1,0,1")
    assert [line.split()[0] for line in args.stdout.splitlines()] == [line.split()[0] for line in lines]
    assert args.stdout.splitlines()[0] == (  # the GPU script's overrides: the same list the table's command shows
        "aae_fmnist_tshirt_v_boot_a0.05_s0 experiment=paper model=aae dataset=fmnist_boot alpha=0.05 seed=0 "
        "trainer.precision=bf16-mixed scoring.holdout_fraction=0.1"
    )

    skipped = paper_grid(
        "--runs", runs, "--format", "specs", "--order", "shortest", "--skip", "aae_fmnist_tshirt_v_boot_a0.05_s0"
    )
    assert skipped.returncode == 0 and "aae_fmnist_tshirt_v_boot_a0.05_s0" not in skipped.stdout
    assert len(skipped.stdout.splitlines()) == 25
    typo = paper_grid("--runs", runs, "--skip", "aae_mnist_s0")
    assert typo.returncode == 2 and "--skip aae_mnist_s0: not a grid run name" in typo.stderr


def test_a_complete_grid_prints_no_specs(tmp_path) -> None:
    runs = tmp_path / "runs"
    for model in ("ae", "aae", "itsr"):
        for setting in ("mnist_0v2", "fmnist_tshirt_v_boot", "fmnist_tshirt_v_pullover"):
            grid_run(runs, f"{model}_{setting}_a0.05_s0", {"precision": "bf16-mixed"})
    grid_run(runs, "aae_mnist_0v2_a0.05_s1", provenance="not a table")  # another file's shape: rerun, no traceback
    done = paper_grid("--runs", runs, "--format", "specs", "--seeds", "0")
    assert done.returncode == 0 and done.stdout == ""
    one = paper_grid("--runs", runs, "--seeds", "1")
    assert one.returncode == 0 and "| aae_mnist_0v2_a0.05_s1 | rerun: precision not recorded" in one.stdout


def test_a_wrong_runs_folder_or_seed_list_is_named(tmp_path) -> None:
    missing = paper_grid("--runs", tmp_path / "nowhere")
    assert missing.returncode == 2 and "is not a directory" in missing.stderr
    bad = paper_grid("--runs", tmp_path, "--seeds", "0,x")
    assert bad.returncode == 2 and "give integers separated by commas" in bad.stderr
    assert "Traceback" not in missing.stderr + bad.stderr

"""The parallel launcher: jobs split the cores, and a grid runs through it."""

from __future__ import annotations

import json

from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig

from itsr.run import CONFIG_DIR
from itsr.runtime import available_cores, default_threads
from tests.conftest import run_itsr, tiny_overrides


def with_launcher(overrides: list[str]) -> int:
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("config", overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    try:
        return default_threads()
    finally:
        HydraConfig.instance().cfg = None


def test_parallel_jobs_split_the_cores() -> None:
    cores = available_cores()
    assert with_launcher([]) == cores
    assert with_launcher(["hydra/launcher=parallel", "hydra.launcher.n_jobs=2"]) == max(1, cores // 2)
    assert with_launcher(["hydra/launcher=parallel", "hydra.launcher.n_jobs=-1"]) == 1


def test_a_grid_runs_through_the_parallel_launcher(tmp_path) -> None:
    sweep = tmp_path / "sweep"
    out = run_itsr(
        "-m",
        "hydra/launcher=parallel",
        *tiny_overrides("aae"),
        "dataset.epochs.aae=1",
        "alpha=0.05,0.01",
        f"hydra.sweep.dir={sweep}",
    )
    assert out.returncode == 0, out.stderr[-3000:]
    runs = [json.loads(p.read_text()) for p in sorted(sweep.glob("*/metrics.json"))]
    assert sorted(r["config"]["alpha"] for r in runs) == [0.01, 0.05]

"""Every experiment preset and every local launcher runs end to end at tiny epochs, so none can rot.

The presets are discovered from conf/experiment/: a new preset is tested by being added. A preset's
grid is narrowed to its first job (the first value of each hydra.sweeper.params key), so the test
runs each preset's own model, dataset and options, only shorter, through Hydra's default (basic)
launcher; the launchers of conf/hydra/launcher/ run a two-job grid each.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from itsr.run import CONFIG_DIR
from tests.conftest import run_itsr, tiny_overrides

pytestmark = pytest.mark.slow

PRESETS = sorted(p.stem for p in (Path(CONFIG_DIR) / "experiment").glob("*.yaml"))
LAUNCHERS = sorted(p.stem for p in (Path(CONFIG_DIR) / "hydra" / "launcher").glob("*.yaml"))
REMOTE_LAUNCHERS = {"slurm"}  # needs a cluster: tests/test_slurm.py runs it on a local one
OUR_MODELS = {"ae", "aae", "itsr"}
TINY_EPOCHS = [
    "dataset.epochs.ae=1",
    "dataset.epochs.aae=1",
    "dataset.epochs.itsr_pretrain=1",
    "dataset.epochs.itsr_round=1",
    "dataset.epochs.itsr_retrain=1",
    "model.refinement.rounds=2",
    "curves.every_n_epochs=1",
    "checkpoint.every_n_epochs=1",
]


def first_job(preset: str) -> tuple[list[str], str]:
    """The overrides of the preset's first grid job, and the model that job trains."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("config", overrides=[f"experiment={preset}"], return_hydra_config=True)
    params = dict(cfg.hydra.sweeper.params or {})
    job = [f"{key}={str(values).split(',')[0]}" for key, values in params.items()]
    model = next((o.split("=")[1] for o in job if o.startswith("model=")), cfg.model.name)
    return job, model


def tiny(model: str) -> list[str]:
    overrides = tiny_overrides(model) if model in OUR_MODELS else ["threads=1"]
    return overrides + [o for o in TINY_EPOCHS if model == "itsr" or not o.startswith("model.refinement")]


def finished_runs(root: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(root.rglob("metrics.json"))]


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_runs_its_first_job(tmp_path, preset: str) -> None:
    job, model = first_job(preset)
    result = run_itsr("-m", f"experiment={preset}", *job, *tiny(model), f"hydra.sweep.dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    runs = finished_runs(tmp_path)
    assert len(runs) == 1, f"{preset}: expected one finished run, got {len(runs)}"
    assert runs[0]["config"]["model"] == model


@pytest.mark.parametrize("launcher", [name for name in LAUNCHERS if name not in REMOTE_LAUNCHERS])
def test_every_local_launcher_runs_a_two_job_grid(tmp_path, launcher: str) -> None:
    result = run_itsr(
        "-m",
        f"hydra/launcher={launcher}",
        "model=ae",
        "alpha=0.05,0.01",
        *tiny("ae"),
        f"hydra.sweep.dir={tmp_path}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(r["config"]["alpha"] for r in finished_runs(tmp_path)) == [0.01, 0.05]

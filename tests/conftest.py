"""Shared helpers: the real data cache, config composition, tiny networks for fast runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from itsr.data.datamodule import LabelledImages, TensorDataModule
from itsr.run import CONFIG_DIR

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("ITSR_DATA_DIR", REPO_ROOT / "data"))


def compose_cfg(overrides: list[str] = ()) -> DictConfig:
    """The real config tree, composed as `python -m itsr.run` would, with the test's data cache."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose("config", overrides=[f"data_dir={DATA_DIR}", *overrides])


def run_itsr(*arguments: str, timeout: float = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """`python -m itsr.run ARGUMENTS` from the repository root, with the test's data cache."""
    cmd = [sys.executable, "-m", "itsr.run", *arguments, f"data_dir={DATA_DIR}"]
    return subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout, env=env)


def run_script(script: str, *arguments, timeout: float = 60) -> subprocess.CompletedProcess:
    """`python scripts/SCRIPT ARGUMENTS` from the repository root, as a user runs it."""
    cmd = [sys.executable, f"scripts/{script}", *map(str, arguments)]
    return subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout)


def tiny_overrides(model: str, hidden: int = 32) -> list[str]:
    """Small hidden layers: the same code paths as the paper's networks at a fraction of the cost."""
    out = [f"model={model}", f"model.module.hidden=[{hidden},{hidden}]", "threads=1"]
    if model != "ae":
        out.append(f"model.module.disc_hidden=[{hidden},{hidden}]")
    return out


def toy_images(n_normal: int, n_anomalous: int, dim: int = 16, seed: int = 0) -> LabelledImages:
    """Two separable clusters in [0, 1]^dim: normals bright on the left half, anomalies on the right."""
    g = torch.Generator().manual_seed(seed)
    half = dim // 2
    normal = torch.rand(n_normal, dim, generator=g) * 0.2
    normal[:, :half] += 0.7
    anomalous = torch.rand(n_anomalous, dim, generator=g) * 0.2
    anomalous[:, half:] += 0.7
    x = torch.cat([normal, anomalous])
    is_anomaly = torch.cat([torch.zeros(n_normal, dtype=torch.bool), torch.ones(n_anomalous, dtype=torch.bool)])
    return LabelledImages(x, is_anomaly.long(), is_anomaly)


@pytest.fixture
def toy_datamodule() -> TensorDataModule:
    train = toy_images(190, 10)
    test = {"observed": toy_images(50, 50, seed=1), "unobserved": toy_images(50, 50, seed=2)}
    dm = TensorDataModule(train, test, batch_size=32, seed=0)
    dm.setup()
    return dm


@pytest.fixture(scope="session")
def mnist_arrays():
    from itsr.data.fetch import load_arrays

    return load_arrays("mnist", DATA_DIR, download=True)

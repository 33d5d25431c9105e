"""What made a run: the code (git commit, uncommitted changes), library versions, the precision, the
hardware, and a fingerprint of every config value that can change a result.

metrics.json carries these in its "provenance" block and the run directory gets config.yaml, the full
resolved config, beside it; `itsr.report` shows the commit per group of runs and flags a group that
mixes commits or configs. Importable without torch (the report reads the fingerprint rules).
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

CONFIG_FILE = "config.yaml"  # the run's full resolved config, beside metrics.json
REPO_ROOT = Path(__file__).resolve().parent.parent
# Config keys that say where or how fast a run goes, or which run of a group it is, never what it computes:
# left out of the fingerprint so that the seeds of one cell, or the same cell on two machines, share it.
NOT_IN_FINGERPRINT = (
    "seed",
    "data_dir",
    "download",
    "threads",
    "cpu_bf16_matmul",  # which kernels multiply bf16: the same products up to fp32 summation order (bf16_matmul.py)
    "progress",
    "checkpoint",
    "ckpt_path",
    "logger",
)
# the places the configs copy the run's seed into (`${seed}`): left out with it, or every seed of a cell
# would get its own fingerprint and the report would flag each multi-seed group as mixed
SEED_COPIES = (("dataset", "datamodule", "seed"), ("model", "detector", "random_state"))
# Config keys added after runs had been made, with the value every earlier run had in effect: a saved config
# without one reads as having that value (a resume compares it so), and a key at that value is left out of
# the fingerprint, so a run made before the key existed and one made after share a fingerprint.
KEYS_ADDED_LATER = {
    ("model", "refinement", "batch_fraction"): 0.1,  # refinement by="batch" (2026-12-03); unused by svm and score
    ("model", "callbacks", "refinement", "batch_fraction"): 0.1,
}
# where the code runs from a copy without .git, the commit that copy was made at (scripts/device-paper-grid.sh)
CODE_COMMIT_ENV = "ITSR_CODE_COMMIT"
LIBRARIES = ("torch", "pytorch-lightning", "numpy", "scikit-learn", "scipy", "pyod", "hydra-core")


def code_version(repo: Path = REPO_ROOT) -> dict:
    """The git commit the code ran at and whether tracked files differed from it (None outside a checkout)."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=30, check=True
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout.splitlines()
    except (OSError, subprocess.SubprocessError):
        stated = os.environ.get(CODE_COMMIT_ENV)
        if stated:  # a copy of the tree without .git (e.g. on a lent GPU): the commit it was copied from
            return {"commit": stated, "dirty": None, "why": f"no git checkout here; the commit is {CODE_COMMIT_ENV}'s"}
        return {"commit": None, "dirty": None, "why": "not a git checkout, or git is not installed"}
    return {"commit": commit, "dirty": bool(changed), "changed_files": [line[3:] for line in changed][:50]}


def library_versions() -> dict:
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


# x86 instructions that multiply bf16 natively; without them torch emulates bf16 matrix products on the CPU
# (measured on an AVX2-only AMD EPYC: 2.3 against 75 GFLOP/s fp32, a bf16 epoch 11-13x slower; results/bench),
# and itsr.bf16_matmul routes them through fp32 GEMMs instead
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
CPUINFO = Path("/proc/cpuinfo")


def cpuinfo_value(key: str, cpuinfo: Path = CPUINFO) -> str | None:
    """The value of the first `key : value` line of /proc/cpuinfo; None where the file or the line is missing."""
    try:
        for line in cpuinfo.read_text().splitlines():
            if line.startswith(key):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return None


def cpu_model() -> str:
    return cpuinfo_value("model name") or platform.processor() or platform.machine()


def cpu_flags(cpuinfo: Path = CPUINFO) -> set[str] | None:
    """The CPU's feature flags (x86's first `flags` line); None where the file or that line is missing."""
    value = cpuinfo_value("flags", cpuinfo)
    return None if value is None else set(value.split())


def cpu_bf16_native(cpuinfo: Path = CPUINFO) -> bool | None:
    """Whether the CPU multiplies bf16 natively (None: unknown, e.g. no /proc/cpuinfo or not x86)."""
    flags = cpu_flags(cpuinfo)
    return None if flags is None else any(flag in flags for flag in BF16_CPU_FLAGS)


def hardware(device: str) -> dict:
    """The CPU (model, cores this process may use, native bf16 or not) and, for a run on a GPU, its name."""
    out = {
        "cpu": cpu_model(),
        "cpu_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_bf16_native": cpu_bf16_native(),
    }
    if device.startswith("cuda"):
        import torch

        out["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return out


def _parent(config: dict, keys: list[str]) -> dict | None:
    """The dict at config[keys[0]][keys[1]]..., or None where there is none."""
    node = config
    for key in keys:
        node = node.get(key) if isinstance(node, dict) else None
    return node if isinstance(node, dict) else None


def with_keys_added_later(config: dict) -> dict:
    """A saved config with every key added since it was written, at the value it had in effect (a copy)."""
    out = copy.deepcopy(config)
    for (*parents, leaf), default in KEYS_ADDED_LATER.items():
        node = _parent(out, parents)
        if node is not None:
            node.setdefault(leaf, default)
    return out


def config_fingerprint(config: dict) -> str:
    """sha256 (first 12 hex digits) of the resolved config without NOT_IN_FINGERPRINT's keys."""
    kept = json.loads(json.dumps({k: v for k, v in config.items() if k not in NOT_IN_FINGERPRINT}, default=str))
    for *parents, leaf in SEED_COPIES:
        node = _parent(kept, parents)
        if node is not None:
            node.pop(leaf, None)
    for (*parents, leaf), default in KEYS_ADDED_LATER.items():
        node = _parent(kept, parents)
        if node is not None and node.get(leaf) == default:
            node.pop(leaf)
    return hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()[:12]


def provenance(config: dict, device: str, precision: str, code_at_start: dict) -> dict:
    """The metrics.json block: code, versions, precision, hardware and the config's fingerprint. `code` is the
    code the run started with (taken before training); where the checkout changed while it trained (a
    worktree moved, a file edited), `code_at_end` says to what, so a long run cannot claim a later commit."""
    at_end = code_version()
    changed = {"code_at_end": at_end} if at_end != code_at_start else {}
    return {
        "code": code_at_start,
        **changed,
        "versions": library_versions(),
        "precision": precision,
        "hardware": hardware(device),
        "config_fingerprint": config_fingerprint(config),
        "config_file": CONFIG_FILE,
    }


def write_config(run_dir: Path, config: dict) -> None:
    """config.yaml: the full resolved config of the run (what Hydra's .hydra/ holds, resolved, in one file)."""
    from omegaconf import OmegaConf

    from itsr.atomic import write_bytes_atomic

    write_bytes_atomic(run_dir / CONFIG_FILE, OmegaConf.to_yaml(OmegaConf.create(config)).encode())

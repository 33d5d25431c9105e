"""Issue 22.1: every run records what made it (config.yaml, commit, versions, precision, hardware),
and the report shows the commit per group and flags a group that mixes commits or configs."""

from __future__ import annotations

import json
import subprocess

import pytest
from omegaconf import OmegaConf

from itsr.atomic import write_json_atomic
from itsr.provenance import (
    CONFIG_FILE,
    code_version,
    config_fingerprint,
    cpu_bf16_native,
    cpu_flags,
)
from itsr.report.markdown import render
from itsr.report.runs import read_runs
from itsr.run import train_and_evaluate
from itsr.runtime import config_differences
from tests.conftest import REPO_ROOT, compose_cfg, tiny_overrides
from tests.test_bf16 import count_routed
from tests.test_report import fake_run


def head_commit() -> str:
    return subprocess.run(
        ["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()


def check_recorded(run_dir, metrics: dict, cfg) -> None:
    recorded = metrics["provenance"]
    assert recorded["code"]["commit"] == head_commit()
    assert isinstance(recorded["code"]["dirty"], bool)
    assert recorded["versions"]["torch"] and recorded["versions"]["pytorch-lightning"] and recorded["versions"]["pyod"]
    assert recorded["hardware"]["cpu"] and recorded["hardware"]["cpu_cores"] >= 1
    saved = OmegaConf.to_container(OmegaConf.load(run_dir / CONFIG_FILE), resolve=True)
    assert saved == OmegaConf.to_container(cfg, resolve=True)  # the full resolved config, model options included
    assert recorded["config_fingerprint"] == config_fingerprint(saved)


@pytest.mark.skipif(not (REPO_ROOT / ".git").exists(), reason="needs the git checkout")
def test_a_network_run_records_its_config_commit_versions_and_precision(tmp_path, monkeypatch, caplog) -> None:
    # as on an AVX2-only CPU: bf16's products go through fp32 GEMMs (no slow emulation, no warning), recorded
    monkeypatch.setattr("itsr.provenance.cpu_flags", lambda cpuinfo=None: {"avx2", "fma"})
    cfg = compose_cfg(
        [
            *tiny_overrides("itsr"),
            "dataset.epochs.itsr_pretrain=1",
            "dataset.epochs.itsr_round=1",
            "dataset.epochs.itsr_retrain=1",
            "model.refinement.rounds=1",
            "trainer.precision=bf16-mixed",
        ]
    )
    routed = count_routed(monkeypatch)
    with caplog.at_level("WARNING"):
        metrics = train_and_evaluate(cfg, tmp_path)
    check_recorded(tmp_path, metrics, cfg)
    assert routed["forward"] > 0 and routed["backward"] > 0  # training's products took the route
    assert metrics["provenance"]["precision"] == "bf16-mixed"
    assert metrics["provenance"]["hardware"]["cpu_bf16_native"] is False
    assert metrics["provenance"]["bf16_matmul"] == "fp32-gemm"
    assert "without native bf16" not in caplog.text
    saved = OmegaConf.load(tmp_path / CONFIG_FILE)
    assert saved.model.refinement.rounds == 1 and saved.model.module.hidden == [32, 32]


@pytest.mark.skipif(not (REPO_ROOT / ".git").exists(), reason="needs the git checkout")
def test_a_peer_run_records_the_same(tmp_path) -> None:
    cfg = compose_cfg(["model=knn", "threads=1"])
    metrics = train_and_evaluate(cfg, tmp_path)
    check_recorded(tmp_path, metrics, cfg)
    assert metrics["provenance"]["precision"] == "pyod-default"
    assert "bf16_matmul" not in metrics["provenance"]  # no bf16 products to route


def test_the_fingerprint_ignores_seeds_and_paths_but_not_a_method_setting() -> None:
    base = OmegaConf.to_container(compose_cfg(["model=itsr"]), resolve=True)
    assert config_fingerprint({**base, "seed": 7, "data_dir": "/elsewhere", "threads": 2}) == config_fingerprint(base)
    # which kernels multiply bf16 (the same products), and a config from before that key existed
    assert config_fingerprint({**base, "cpu_bf16_matmul": "native"}) == config_fingerprint(base)
    before_key = {k: v for k, v in base.items() if k != "cpu_bf16_matmul"}
    assert config_fingerprint(before_key) == config_fingerprint(base) and config_differences(before_key, base) == []
    for model in ("itsr", "iforest"):  # composed with another seed: the configs' copies of it (`${seed}`) too
        first, other = (
            OmegaConf.to_container(compose_cfg([f"model={model}", f"seed={seed}"]), resolve=True) for seed in (0, 7)
        )
        assert config_fingerprint(first) == config_fingerprint(other), model
    changed = json.loads(json.dumps(base))
    changed["model"]["refinement"]["nu"] = 0.05
    assert config_fingerprint(changed) != config_fingerprint(base)


def with_provenance(run_dir, commit: str, fingerprint: str, dirty: bool = False) -> None:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    metrics["provenance"] = {
        "code": {"commit": commit, "dirty": dirty},
        "config_fingerprint": fingerprint,
        "precision": "32-true",
    }
    write_json_atomic(run_dir / "metrics.json", metrics)


def provenance_rows(root) -> dict[str, str]:
    runs, problems = read_runs([root])
    text = render(runs, problems, [])
    section = text.split("## Provenance")[1].split("\n## ")[0]
    return {line.split(" | ")[2]: line for line in section.splitlines() if line.startswith("| mnist")}


def test_the_report_shows_commits_per_group_and_flags_mixed_ones(tmp_path) -> None:
    with_provenance(fake_run(tmp_path, "itsr0", seed=0), "a" * 40, "f1")
    with_provenance(fake_run(tmp_path, "itsr1", seed=1), "a" * 40, "f1")
    with_provenance(fake_run(tmp_path, "aae0", model="aae", seed=0), "a" * 40, "f2")
    with_provenance(fake_run(tmp_path, "aae1", model="aae", seed=1), "b" * 40, "f2", dirty=True)
    with_provenance(fake_run(tmp_path, "ae0", model="ae", seed=0), "a" * 40, "f3")
    with_provenance(fake_run(tmp_path, "ae1", model="ae", seed=1), "a" * 40, "f4")
    fake_run(tmp_path, "old", model="ae", alpha=0.01)  # made before provenance was recorded
    rows = provenance_rows(tmp_path)
    assert "aaaaaaa" in rows["itsr"] and "⚠" not in rows["itsr"]
    assert "aaaaaaa, bbbbbbb+dirty" in rows["aae"] and "⚠ mixed" in rows["aae"]
    assert "f3, f4" in rows["ae"] and "⚠ mixed" in rows["ae"]
    runs, problems = read_runs([tmp_path])
    assert "| mnist_0v2 | 0.01 | ae | 1 | not recorded | not recorded |" in render(runs, problems, [])


def test_the_report_fingerprints_a_saved_config_by_todays_rules(tmp_path) -> None:
    """Two seeds of one cell whose runs recorded fingerprints under an older rule (the seed's copies
    included) are one config; a run whose config.yaml differs in a method setting is flagged."""
    from omegaconf import OmegaConf

    base = {"seed": 0, "alpha": 0.05, "dataset": {"datamodule": {"seed": 0}}, "model": {"lr": 1e-3}}
    for name, seed, lr in (("ae0", 0, 1e-3), ("ae1", 1, 1e-3)):
        run_dir = fake_run(tmp_path, name, model="ae", seed=seed)
        with_provenance(run_dir, "a" * 40, f"old-rule-{seed}")  # what an older version recorded
        config = base | {"seed": seed, "dataset": {"datamodule": {"seed": seed}}, "model": {"lr": lr}}
        (run_dir / CONFIG_FILE).write_text(OmegaConf.to_yaml(OmegaConf.create(config)))
    rows = provenance_rows(tmp_path)
    assert config_fingerprint(base) in rows["ae"] and "⚠" not in rows["ae"] and "old-rule" not in rows["ae"]
    changed = base | {"model": {"lr": 1e-4}}
    (tmp_path / "ae1" / CONFIG_FILE).write_text(OmegaConf.to_yaml(OmegaConf.create(changed)))
    assert "⚠ mixed" in provenance_rows(tmp_path)["ae"]


def test_a_key_added_later_neither_splits_fingerprints_nor_blocks_a_resume() -> None:
    """model.refinement.batch_fraction came with by=batch: a config saved before it (an ITSR checkpoint, a
    committed run) reads as having the value in effect then, 0.1; another value is a real difference."""
    before = {"seed": 0, "model": {"refinement": {"by": "svm", "nu": 0.02}, "callbacks": {"refinement": {"nu": 0.02}}}}
    now = {
        "seed": 0,
        "model": {
            "refinement": {"by": "svm", "nu": 0.02, "batch_fraction": 0.1},
            "callbacks": {"refinement": {"nu": 0.02, "batch_fraction": 0.1}},
        },
    }
    assert config_fingerprint(before) == config_fingerprint(now)
    assert config_differences(before, now) == []
    now["model"]["refinement"]["batch_fraction"] = 0.2
    assert config_fingerprint(before) != config_fingerprint(now)
    assert config_differences(before, now) == ["model.refinement.batch_fraction: 0.1 in the checkpoint, 0.2 now"]


@pytest.mark.parametrize(
    "text, flags, native",
    [
        ("model name\t: AMD EPYC\nflags\t\t: fpu avx2 fma\n\nflags\t: amx_bf16\n", {"fpu", "avx2", "fma"}, False),
        ("flags\t: fpu avx2 avx512f avx512_bf16\n", {"fpu", "avx2", "avx512f", "avx512_bf16"}, True),  # AMD Zen 4
        ("flags\t: fpu avx2 amx_bf16 amx_tile\n", {"fpu", "avx2", "amx_bf16", "amx_tile"}, True),  # Intel with AMX
        ("processor\t: 0\nFeatures\t: fp asimd bf16\n", None, None),  # Arm: no x86 flags line, unknown
    ],
)
def test_cpu_flags_come_from_the_first_flags_line(tmp_path, text, flags, native) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(text)
    assert cpu_flags(cpuinfo) == flags and cpu_bf16_native(cpuinfo) is native


def test_no_cpuinfo_means_unknown(tmp_path) -> None:
    assert cpu_flags(tmp_path / "missing") is None and cpu_bf16_native(tmp_path / "missing") is None


def test_a_copy_without_git_records_the_commit_it_was_made_at(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("ITSR_CODE_COMMIT", "0123abc")
    recorded = code_version(tmp_path)  # not a git checkout
    assert recorded["commit"] == "0123abc" and recorded["dirty"] is None
    monkeypatch.delenv("ITSR_CODE_COMMIT")
    assert code_version(tmp_path)["commit"] is None


def test_a_run_records_the_code_it_started_with_and_says_when_the_checkout_changed_meanwhile(
    tmp_path, monkeypatch
) -> None:
    """A worktree moved while a run trained: metrics.json names the commit the run started at, not the one
    found at its end, and records the later one apart; a run whose checkout did not change records no second."""
    start, end = {"commit": "a" * 40, "dirty": False}, {"commit": "b" * 40, "dirty": False}
    seen = iter([start, end])
    monkeypatch.setattr("itsr.run.code_version", lambda: next(seen))
    monkeypatch.setattr("itsr.provenance.code_version", lambda: next(seen))
    moved = train_and_evaluate(compose_cfg(["model=knn", "threads=1"]), tmp_path / "moved")
    assert moved["provenance"]["code"] == start and moved["provenance"]["code_at_end"] == end
    assert json.loads((tmp_path / "moved" / "metrics.json").read_text())["provenance"]["code"]["commit"] == "a" * 40
    same = iter([start, start])
    monkeypatch.setattr("itsr.run.code_version", lambda: next(same))
    monkeypatch.setattr("itsr.provenance.code_version", lambda: next(same))
    still = train_and_evaluate(compose_cfg(["model=knn", "threads=1"]), tmp_path / "still")
    assert still["provenance"]["code"] == start and "code_at_end" not in still["provenance"]

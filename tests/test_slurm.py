"""Multiruns through Hydra's submitit launchers, for real.

The SLURM tests bring up a single-node SLURM cluster on localhost (scripts/local-slurm.sh: Debian
packages, munged, slurmctld, slurmd), send a 2 x 2 grid through hydra/launcher=slurm as one job array,
check every job's metrics.json and that each job was a task of that array, and stop the daemons again
if they started them. They skip where SLURM cannot run (not Linux, not root, no apt-get) or when
ITSR_SLURM_TESTS=0.
The local launcher (submitit_local) needs nothing but the venv.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from tests.conftest import DATA_DIR, REPO_ROOT

SCRIPT = REPO_ROOT / "scripts" / "local-slurm.sh"
SLURM_DIR = Path(os.environ.get("ITSR_SLURM_DIR", "/tmp/itsr-slurm"))
UNSUPPORTED = 77  # local-slurm.sh: SLURM cannot run on this machine
TINY_AAE = [
    "model=aae",
    "dataset.epochs.aae=1",
    "model.module.hidden=[16,16]",
    "model.module.disc_hidden=[16,16]",
    "threads=1",
    "curves.every_n_epochs=1",
    f"data_dir={DATA_DIR}",
]
MULTIRUN_TIMEOUT_S = 240

pytestmark = pytest.mark.slow


def tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])


def script(command: str, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), command], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def slurm_env() -> dict[str, str]:
    """A running local SLURM cluster; the environment that reaches it (our slurm.conf, the sacct
    stand-in first on PATH). Started here, and then stopped here, unless it was already running."""
    if os.environ.get("ITSR_SLURM_TESTS", "1") == "0":
        pytest.skip("ITSR_SLURM_TESTS=0: no local SLURM cluster (it installs Debian packages and runs daemons)")
    if not sys.platform.startswith("linux"):
        pytest.skip(f"a local SLURM cluster needs Linux, this is {sys.platform}")
    if os.geteuid() != 0:
        pytest.skip("a local SLURM cluster needs root (scripts/local-slurm.sh installs packages, runs daemons)")
    started_here = script("status", timeout=60).returncode != 0
    if started_here:
        t0 = time.monotonic()
        start = script("start", timeout=900)  # includes apt-get install on a fresh machine
        if start.returncode == UNSUPPORTED:
            pytest.skip(f"SLURM cannot be started here: {start.stderr.strip()}")
        if start.returncode != 0:
            script("stop", timeout=120)
            pytest.fail(
                f"scripts/local-slurm.sh start failed ({start.returncode}):\n{tail(start.stdout)}\n{start.stderr}"
            )
        print(f"local SLURM cluster started in {time.monotonic() - t0:.1f} s")
    env = dict(os.environ)
    env["SLURM_CONF"] = str(SLURM_DIR / "slurm.conf")
    env["PATH"] = f"{SLURM_DIR / 'bin'}{os.pathsep}{env['PATH']}"
    yield env
    if started_here:
        stop = script("stop", timeout=120)
        assert stop.returncode == 0, stop.stdout + stop.stderr


def multirun(overrides: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "itsr.run", "-m", *overrides]
    result = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=MULTIRUN_TIMEOUT_S)
    assert result.returncode == 0, f"{' '.join(cmd)}\n{tail(result.stdout)}\n{tail(result.stderr)}"
    return result


def job_dirs(sweep: Path) -> list[Path]:
    return sorted(p for p in sweep.iterdir() if p.is_dir() and not p.name.startswith("."))


def check_metrics(run_dir: Path) -> dict:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert {"observed", "unobserved"} <= set(metrics["metrics"]), run_dir
    for by_criterion in metrics["metrics"].values():
        assert set(by_criterion) == {"rec", "lik", "combined"}
    return metrics


def submitit_log(sweep: Path, job_id: str) -> str:
    """What the job printed: submitit writes <id>_<task>_log.out into <sweep>/.submitit/<id>/."""
    return (sweep / ".submitit" / job_id / f"{job_id}_0_log.out").read_text()


ACTIVE_STATES = {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING"}
SETTLE_TIMEOUT_S = 60


def settled_array_states(array_id: str, env: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    """The state of each task of an array once SLURM has finished with all of them.

    submitit hands back a job's result as soon as the job has pickled it, which is before slurmd has
    reaped the process and slurmctld has marked the task COMPLETED; reading the states at once races
    with that bookkeeping (seen in CI: two tasks still RUNNING). Poll until no task is active."""
    t0 = time.monotonic()
    while True:
        shown = subprocess.run(
            ["scontrol", "-o", "show", "job", array_id], env=env, capture_output=True, text=True, check=True
        ).stdout.splitlines()
        states = {re.search(r"ArrayTaskId=(\S+)", line)[1]: re.search(r"JobState=(\S+)", line)[1] for line in shown}
        if not ACTIVE_STATES & set(states.values()) or time.monotonic() - t0 > SETTLE_TIMEOUT_S:
            print(f"array {array_id}, {time.monotonic() - t0:.1f} s after the last result: {states}")
            return states, shown
        time.sleep(0.5)


def test_a_multirun_through_slurm_runs_every_job_as_a_task_of_one_array(slurm_env, tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    t0 = time.monotonic()
    multirun(
        [
            "hydra/launcher=slurm",
            "dataset=mnist,fmnist",
            "alpha=0.05,0.01",
            *TINY_AAE,
            f"hydra.sweep.dir={sweep}",
            "hydra.launcher.timeout_min=10",
            "hydra.launcher.cpus_per_task=1",
            "hydra.launcher.mem_gb=1",
        ],
        env=slurm_env,
    )
    print(f"4-job SLURM array finished in {time.monotonic() - t0:.1f} s")

    dirs = job_dirs(sweep)
    assert len(dirs) == 4, dirs
    grid = set()
    array_ids, tasks = set(), set()
    for run_dir in dirs:
        metrics = check_metrics(run_dir)
        grid.add((metrics["config"]["dataset"], metrics["config"]["alpha"]))
        assert metrics["torch_threads"] == 1
        # hydra.job.id is submitit's job id: <array job id>_<task id> under SLURM
        job_id = str(OmegaConf.load(run_dir / ".hydra" / "hydra.yaml").hydra.job.id)
        match = re.fullmatch(r"(\d+)_(\d+)", job_id)
        assert match, f"{run_dir.name}: job id {job_id!r} is not a SLURM array task"
        array_ids.add(match[1])
        tasks.add(int(match[2]))
        assert f"JobEnvironment(job_id={job_id}," in submitit_log(sweep, job_id)
    assert grid == {("mnist", 0.05), ("mnist", 0.01), ("fmnist", 0.05), ("fmnist", 0.01)}
    assert len(array_ids) == 1 and tasks == {0, 1, 2, 3}
    (array_id,) = array_ids
    # SLURM's own record: four tasks of that array, all completed on node localhost
    states, shown = settled_array_states(array_id, slurm_env)
    assert states == {str(t): "COMPLETED" for t in range(4)}, shown
    assert all("NodeList=localhost" in line for line in shown)


def test_a_slurm_job_that_dies_without_a_result_is_reported_not_waited_for(slurm_env, tmp_path: Path) -> None:
    """submitit learns a job's fate from sacct; without an accounting database the stand-in answers.
    A job killed before it wrote its result must come back as failed within seconds."""
    program = textwrap.dedent(
        """
        import os, signal, sys
        import submitit

        def die():
            os.kill(os.getpid(), signal.SIGKILL)

        executor = submitit.AutoExecutor(folder=sys.argv[1], cluster="slurm")
        executor.update_parameters(timeout_min=2, cpus_per_task=1, mem_gb=1)
        job = executor.submit(die)
        try:
            job.result()
        except submitit.core.utils.UncompletedJobError as error:
            print("STATE", job.state, str(error).splitlines()[0])
            sys.exit(0)
        sys.exit("the killed job returned a result")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", program, str(tmp_path / "submitit")],
        cwd=REPO_ROOT,
        env=slurm_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "STATE FAILED" in result.stdout


def test_a_multirun_through_the_local_launcher_runs_jobs_as_processes(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    multirun(
        [
            "hydra/launcher=local",
            "dataset=mnist",
            "alpha=0.05,0.01",
            *TINY_AAE,
            f"hydra.sweep.dir={sweep}",
            "hydra.launcher.timeout_min=10",
        ]
    )
    dirs = job_dirs(sweep)
    assert len(dirs) == 2, dirs
    assert {check_metrics(d)["config"]["alpha"] for d in dirs} == {0.05, 0.01}
    for run_dir in dirs:
        job_id = str(OmegaConf.load(run_dir / ".hydra" / "hydra.yaml").hydra.job.id)
        assert job_id.isdigit(), job_id  # the local executor's job id: the process id
        assert f"JobEnvironment(job_id={job_id}," in submitit_log(sweep, job_id)


def test_the_script_reads_pid_files_only_where_a_missing_one_cannot_end_it(tmp_path: Path) -> None:
    """A daemon removes its own pid file as it exits, between the script's check and its read, and bash ends a
    `set -e` script on a failed `$(<file)` even inside an `if` (`stop` failed so in a clean-clone `make test`,
    2026-12-05). The race is too narrow to provoke, so: bash still behaves so here, and the script never reads a
    file that way (pid files go through `pid_in`, which fails quietly)."""
    probe = "set -euo pipefail; f() { local x; x=$(<" + str(tmp_path / "gone.pid") + "); }; if f; then :; fi; echo on"
    assert subprocess.run(["bash", "-c", probe], capture_output=True, text=True).stdout == ""
    assert "$(<" not in SCRIPT.read_text()

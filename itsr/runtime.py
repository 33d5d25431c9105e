"""What happens around a run: its cores, SLURM, resuming, and things going wrong; kept out of run.py so
that stays compose-fit-write.

- One job per run directory: a lock (flock) that dies with its process, so kill -9 never blocks a resume.
- A checkpoint records the config that made it; resuming it with another config is refused by key.
- Checkpoints are written atomically: a full disk or a kill never leaves a truncated one to resume from.
- SIGTERM stops a run with a non-zero status and says how to resume it; in a grid, which jobs did not run.
"""

from __future__ import annotations

import fcntl
import io
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.plugins.io import TorchCheckpointIO

from itsr.atomic import write_bytes_atomic, write_json_atomic
from itsr.data.fetch import DataUnavailableError
from itsr.errors import RunDirRefused, UserError
from itsr.provenance import with_keys_added_later
from itsr.results import FAILURE_FILE

log = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"  # in the run directory
LOCK_FILE = ".itsr.lock"  # in the run directory; held (flock) while a job runs there
LAST_CHECKPOINT = "last"  # ckpt_path=last: resume, and fail if there is nothing to resume
AUTO_RESUME = "auto"  # ckpt_path=auto: resume when the run directory has a checkpoint, else start
CONFIG_KEY = "itsr_config"  # where a checkpoint keeps the resolved config that made it
EXIT_STOPPED = 128 + signal.SIGTERM  # the shell's status for "terminated by SIGTERM"
# Keys that may differ between a checkpoint's config and the resuming run: where and how fast the run
# computes, where data and logs live, how it resumes. Everything else changes the results, so it must match.
RESUME_MAY_CHANGE = (
    "threads",
    "flush_denormal",  # changes only values below float32's smallest normal, as threads changes summation order
    "cpu_bf16_matmul",  # changes only fp32 summation order inside bf16 matrix products (a resume on another CPU)
    "ckpt_path",
    "data_dir",
    "download",
    "logger",
    "score_batch_size",
    "data_on_device",
    "compile",
    "progress",
    "trainer.accelerator",
    "trainer.devices",
    "trainer.enable_progress_bar",
    "trainer.enable_model_summary",
    "trainer.log_every_n_steps",
)


class RunCheckpoint(ModelCheckpoint):
    """<run dir>/checkpoints: the newest checkpoint every N epochs and at the end, and last.ckpt as a
    link to it (no second copy), which `ckpt_path=auto` resumes from."""

    def __init__(self, every_n_epochs: int, dirpath: str | None = None):
        super().__init__(
            dirpath=dirpath,
            filename="epoch{epoch}",
            auto_insert_metric_name=False,
            every_n_epochs=every_n_epochs,
            save_top_k=1,  # with no monitor: the newest one
            save_last="link",
        )

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self.dirpath is None:  # the run directory is the trainer's root, not the logger's folder
            self.dirpath = str(Path(trainer.default_root_dir) / CHECKPOINT_DIR)
        super().setup(trainer, pl_module, stage)


class RunStopped(SystemExit):
    """SIGTERM (or SIGINT) stopped the run. A SystemExit, so that `except Exception` in libraries
    cannot swallow it and a grid stops instead of starting the next job; the status is non-zero."""

    def __init__(self, message: str):
        super().__init__(EXIT_STOPPED)
        self.message = message

    def __str__(self) -> str:
        return self.message


# ---------------------------------------------------------------- one job per run directory


@contextmanager
def run_dir_lock(run_dir: Path) -> Iterator[None]:
    """Hold the run directory for this process. flock is released by the kernel when the process
    dies, however it dies (kill -9, pre-emption), so a stale lock file never blocks a resume."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_FILE
    handle = open(path, "a+")  # noqa: SIM115 -- held open for the duration of the run
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise RunDirRefused(
            f"{run_dir} is in use by a running job ({holder}); two runs in one directory would overwrite "
            "each other. Wait for it, stop it, or choose another hydra.run.dir."
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
    handle.flush()
    try:
        yield
    finally:
        handle.close()


def run_dir_holder(run_dir: Path) -> str | None:
    """Who holds the run directory's lock now ("pid N on HOST"), or None when no job runs there. A probe:
    it takes the lock for an instant and creates nothing (a queue asks before it starts a run)."""
    path = run_dir / LOCK_FILE
    if not path.is_file():
        return None
    with open(path) as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return handle.read().strip() or "another process"
        fcntl.flock(handle, fcntl.LOCK_UN)
    return None


# ---------------------------------------------------------------- resume only into the same run


def resolved_config(cfg: DictConfig) -> dict:
    """The run's config as plain data (a weights_only checkpoint holds nothing else)."""
    return OmegaConf.to_container(cfg, resolve=True)


class RecordConfig(pl.Callback):
    """Stores the config that made a checkpoint in it, so a resume can check it is the same run."""

    def __init__(self, config: dict):
        self.config = config

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        checkpoint[CONFIG_KEY] = self.config


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning writes checkpoints in place; a full disk or a kill mid-write left a truncated
    last.ckpt that the next resume tripped on. Temp file + rename instead, as for every result."""

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        write_bytes_atomic(path, buffer.getvalue())


def _flatten(obj, prefix: str = "") -> dict[str, object]:
    if isinstance(obj, dict):
        out: dict[str, object] = {}
        for key, value in obj.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out or {prefix[:-1]: {}}
    return {prefix[:-1]: obj}


# Keys that only say how a run is built, added when runs became config-built (issue 13): their values
# interpolate keys that are compared anyway. A checkpoint written before them lacks them; that alone is
# no difference, so such a checkpoint still resumes.
BUILD_ONLY_KEYS = (
    "callbacks",
    "dataset.datamodule",
    "model.callbacks",
    "model.refinement._target_",
    "model.refinement.score_batch_size",
)


def _may_change(key: str) -> bool:
    return any(key == k or key.startswith(f"{k}.") for k in RESUME_MAY_CHANGE)


def _built_only_now(key: str, saved: dict) -> bool:
    return key not in saved and any(key == k or key.startswith(f"{k}.") for k in BUILD_ONLY_KEYS)


def config_differences(saved: dict, current: dict) -> list[str]:
    """'key: saved -> current' for every key that changes results and differs (a key added since the
    checkpoint was written counts at the value it had in effect then, itsr.provenance.KEYS_ADDED_LATER)."""
    old, new = _flatten(with_keys_added_later(saved)), _flatten(current)
    return [
        f"{key}: {old.get(key, '(absent)')!r} in the checkpoint, {new.get(key, '(absent)')!r} now"
        for key in sorted(set(old) | set(new))
        if not _may_change(key) and not _built_only_now(key, old) and old.get(key) != new.get(key)
    ]


def read_checkpoint(path: Path) -> dict:
    """A checkpoint as plain data; a pickled (code-carrying) or damaged file is refused by name."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise RunDirRefused(
            f"{path}: refused or unreadable checkpoint ({type(error).__name__}); itsr checkpoints hold tensors "
            "and plain data only. Move it away to start afresh in that directory (ckpt_path=null), or give "
            "another ckpt_path."
        ) from None
    if not isinstance(state, dict) or "state_dict" not in state:
        raise RunDirRefused(f"{path}: not a Lightning checkpoint (no state_dict); it cannot be resumed")
    return state


def check_resume(path: Path, current: dict) -> None:
    """Refuse to continue a checkpoint that another config made (seed, model, alpha, epochs, ...)."""
    saved = read_checkpoint(path).get(CONFIG_KEY)
    if saved is None:
        log.warning("%s records no config (written before itsr checked resumes); resuming it unchecked", path)
        return
    differences = config_differences(saved, current)
    if differences:
        raise RunDirRefused(
            f"{path} was made by another config, so resuming it would mix two runs:\n  "
            + "\n  ".join(differences)
            + "\nResume with the checkpoint's values or choose another hydra.run.dir (an unfinished run can also "
            "be started afresh there with ckpt_path=null, which replaces its checkpoints)."
        )


def last_checkpoint(run_dir: Path) -> Path:
    """<run dir>/checkpoints/last.ckpt: the link to the newest checkpoint, which ckpt_path=auto resumes."""
    return run_dir / CHECKPOINT_DIR / "last.ckpt"


def checkpoint_epoch(run_dir: Path) -> int | None:
    """Epochs completed in the run directory's last checkpoint, or None when there is none."""
    last = last_checkpoint(run_dir)
    try:
        return int(torch.load(last, map_location="cpu", weights_only=True)["epoch"]) + 1
    except Exception:  # no checkpoint, or one that cannot be read: nothing to resume from
        return None


# ---------------------------------------------------------------- stopping on SIGTERM


def stopped_message(run_dir: Path, signum: int) -> str:
    name = signal.Signals(signum).name
    epochs = checkpoint_epoch(run_dir)
    if epochs is None:
        resume = "it had no checkpoint yet; the same command starts it afresh"
    else:
        resume = (
            f"it can be resumed from its last checkpoint ({epochs} epochs done): run the same command with "
            f"hydra.run.dir={run_dir} (ckpt_path=auto resumes)"
        )
    return f"run stopped by {name} in {run_dir}; no results were written; {resume}"


class _Stopping:
    """Whether Lightning's fit loop runs now: it then stops the run itself at the end of a batch."""

    in_fit = False


_STOPPING = _Stopping()


@contextmanager
def stop_on_signal(run_dir: Path, in_slurm: bool) -> Iterator[None]:
    """SIGTERM stops the run with RunStopped (status 143) instead of Lightning's SystemExit with status 0.

    Outside `trainer.fit` (loading data, scoring, writing results) it raises at once. Inside, Lightning's
    handler runs first and stops the loop at the end of the batch, never mid-checkpoint; `fit_stopped`
    converts that. Inside a SLURM job submitit owns the signals (USR2 requeues) and is left alone."""
    if in_slurm or threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        if not _STOPPING.in_fit:
            raise RunStopped(stopped_message(run_dir, signum))

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def fit_stopped(run_dir: Path) -> Iterator[None]:
    """Lightning's SIGTERMException (a SystemExit without a code, i.e. status 0) becomes RunStopped."""
    from pytorch_lightning.utilities.exceptions import SIGTERMException

    _STOPPING.in_fit = True
    try:
        yield
    except SIGTERMException:
        raise RunStopped(stopped_message(run_dir, signal.SIGTERM)) from None
    finally:
        _STOPPING.in_fit = False


def jobs_not_run(sweep_dir: Path, job_num: int) -> list[str] | None:
    """The overrides of the grid's jobs after job_num, as the basic sweeper orders them, or None when
    that cannot be worked out (another sweeper, no multirun.yaml)."""
    try:
        from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
        from hydra.core.override_parser.overrides_parser import OverridesParser

        saved = OmegaConf.load(sweep_dir / "multirun.yaml")
        if not str(saved.hydra.sweeper._target_).endswith("BasicSweeper"):
            return None
        params = [f"{k}={v}" for k, v in (saved.hydra.sweeper.get("params") or {}).items()]
        overrides = OverridesParser.create().parse_overrides([*params, *saved.hydra.overrides.task])
        jobs = [job for batch in BasicSweeper.split_arguments(overrides, None) for job in batch]
    except Exception:  # best effort: the message then says only that later jobs did not run
        return None
    return [" ".join(job) for job in jobs[job_num + 1 :]]


def available_cores() -> int:
    """Cores this job owns: SLURM's allocation inside a SLURM job, else the process's CPU set."""
    slurm = os.environ.get("SLURM_CPUS_PER_TASK")
    if slurm and slurm.isdigit():
        return int(slurm)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def default_threads() -> int:
    """The cores this job owns, shared with the jobs that a parallel launcher runs beside it
    (one busy neighbour cut a 2-thread matmul from 138 to 16 GFLOP/s here; 1 thread kept 80)."""
    cores = available_cores()
    try:
        parallel_jobs = int(HydraConfig.get().launcher.get("n_jobs") or 1)
    except ValueError:  # not started by Hydra
        parallel_jobs = 1
    if parallel_jobs < 0:  # joblib's -1: as many jobs as cores
        parallel_jobs = cores
    return max(1, cores // max(1, parallel_jobs))


def configure_torch(threads: int | None, flush_denormal: bool) -> None:
    """Torch's threads (this job's share of the cores when None) and its handling of denormal floats.

    Flushing denormals (below 1.2e-38) to zero matters on CPUs: in long runs half of Adam's moments sink
    into that range and each optimizer step ran 18x slower (59 vs 3.2 ms for the AE at epoch 1950 of the
    paper-scale run, one thread). The values lost lie far below Adam's eps (1e-8). GPUs are unaffected.
    """
    torch.set_num_threads(threads or default_threads())
    torch.set_flush_denormal(flush_denormal)


def slurm_plugins() -> list | None:
    """Inside a SLURM job, let submitit own requeueing (USR2, then ckpt_path=auto resumes) and keep
    Lightning's SLURM environment from installing a second requeue handler."""
    from pytorch_lightning.plugins.environments import SLURMEnvironment

    return [SLURMEnvironment(auto_requeue=False)] if SLURMEnvironment.detect() else None


def in_slurm_job() -> bool:
    from pytorch_lightning.plugins.environments import SLURMEnvironment

    return SLURMEnvironment.detect()


def resolve_ckpt_path(ckpt_path: str | None, run_dir: Path) -> str | None:
    """None, a path, "last" (must exist) or "auto" (resume if there is something to resume).

    "auto" is the default, so a job that SLURM requeues after pre-emption or a time limit starts again
    in the same directory and continues from its last checkpoint instead of starting over.
    """
    if ckpt_path is None:
        return None
    last = last_checkpoint(run_dir)
    if ckpt_path == AUTO_RESUME:
        return str(last) if last.exists() else None
    path = last if ckpt_path == LAST_CHECKPOINT else Path(ckpt_path)
    if not path.is_file():
        raise RunDirRefused(
            f"ckpt_path={ckpt_path!r}: no checkpoint at {path}. To resume a run, start it again in its "
            "own directory (hydra.run.dir=<that run dir>) with ckpt_path=last, or give a .ckpt path."
        )
    return str(path)


def user_error(error: Exception) -> UserError | None:
    """Errors that come from the user's input (a value, a file, a directory), as a UserError that
    Hydra prints without a traceback; None for anything else (a bug keeps its traceback)."""
    if isinstance(error, UserError):
        return error
    if isinstance(error, (ValueError, DataUnavailableError, FileNotFoundError, PermissionError, NotADirectoryError)):
        return UserError(f"{type(error).__name__}: {error}")
    if isinstance(error, OSError) and error.filename:  # e.g. a full disk while writing a result
        return UserError(f"{error.filename}: {error.strerror or error}")
    return None


def log_in_grid(error: Exception) -> None:
    """Hydra prints only a grid's first error at its end: each failed job says its own as it fails."""
    if HydraConfig.get().mode == RunMode.MULTIRUN:
        log.error("%s", error)


def report_stopped(stop: RunStopped) -> None:
    """Say that the run stopped and how to resume it; in a grid, also which jobs did not run."""
    hydra_cfg = HydraConfig.get()
    lines = [f"error: {stop}"]
    if hydra_cfg.mode == RunMode.MULTIRUN:
        later = jobs_not_run(Path(hydra_cfg.sweep.dir), hydra_cfg.job.num)
        lines.append(
            f"the grid stopped at job #{hydra_cfg.job.num}; the jobs after it did not run" + (":" if later else "")
        )
        lines += [f"  {job}" for job in later or []]
        lines.append(
            f"to finish the grid, run the same command with hydra.sweep.dir={hydra_cfg.sweep.dir}: "
            "finished jobs keep their results, the stopped one resumes"
        )
    print("\n".join(lines), file=sys.stderr, flush=True)


def clear_earlier_failure(run_dir: Path) -> None:
    """An attempt now holds the directory and has passed its checks, so the last attempt's failed.json no
    longer describes it: a resumed run that is then killed with -9 (no note written) would otherwise keep an
    older stop's note, with that stop's epoch count, beside newer checkpoints."""
    (run_dir / FAILURE_FILE).unlink(missing_ok=True)


@contextmanager
def failures_noted(run_dir: Path) -> Iterator[None]:
    """A job that fails leaves failed.json (the report shows it) and says why without a traceback when
    the cause is the user's input; a grid's other jobs go on (Hydra raises once the whole grid has run).
    A refused run directory belongs to another run or a running job: nothing is written into it."""
    try:
        yield
    except RunDirRefused as error:
        log_in_grid(error)
        raise
    except RunStopped as stop:
        write_json_atomic(run_dir / FAILURE_FILE, {"error": "RunStopped", "message": str(stop)})
        report_stopped(stop)
        raise
    except Exception as error:
        write_json_atomic(run_dir / FAILURE_FILE, {"error": type(error).__name__, "message": str(error)})
        refusal = user_error(error)
        if refusal is None:
            raise
        log_in_grid(refusal)
        raise refusal from error  # HYDRA_FULL_ERROR=1 still shows where it came from
    (run_dir / FAILURE_FILE).unlink(missing_ok=True)

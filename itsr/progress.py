"""A run's progress on stderr: a redrawn line on a terminal, plain lines in logs and under SLURM.

Lightning's own bar is off (conf/trainer/default.yaml): it redraws per batch, which floods a log
file with carriage returns, and it knows nothing of ITSR's phases. This callback writes once per
epoch at most: epoch e/E, the phase (ITSR: pretraining, refinement round k of d, retraining), the
time since training started and the estimated time left, and the epoch's mean losses. In a grid each
line starts with "job i of n". stdout is left to the results table that users and tests parse.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections import deque
from pathlib import Path
from typing import TextIO

import pytorch_lightning as pl

LOSS_PREFIX = "loss/"  # the mean epoch losses the modules log (AnomalyModel.accumulate_losses)
NO_SCHEDULE_PHASE = "training"  # AE and AAE: one phase
SEPARATOR = " | "
FALLBACK_COLUMNS = 80  # terminal width when it cannot be read
RATE_WINDOW = 10  # epochs the time left is estimated from: a slow start or a neighbour's job fades out


def describe_phase(schedule, epoch: int) -> str:
    """The phase a (0-based) epoch trains in, with the round during refinement.

    schedule: itsr.refinement.RefinementSchedule, or None for a model without one. Round k trains
    after the k-th detection, which follows epoch pretrain_epochs + (k-1) * round_epochs.
    """
    if schedule is None:
        return NO_SCHEDULE_PHASE
    phase = schedule.phase_of_epoch(epoch)
    if phase != "refinement":
        return phase
    round_ = (epoch - schedule.pretrain_epochs) // schedule.round_epochs + 1
    return f"refinement round {round_} of {schedule.rounds}"


def format_duration(seconds: float) -> str:
    """h:mm:ss, short enough for a terminal line and unambiguous in a log."""
    hours, rest = divmod(int(round(seconds)), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def _multirun_config():
    """Hydra's config of this job when it is one job of a multirun (-m), else None."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    try:
        hydra_cfg = HydraConfig.get()
    except ValueError:  # not started by Hydra (tests, a script)
        return None
    return hydra_cfg if hydra_cfg.mode == RunMode.MULTIRUN else None


def grid_size(sweep_dir: Path) -> int | None:
    """How many jobs the grid has, or None when that cannot be known.

    Hydra tells a job only its own number (hydra.job.num), never the total. The sweeper decides the
    jobs, not the launcher, and Hydra's basic sweeper saves the grid's overrides to multirun.yaml in
    the sweep directory before it launches any job; every launcher in conf/hydra/launcher (basic,
    parallel = joblib, local and slurm = submitit) runs under it and gives each job the same sweep
    directory, so the job list is worked out from that file as runtime.jobs_not_run does. Another
    sweeper (Optuna, Ax, ...) decides its jobs as it goes: then n is unknown and None is returned.
    """
    from itsr.runtime import jobs_not_run

    every_job = jobs_not_run(sweep_dir, -1)  # the jobs after job -1: all of them
    return None if every_job is None else len(every_job)


def current_job() -> str | None:
    """ "job i of n" (i counts from 1; the run directory's prefix is hydra.job.num = i - 1) in a
    multirun, "job i" when n cannot be known, None outside a multirun."""
    hydra_cfg = _multirun_config()
    if hydra_cfg is None:
        return None
    number = hydra_cfg.job.num + 1
    total = grid_size(Path(hydra_cfg.sweep.dir))
    return f"job {number} of {total}" if total else f"job {number}"


def jobs_share_the_terminal() -> bool:
    """True when a launcher runs several jobs of this grid at once with one stderr (joblib's
    processes inherit it): their redrawn lines would overwrite each other, so they write plain lines."""
    hydra_cfg = _multirun_config()
    if hydra_cfg is None:
        return False
    return int(hydra_cfg.launcher.get("n_jobs") or 1) != 1  # joblib's -1: as many as cores


class RunProgress(pl.Callback):
    """Writes the run's progress to stderr (or `stream`), once per epoch at most.

    On a terminal: one line, redrawn in place with a carriage return after every epoch, ended with
    a newline when training ends. Otherwise (a log file, SLURM, a pipe): plain lines, never a
    carriage return, for the first epoch of each phase (and the first one of a resumed run), every
    `every_n_epochs` epochs and the last epoch.

    The epoch's losses are logged by the module's own on_train_epoch_end, which Lightning calls after
    the callbacks' hooks; so an epoch's line is written when the next epoch starts, or when training
    ends.
    """

    def __init__(self, every_n_epochs: int, schedule=None, stream: TextIO | None = None, job: str | None = None):
        if every_n_epochs < 1:
            raise ValueError(f"progress.every_n_epochs must be >= 1, got {every_n_epochs}")
        self.every_n_epochs = every_n_epochs
        self.schedule = schedule  # itsr.refinement.RefinementSchedule or None
        self.stream = stream  # None: sys.stderr as it is when writing (pytest swaps it)
        self.job = job  # None: worked out from Hydra when training starts
        self._redraw = False
        self._drawn_width = 0  # characters of the redrawn line now on the terminal
        self._pending: int | None = None  # the epoch whose line is due
        self._first_epoch = 0
        self._started = 0.0
        self._epoch_ends: deque[float] = deque(maxlen=RATE_WINDOW + 1)  # when the latest epochs ended

    @property
    def out(self) -> TextIO:
        return self.stream if self.stream is not None else sys.stderr

    # Lightning hooks -------------------------------------------------------------------------
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._started = time.monotonic()
        self._epoch_ends.clear()
        self._first_epoch = trainer.current_epoch  # > 0 when resumed from a checkpoint
        if self.job is None:
            self.job = current_job()
        isatty = getattr(self.out, "isatty", None)
        self._redraw = bool(isatty and isatty()) and not jobs_share_the_terminal()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._pending = trainer.current_epoch
        self._epoch_ends.append(time.monotonic())
        # Clear the redrawn line after an epoch that ends a phase or the fit: the other callbacks' hooks
        # log there (ITSR's rounds, Lightning's "fit stopped"), and a log line must not be appended to
        # ours. Lightning calls callbacks in list order, so this one comes first (run.py).
        epoch = trainer.current_epoch
        if epoch + 1 == trainer.max_epochs or self._phase(epoch + 1) != self._phase(epoch):
            self._erase()

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._write_pending(trainer)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._write_pending(trainer)
        self._end_line()

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._end_line()  # the error's message starts on a line of its own

    # Lines ----------------------------------------------------------------------------------
    def _phase(self, epoch: int) -> str:
        return describe_phase(self.schedule, epoch)

    def _wants_line(self, epoch: int, max_epochs: int) -> bool:
        """Without a terminal: phase changes, every N epochs, the first epoch run here, the last."""
        completed = epoch + 1
        phase_starts = epoch == 0 or self._phase(epoch) != self._phase(epoch - 1)
        return (
            phase_starts
            or completed % self.every_n_epochs == 0
            or epoch == self._first_epoch
            or completed == max_epochs
        )

    def line(self, trainer: pl.Trainer, epoch: int) -> str:
        """One epoch's progress: [job i of n |] epoch e/E | phase | times | losses."""
        max_epochs = trainer.max_epochs
        elapsed = time.monotonic() - self._started
        left = self.seconds_per_epoch(epoch) * (max_epochs - epoch - 1)
        losses = " ".join(
            f"{name.removeprefix(LOSS_PREFIX)} {float(value):.4g}"
            for name, value in sorted(trainer.callback_metrics.items())
            if name.startswith(LOSS_PREFIX)
        )
        parts = [
            self.job,
            f"epoch {epoch + 1}/{max_epochs}",
            self._phase(epoch),
            f"{format_duration(elapsed)} elapsed, {format_duration(left)} left",
            losses or None,
        ]
        return SEPARATOR.join(part for part in parts if part)

    def seconds_per_epoch(self, epoch: int) -> float:
        """The mean duration of the last RATE_WINDOW epochs; over every epoch run here until there are two
        epoch ends to measure between. Start-up (data, the first epoch's warm-up) and a busy spell long
        past do not stretch the estimate for the rest of a long run."""
        ends = self._epoch_ends
        if len(ends) >= 2:
            return (ends[-1] - ends[0]) / (len(ends) - 1)
        done_here = epoch + 1 - self._first_epoch
        return (time.monotonic() - self._started) / done_here if done_here > 0 else 0.0

    def _write_pending(self, trainer: pl.Trainer) -> None:
        epoch, self._pending = self._pending, None
        if epoch is None:
            return
        if self._redraw:
            self._draw(self.line(trainer, epoch))
        elif self._wants_line(epoch, trainer.max_epochs):
            print(self.line(trainer, epoch), file=self.out, flush=True)

    def _draw(self, text: str) -> None:
        """Redraw in place; cut to the terminal's width, since a wrapped line cannot be redrawn."""
        text = text[: self._columns() - 1]
        self.out.write("\r" + text.ljust(self._drawn_width))
        self.out.flush()
        self._drawn_width = len(text)

    def _columns(self) -> int:
        """The width of the terminal this stream writes to (stdout may be piped while stderr is not)."""
        try:
            return os.get_terminal_size(self.out.fileno()).columns
        except (AttributeError, OSError, ValueError):  # no file descriptor, or not a terminal
            return shutil.get_terminal_size((FALLBACK_COLUMNS, 1)).columns

    def _erase(self) -> None:
        if not self._drawn_width:
            return
        self.out.write("\r" + " " * self._drawn_width + "\r")
        self.out.flush()
        self._drawn_width = 0

    def _end_line(self) -> None:
        if self._drawn_width:
            self.out.write("\n")
            self.out.flush()
            self._drawn_width = 0

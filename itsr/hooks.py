"""What a callback may offer the run beyond Lightning's hooks, declared once (light: no Lightning import).

A callback that owns the training schedule and adds to the run's files (ITSR's refinement) implements
`RunParticipant`; the run, the curves, the progress display and the results writers find it by this
type instead of probing for attribute names one by one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class RunParticipant(Protocol):
    schedule: Any  # what the progress display shows (itsr.refinement.RefinementSchedule)

    @property
    def total_epochs(self) -> int:
        """The training length this callback's schedule needs: the run's max_epochs."""
        ...

    def phase_of_epoch(self, epoch: int) -> str:
        """The phase a (0-based) epoch trains in, for the curves and the progress display."""
        ...

    def add_results(self, metrics: dict, run_dir: Path) -> None:
        """Add this callback's figures to metrics.json (and write its own files) when the run ends."""
        ...

    def train_score_columns(self, dm) -> dict[str, list]:
        """Extra columns of train_scores.csv, one value per training sample."""
        ...


def participants(callbacks) -> list[RunParticipant]:
    return [c for c in callbacks if isinstance(c, RunParticipant)]

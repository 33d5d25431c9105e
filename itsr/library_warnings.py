"""Silence third-party messages that say nothing about a run, so that what is printed matters.

Each entry names its source and why nothing is lost; every other warning still shows.
"""

from __future__ import annotations

import logging
import re
import warnings

LIGHTNING_INFO_LOGGER = "pytorch_lightning.utilities.rank_zero"

# Lightning advertises its cloud logger (litlogger) at every Trainer start.
IGNORED_LOG_LINES = ("Tip: For seamless cloud logging",)

IGNORED_WARNINGS = (
    # pytorch_lightning's own pytree helper, against torch >= 2.10: a deprecation inside Lightning.
    "`isinstance(treespec, LeafSpec)` is deprecated",
    # srun is on PATH but this process is not an srun task (a login node, a submitit job, our local test
    # cluster): the hint is about launching Lightning with srun, which our launchers do not need.
    "The `srun` command is available on your system but is not used",
)


class _DropLines(logging.Filter):
    def __init__(self, fragments: tuple[str, ...]) -> None:
        super().__init__()
        self.fragments = fragments

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(fragment in message for fragment in self.fragments)


def silence_third_party_noise() -> None:
    """Safe to call on every run: warnings.filterwarnings replaces an identical filter instead of adding a
    second one, and the log filter is added once. Called per run, not cached, because pytest and
    warnings.catch_warnings reset the warning filters between runs in one process."""
    for message in IGNORED_WARNINGS:
        warnings.filterwarnings("ignore", message=re.escape(message))
    lightning = logging.getLogger(LIGHTNING_INFO_LOGGER)
    if not any(isinstance(f, _DropLines) for f in lightning.filters):
        lightning.addFilter(_DropLines(IGNORED_LOG_LINES))

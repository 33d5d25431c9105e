"""Refusals of user input. Hydra prints a CompactHydraException as its message alone, so a user who
gave a bad value, file or directory reads what to change, not a traceback."""

from __future__ import annotations

from hydra.errors import CompactHydraException


class UserError(CompactHydraException):
    """Bad input or a refused action; the message names the option or file and what is allowed."""


class RunDirRefused(UserError):
    """The run directory holds another run or a running job; nothing in it was touched."""

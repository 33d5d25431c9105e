"""Refusals of user input. Hydra prints a CompactHydraException as its message alone, so a user who
gave a bad value, file or directory reads what to change, not a traceback."""

from __future__ import annotations

from hydra.errors import CompactHydraException


class UserError(CompactHydraException):
    """Bad input or a refused action; the message names the option or file and what is allowed."""


class RunDirRefused(UserError):
    """The run directory holds another run or a running job; nothing in it was touched."""


class ConfigError(ValueError, UserError):
    """A config value is out of range; the message names the key and what is allowed."""


class OptionError(ValueError):
    """A constructor argument breaks its rule. The class that owns a rule checks it, once; the builder
    (itsr.build) turns this into a ConfigError naming the config key the value came from."""

    def __init__(self, option: str, rule: str, value):
        super().__init__(f"{option} {rule}, got {value!r}")
        self.option, self.rule, self.value = option, rule, value


def check_choice(option: str, value, allowed: tuple) -> None:
    if value not in allowed:
        raise OptionError(option, f"must be one of {allowed}", value)


def check_positive_int(option: str, value) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise OptionError(option, "must be a positive integer", value)

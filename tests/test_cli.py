"""The `itsr` command: each subcommand is its `python -m itsr.<name>` form, with the same arguments."""

from __future__ import annotations

import subprocess
import sys
import tomllib

import pytest

from itsr.cli import COMMANDS, USAGE_ERROR
from tests.conftest import REPO_ROOT


def python_m(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", *arguments], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300
    )


def test_the_console_script_is_declared() -> None:
    """`make install` (pip install -e .) installs the `itsr` command from this entry."""
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    assert project["scripts"]["itsr"] == "itsr.cli:main"


def test_help_lists_every_subcommand() -> None:
    out = python_m("itsr.cli", "--help")
    assert out.returncode == 0
    for name in ("run", "predict", "report", "data", "bench"):
        assert f"\n  {name} " in out.stdout
    assert set(COMMANDS) == {"run", "predict", "report", "data", "bench"}


@pytest.mark.parametrize("arguments", [[], ["train"]], ids=["none", "unknown"])
def test_no_or_an_unknown_subcommand_names_the_choices(arguments: list[str]) -> None:
    out = python_m("itsr.cli", *arguments)
    assert out.returncode == USAGE_ERROR
    assert "run, predict, report, data, bench" in out.stderr and "Traceback" not in out.stderr
    if arguments:
        assert "unknown command 'train'" in out.stderr


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_a_subcommands_help_is_its_modules_help(name: str) -> None:
    ours, theirs = python_m("itsr.cli", name, "--help"), python_m(f"itsr.{name}", "--help")
    assert ours.returncode == theirs.returncode == 0, ours.stderr[-2000:]
    # the same text, bar the program's name (argparse rewraps the usage lines to the name's length)
    words = " ".join(theirs.stdout.replace(f"python -m itsr.{name}", f"itsr {name}").split())
    assert " ".join(ours.stdout.split()) == words and words
    if name != "run":  # argparse's usage line names the command the user typed; Hydra's help names none
        assert ours.stdout.startswith(f"usage: itsr {name} ")


def test_run_passes_hydras_arguments_unchanged() -> None:
    """--cfg, overrides and a refused value reach Hydra as with python -m itsr.run."""
    arguments = ("--cfg", "job", "alpha=0.01", "model=ae")
    shown = python_m("itsr.cli", "run", *arguments)
    assert shown.returncode == 0 and shown.stdout == python_m("itsr.run", *arguments).stdout
    assert "alpha: 0.01" in shown.stdout
    refused = python_m("itsr.cli", "run", "alpha=0.7")
    assert refused.returncode == 1 and "alpha must lie in" in refused.stderr and "Traceback" not in refused.stderr

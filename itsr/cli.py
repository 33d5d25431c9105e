"""The `itsr` command: one name for every entry point, `itsr run ...` being `python -m itsr.run ...`.

Each subcommand runs its module the way `python -m` does (runpy, as __main__, sys.argv[0] set to the
module's file), so the arguments after the subcommand reach Hydra's or argparse's parser unchanged:
overrides, -m, --help, --cfg and exit statuses behave exactly as with `python -m itsr.<name>`.
A module may be a file or a package with a __main__.py; runpy runs either.
"""

from __future__ import annotations

import runpy
import sys

USAGE_ERROR = 2  # the exit status of a usage error, as argparse and the shell use it
HELP_FLAGS = ("-h", "--help")

# subcommand -> (module run as __main__, one line for `itsr --help`)
COMMANDS = {
    "run": ("itsr.run", "train and evaluate a model, or with -m a grid of runs (Hydra overrides)"),
    "predict": ("itsr.predict", "score new images with a trained run's model.pt"),
    "report": ("itsr.report", "read run directories and set the numbers beside the paper's"),
    "data": ("itsr.data", "fetch and verify the MNIST / Fashion-MNIST data cache"),
    "bench": ("itsr.bench", "speed benchmark: our training path against a plain PyTorch loop"),
}


_invoked_as: str | None = None  # "itsr NAME" while main() runs a subcommand


def program_name(module: str) -> str:
    """The name a module's --help and usage errors show: `itsr NAME` when run through this command,
    `python -m MODULE` otherwise."""
    return _invoked_as or f"python -m {module}"


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: itsr COMMAND [ARGUMENTS...]", "", "commands:"]
    lines += [f"  {name:<{width}}  {summary}" for name, (_, summary) in COMMANDS.items()]
    lines += ["", "`itsr COMMAND ...` is `python -m itsr.COMMAND ...`; `itsr COMMAND --help` shows its own help."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else list(argv)
    if args and args[0] in HELP_FLAGS:
        print(usage())
        return
    if not args or args[0] not in COMMANDS:
        problem = "no command given" if not args else f"unknown command {args[0]!r}"
        print(f"itsr: {problem}; choose one of: {', '.join(COMMANDS)}\n\n{usage()}", file=sys.stderr)
        sys.exit(USAGE_ERROR)
    module, _ = COMMANDS[args[0]]
    # set in the module the subcommands import: under `python -m itsr.cli` this file runs as __main__,
    # a different module object from the `itsr.cli` that program_name() reads from
    import itsr.cli

    itsr.cli._invoked_as = f"itsr {args[0]}"
    sys.argv = [sys.argv[0], *args[1:]]  # runpy replaces argv[0] with the module's file, as python -m does
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()

"""Reads run directories (never console logs) and sets our numbers beside the paper's.

    python -m itsr.report DIR... [--out FILE]
    python -m itsr.report DIR... --profile [--out FILE]    # the robustness profile across class pairs and alpha

Every metrics.json below the given directories is read; runs are grouped by setting, alpha,
method, test split and criterion; the Markdown report shows the paper's Table 1 and Fig. 5 layouts
with our mean +- std over seeds, the paper's value and the difference, then AUROC and AP, which the
paper lacks. Figures are written as PNG beside the report. Failed, half-written or unreadable runs
are listed, never dropped silently, and so is a second run of one seed (a rerun, a copy), which the
means leave out; a grid whose runs all failed still gets a report that lists each
failure with its error. The exit status is non-zero only when no run directory at all was found.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from itsr.atomic import write_bytes_atomic
from itsr.cli import program_name
from itsr.report.markdown import render
from itsr.report.runs import one_run_per_seed, read_runs
from itsr.report.tables import aggregate

# exit statuses: a report was written; no run directory to write about; the report could not be written
OK, NOTHING_READ, NOT_WRITTEN = 0, 1, 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=program_name("itsr.report"), description=__doc__.split("\n")[0])
    parser.add_argument("dirs", nargs="+", type=Path, help="sweep or run directories to read")
    parser.add_argument("--out", type=Path, default=None, help="Markdown file (default: DIR/report.md)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing report (as itsr.predict)")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="write the robustness profile instead (per method and alpha over class pairs, what refinement "
        "gains, wins per alpha, pairs where every method fails, refinement precision against alpha)",
    )
    args = parser.parse_args(argv)
    out = args.out or args.dirs[0] / "report.md"
    if out.is_dir():
        print(f"error: --out {out} is a directory; give a file name such as {out / 'report.md'}", file=sys.stderr)
        return NOT_WRITTEN
    if out.exists() and not args.overwrite:
        print(f"error: {out} exists; pass --overwrite to replace it (or another --out)", file=sys.stderr)
        return NOT_WRITTEN
    every_run, problems = read_runs(args.dirs)
    runs, duplicates = one_run_per_seed(every_run)
    problems += duplicates
    for problem in problems:
        print(f"skipped {problem.path}: {problem.status}: {problem.reason}", file=sys.stderr)
    if not every_run and not any(problem.path.is_dir() for problem in problems):  # a missing DIR is not a run
        print(f"no run directory (metrics.json or failed.json) below {', '.join(map(str, args.dirs))}", file=sys.stderr)
        return NOTHING_READ
    if not runs:  # a grid that failed is when a report is needed most: it lists every failure and its error
        print(f"no finished run below {', '.join(map(str, args.dirs))}: the report lists the failures", file=sys.stderr)
    # here, not at the top: matplotlib loads only when a report is drawn, not on `import itsr.report`
    from itsr.report.figures import profile_curves, write_report_figures

    try:
        if args.profile:
            from itsr.report.profile import render_profile

            figures = profile_curves(runs, out.parent) if runs else []
            text = render_profile(runs, problems, figures)
        else:
            figures = write_report_figures(runs, aggregate(runs), out.parent)
            text = render(runs, problems, figures, every_run)
        write_bytes_atomic(out, text.encode())
    except OSError as error:  # no permission, full disk: name the file; nothing half-written is left
        print(f"error: cannot write {error.filename or out}: {error.strerror or error}", file=sys.stderr)
        return NOT_WRITTEN
    print(f"report: {out} ({len(runs)} runs, {len(problems)} skipped or failed, {len(figures)} figures)")
    return OK

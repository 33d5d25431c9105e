"""Atomic writes: a reader never sees a half-written results file, a crash never leaves one."""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

# mkstemp creates files readable by the owner only; results and caches are for everyone.
FILE_MODE = 0o644


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Temp file in the target folder + fsync + os.replace: readers never see a partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), FILE_MODE)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as error:  # e.g. a full disk: say which result could not be written
        Path(tmp).unlink(missing_ok=True)
        raise OSError(error.errno, error.strerror or str(error), str(path)) from error
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: str | Path, obj: object) -> None:
    text = json.dumps(obj, indent=2, allow_nan=True, sort_keys=False) + "\n"
    write_bytes_atomic(path, text.encode())


def write_csv_atomic(path: str | Path, rows: Iterable[dict]) -> None:
    """Rows as CSV; the header is the union of the keys, in first-seen order."""
    rows = list(rows)
    fields: list[str] = []
    for row in rows:
        fields.extend(k for k in row if k not in fields)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_bytes_atomic(path, buffer.getvalue().encode())

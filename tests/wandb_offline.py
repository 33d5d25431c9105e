"""Reads an offline W&B run file (`run-*.wandb`) back, for tests.

The file is a LevelDB-style log (the format of W&B's own datastore): a 7-byte header, then 32 KiB
blocks of records, each with a 7-byte header (crc32, length, type) and a protobuf `Record`.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

HEADER = 7
BLOCK = 32 * 1024
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def raw_records(path: Path):
    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    pos, pending = HEADER, b""
    while pos + HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < HEADER:  # zero padding at the end of a block
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + HEADER])
        pos += HEADER
        chunk, pos = data[pos : pos + length], pos + length
        if kind == FULL:
            yield chunk
        elif kind == FIRST:
            pending = chunk
        elif kind == MIDDLE:
            pending += chunk
        elif kind == LAST:
            yield pending + chunk
        elif kind == 0 and length == 0:
            pos += BLOCK - pos % BLOCK if pos % BLOCK else 0


def read_run(path: Path) -> dict:
    """group, job_type, tags, config keys, and the history and summary keys with their last values."""
    from wandb.proto import wandb_internal_pb2 as pb

    out: dict = {"history": {}, "summary": {}, "config": {}, "files": []}
    for data in raw_records(path):
        record = pb.Record()
        record.ParseFromString(data)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            out.update(group=record.run.run_group, job_type=record.run.job_type, tags=list(record.run.tags))
            out["config"].update({i.key: i.value_json for i in record.run.config.update})
        elif kind == "config":
            out["config"].update({i.key: i.value_json for i in record.config.update})
        elif kind == "history":
            for item in record.history.item:
                out["history"][item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
        elif kind == "summary":
            for item in record.summary.update:
                out["summary"][item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
        elif kind == "files":
            out["files"] += [f.path for f in record.files.files]
    return out

"""Strict reader and writer for IDX files, the container format of MNIST and Fashion-MNIST.

Pure numpy, so the data path does not depend on torchvision. Every malformed input
raises IdxFormatError naming the file and the defect, because a silently truncated
training set is far harder to debug than a crash.
"""

from __future__ import annotations

import gzip
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# First two bytes of every gzip stream (RFC 1952); detection does not trust the suffix.
GZIP_MAGIC = b"\x1f\x8b"
# IDX magic: two zero bytes, a type code, then the number of dimensions.
MAGIC_PREFIX = b"\x00\x00"
MAGIC_LENGTH = 4
# Each dimension size is a big-endian unsigned 32-bit integer after the magic.
DIM_SIZE_BYTES = 4
# IDX type codes (from the format's definition on the MNIST page) -> big-endian dtype.
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
TYPE_CODES = {dtype.newbyteorder("="): code for code, dtype in IDX_DTYPES.items()}
MAX_DIMS = 255  # the dimension count is a single byte


class IdxFormatError(ValueError):
    """A file is not a well-formed IDX file (or not a readable gzip stream of one)."""


@dataclass(frozen=True)
class IdxHeader:
    """What the header says: element type, shape, and where the data starts."""

    dtype: np.dtype
    shape: tuple[int, ...]
    data_offset: int


def read_maybe_gzip(path: str | os.PathLike) -> bytes:
    """Return the file's bytes, decompressed when they start with the gzip magic."""
    raw = Path(path).read_bytes()
    if not raw.startswith(GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as error:
        raise IdxFormatError(f"{path}: corrupt gzip stream: {error}") from error


def parse_idx_header(data: bytes, source: str) -> IdxHeader:
    """Validate magic, header completeness and exact data length; `source` names the file."""
    if len(data) < MAGIC_LENGTH:
        raise IdxFormatError(f"{source}: truncated: {len(data)} bytes, shorter than the 4-byte magic")
    if data[:2] != MAGIC_PREFIX:
        raise IdxFormatError(f"{source}: bad magic {data[:MAGIC_LENGTH].hex()}: must start with two zero bytes")
    type_code, ndims = data[2], data[3]
    if type_code not in IDX_DTYPES:
        raise IdxFormatError(f"{source}: unknown IDX type code 0x{type_code:02x}")
    if ndims == 0:
        raise IdxFormatError(f"{source}: bad magic: zero dimensions")
    data_offset = MAGIC_LENGTH + DIM_SIZE_BYTES * ndims
    if len(data) < data_offset:
        raise IdxFormatError(
            f"{source}: truncated header: {ndims} dimensions need {data_offset} bytes, file has {len(data)}"
        )
    shape = tuple(int(size) for size in np.frombuffer(data, dtype=">u4", count=ndims, offset=MAGIC_LENGTH))
    dtype = IDX_DTYPES[type_code]
    expected = int(np.prod(shape, dtype=object)) * dtype.itemsize
    actual = len(data) - data_offset
    if actual < expected:
        raise IdxFormatError(
            f"{source}: truncated: header says {expected} bytes of data for shape {shape}, file has {actual}"
        )
    if actual > expected:
        raise IdxFormatError(
            f"{source}: {actual - expected} trailing bytes after the {expected} bytes of data for shape {shape}"
        )
    return IdxHeader(dtype=dtype, shape=shape, data_offset=data_offset)


def decode_idx(data: bytes, source: str) -> np.ndarray:
    """Decode an in-memory IDX file into a writable, native-byte-order array."""
    header = parse_idx_header(data, source)
    array = np.frombuffer(data, dtype=header.dtype, offset=header.data_offset).reshape(header.shape)
    return array.astype(header.dtype.newbyteorder("="))  # copies: writable, safe for torch.from_numpy


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read a raw or gzip-compressed IDX file; raise IdxFormatError if it is malformed."""
    return decode_idx(read_maybe_gzip(path), str(path))


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write `array` as IDX, gzip-compressed when the name ends in .gz (for tests and tools)."""
    array = np.asarray(array)
    native = array.dtype.newbyteorder("=")
    if native not in TYPE_CODES:
        raise ValueError(f"IDX cannot store dtype {array.dtype}; supported: {sorted(map(str, TYPE_CODES))}")
    if not 1 <= array.ndim <= MAX_DIMS:
        raise ValueError(f"IDX needs 1 to {MAX_DIMS} dimensions, array has {array.ndim}")
    type_code = TYPE_CODES[native]
    header = MAGIC_PREFIX + bytes([type_code, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    payload = header + np.ascontiguousarray(array, dtype=IDX_DTYPES[type_code]).tobytes()
    if str(path).endswith(".gz"):
        payload = gzip.compress(payload)
    Path(path).write_bytes(payload)

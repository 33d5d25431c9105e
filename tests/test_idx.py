"""IDX reader: round trips and every kind of malformed file it must reject with a clear message."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from itsr.data.idx import IdxFormatError, read_idx, write_idx


def _images(count: int = 3) -> np.ndarray:
    return np.arange(count * 4 * 5, dtype=np.uint8).reshape(count, 4, 5)


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_round_trip_uint8(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"images-idx3-ubyte{suffix}"
    write_idx(path, _images())
    loaded = read_idx(path)
    assert loaded.dtype == np.uint8 and loaded.shape == (3, 4, 5)
    np.testing.assert_array_equal(loaded, _images())
    assert loaded.flags.writeable


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.float32, np.float64])
def test_round_trip_other_types(tmp_path: Path, dtype: type) -> None:
    array = (np.arange(12) - 6).astype(dtype).reshape(3, 4)
    write_idx(tmp_path / "a.idx", array)
    loaded = read_idx(tmp_path / "a.idx")
    assert loaded.dtype == np.dtype(dtype) and loaded.dtype.isnative
    np.testing.assert_array_equal(loaded, array)


def test_header_is_big_endian(tmp_path: Path) -> None:
    write_idx(tmp_path / "labels", np.array([7, 1, 2], dtype=np.uint8))
    assert (tmp_path / "labels").read_bytes() == bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 1, 2])


def test_gzip_detected_by_content_not_suffix(tmp_path: Path) -> None:
    write_idx(tmp_path / "x.gz", _images())
    disguised = tmp_path / "train-images-idx3-ubyte"
    disguised.write_bytes((tmp_path / "x.gz").read_bytes())
    np.testing.assert_array_equal(read_idx(disguised), _images())


def _write_raw(tmp_path: Path, payload: bytes, name: str = "bad-idx3-ubyte") -> Path:
    path = tmp_path / name
    path.write_bytes(payload)
    return path


def _valid_bytes(tmp_path: Path) -> bytes:
    write_idx(tmp_path / "valid", _images())
    return (tmp_path / "valid").read_bytes()


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda b: b"\x01" + b[1:], "bad magic"),
        (lambda b: b[:2] + b"\x0a" + b[3:], "unknown IDX type code 0x0a"),
        (lambda b: b[:3] + b"\x00" + b[4:], "zero dimensions"),
        (lambda b: b[:3] + b"\x02" + b[4:], "trailing bytes"),  # fewer dims than written: data too long
        (lambda b: b[:3] + b"\x20" + b[4:], "truncated header"),  # 32 dims need 132 header bytes
        (lambda b: b[:-7], "truncated: header says 60 bytes of data"),
        (lambda b: b + b"junk", "4 trailing bytes"),
        (lambda b: b[:2], "truncated"),
        (lambda b: b"", "truncated"),
    ],
)
def test_malformed_file_names_path_and_defect(tmp_path: Path, mutate, message: str) -> None:
    path = _write_raw(tmp_path, mutate(_valid_bytes(tmp_path)))
    with pytest.raises(IdxFormatError, match=message) as caught:
        read_idx(path)
    assert str(path) in str(caught.value)


def test_truncated_message_reports_both_sizes(tmp_path: Path) -> None:
    path = _write_raw(tmp_path, _valid_bytes(tmp_path)[: 16 + 10])  # header (4 + 3*4) + 10 data bytes
    with pytest.raises(IdxFormatError, match=r"header says 60 bytes of data for shape \(3, 4, 5\), file has 10"):
        read_idx(path)


def test_malformed_inside_gzip_is_rejected(tmp_path: Path) -> None:
    path = _write_raw(tmp_path, gzip.compress(_valid_bytes(tmp_path)[:-1]), "bad.gz")
    with pytest.raises(IdxFormatError, match="truncated"):
        read_idx(path)


@pytest.mark.parametrize("damage", ["cut", "flip"])
def test_corrupt_gzip_names_file(tmp_path: Path, damage: str) -> None:
    compressed = bytearray(gzip.compress(_valid_bytes(tmp_path)))
    if damage == "cut":
        compressed = compressed[: len(compressed) // 2]
    else:
        compressed[-6] ^= 0xFF  # inside the CRC32 trailer
    path = _write_raw(tmp_path, bytes(compressed), "images.gz")
    with pytest.raises(IdxFormatError, match="corrupt gzip") as caught:
        read_idx(path)
    assert str(path) in str(caught.value)


def test_write_rejects_unsupported_dtype(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot store dtype"):
        write_idx(tmp_path / "x", np.zeros(3, dtype=np.uint16))

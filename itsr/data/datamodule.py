"""The LightningDataModule: in-memory tensors, per-sample weights and a sampler that honours them.

Training batches are dicts {"x", "weight", "index"}; they carry no label, so no training code path
can read one. Labels live on the module (train_is_anomaly, test splits) for evaluation and logging.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Sampler

from itsr.data.fetch import DATASETS, fetch, read_arrays
from itsr.data.images import MNIST_PREPROCESSING, Preprocessing
from itsr.data.splits import (
    TEST_SPLITS,
    check_alpha,
    check_holdout_fraction,
    contaminated_training_indices,
    evaluation_split_indices,
    holdout_split,
)
from itsr.errors import OptionError, check_choice

# Raw IDX pixels are bytes; the decoder's sigmoid output lives in [0, 1].
PIXEL_MAX = 255.0
CLASSES_PER_DATASET = 10  # MNIST and Fashion-MNIST both have ten classes


@dataclass
class LabelledImages:
    """Flattened images in [0, 1] with their class labels and ground truth (anomaly = True)."""

    x: torch.Tensor
    labels: torch.Tensor
    is_anomaly: torch.Tensor

    def __len__(self) -> int:
        return self.x.shape[0]

    def subset(self, index: np.ndarray) -> LabelledImages:
        index = torch.from_numpy(index)
        return LabelledImages(self.x[index], self.labels[index], self.is_anomaly[index])


def to_unit_float(images: np.ndarray) -> torch.Tensor:
    """uint8 images [N, H, W] -> float32 [N, H*W] in [0, 1]."""
    return torch.from_numpy(images.reshape(images.shape[0], -1).astype(np.float32) / PIXEL_MAX)


class NonZeroWeightBatchSampler(Sampler[torch.Tensor]):
    """Yields index batches drawn without replacement from the samples whose weight is not 0.

    The weights are read when an epoch's iteration starts, so a refinement that zeroes weights
    takes effect from the next epoch on without rebuilding the loader. The permutation depends only
    on (seed, epoch), so a resumed run draws the same batches as an uninterrupted one.
    """

    def __init__(self, weights: torch.Tensor, batch_size: int, seed: int):
        self.weights = weights
        self.batch_size = batch_size
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        # An upper bound: Lightning reads the length once, at set-up, but refinement changes how
        # many samples are drawable (fewer while refining, more again once negative weights return).
        # The epoch ends when the iterator runs out.
        return math.ceil(self.weights.numel() / self.batch_size)

    def __iter__(self):
        # Works where the weights live: on a GPU the order is built there, with one host-to-device
        # copy of the permutation per epoch and none per step. The permutation itself comes from a
        # CPU generator, so it is the same on every device.
        drawable = torch.nonzero(self.weights != 0).flatten()
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        permutation = torch.randperm(drawable.numel(), generator=generator).to(drawable.device)
        order = drawable[permutation]
        batches = list(torch.split(order, self.batch_size))
        # A batch of one sample breaks batch norm in training mode; fold it into the previous one.
        if len(batches) > 1 and batches[-1].numel() == 1:
            tail = batches.pop()
            batches[-1] = torch.cat([batches[-1], tail])
        yield from batches


class _WeightedTrainingSet(torch.utils.data.Dataset):
    """Gathers a whole batch by tensor indexing: no per-sample Python work, no collate."""

    def __init__(self, x: torch.Tensor, weights: torch.Tensor):
        self.x = x
        self.weights = weights

    def __len__(self) -> int:
        return self.x.shape[0]

    def __getitem__(self, index: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"x": self.x[index], "weight": self.weights[index], "index": index}


class AnomalyDataModule(pl.LightningDataModule):
    """A training set with per-sample weights and labelled test splits, all held as tensors.

    Subclasses say where the images come from by implementing `load()`; everything about weights,
    sampling and checkpoint state lives here once.
    """

    preprocessing: Preprocessing | None = None  # how image files become inputs; model.pt saves it for scoring

    def __init__(self, batch_size: int, seed: int):
        super().__init__()
        self.batch_size = batch_size
        self.seed = seed
        self.train: LabelledImages | None = None
        self.test: dict[str, LabelledImages] = {}
        self.sample_weights: torch.Tensor | None = None
        self._pending_weights: torch.Tensor | None = None
        self.holdout_fraction = 0.0
        self.holdout: LabelledImages | None = None  # never trained on: calibrates the thresholds (issue 23)

    def hold_out(self, fraction: float) -> None:
        """Keep this fraction of the (unlabeled, contaminated) training set out of training, drawn with
        the seed when the data is set up. It is never in the sampler, the weights, batch norm's
        statistics or the refinement's SVM: all of those see `train`, which no longer holds it."""
        check_holdout_fraction(fraction)
        if self.train is not None:
            raise RuntimeError("hold_out() must be called before setup()")
        self.holdout_fraction = fraction

    def load(self) -> tuple[LabelledImages, dict[str, LabelledImages]]:
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        if self.train is not None:
            return
        self.train, self.test = self.load()
        if self.holdout_fraction > 0:
            trained, held_out = holdout_split(len(self.train), self.holdout_fraction, self.seed)
            self.train, self.holdout = self.train.subset(trained), self.train.subset(held_out)
        self.sample_weights = torch.ones(len(self.train))
        if self._pending_weights is not None:
            self.set_sample_weights(self._pending_weights)
            self._pending_weights = None

    def place_on(self, device: torch.device | str) -> None:
        """Keep the training images and the weights on `device` (a GPU): batches are then gathered
        there, with no per-step host copy and no DataLoader workers. Labels stay on the host."""
        self.train.x = self.train.x.to(device)
        self.sample_weights = self.sample_weights.to(device)

    @property
    def input_dim(self) -> int:
        if self.train is None:
            raise RuntimeError("call setup() before asking for the input size")
        return int(self.train.x[0].numel())

    @property
    def n_train_anomalies(self) -> int:
        return int(self.train.is_anomaly.sum()) if self.train is not None else 0

    def set_sample_weights(self, weights: torch.Tensor) -> None:
        """Replace the weights in place, so the sampler and the loader see them at once."""
        weights = torch.as_tensor(weights, dtype=self.sample_weights.dtype)
        if weights.shape != self.sample_weights.shape:
            raise ValueError(f"expected {tuple(self.sample_weights.shape)} weights, got {tuple(weights.shape)}")
        if not torch.isfinite(weights).all():
            raise ValueError("sample weights must be finite")
        self.sample_weights.copy_(weights)

    def train_dataloader(self) -> DataLoader:
        sampler = NonZeroWeightBatchSampler(self.sample_weights, self.batch_size, self.seed)
        return DataLoader(
            _WeightedTrainingSet(self.train.x, self.sample_weights),
            batch_size=None,
            sampler=sampler,
        )

    def state_dict(self) -> dict:
        return {"sample_weights": self.sample_weights.clone()}

    def load_state_dict(self, state_dict: dict) -> None:
        weights = state_dict["sample_weights"]
        if self.sample_weights is None:  # restored before setup(): apply once the data is there
            self._pending_weights = weights
        else:
            self.set_sample_weights(weights)


class TensorDataModule(AnomalyDataModule):
    """Images already in memory: tests, benchmarks, and callers with their own arrays."""

    def __init__(self, train: LabelledImages, test: dict[str, LabelledImages], batch_size: int, seed: int):
        super().__init__(batch_size, seed)
        self._data = (train, test)

    def load(self) -> tuple[LabelledImages, dict[str, LabelledImages]]:
        return self._data


class BenchmarkDataModule(AnomalyDataModule):
    """MNIST or Fashion-MNIST as the paper's contaminated training set and two test splits."""

    preprocessing = MNIST_PREPROCESSING  # 28 x 28 gray, as the IDX files hold them

    def __init__(
        self,
        name: str,
        normal_class: int,
        anomaly_class: int,
        alpha: float,
        seed: int,
        data_dir: str | Path,
        batch_size: int,
        download: bool = True,
        class_names: Sequence[str] | None = None,
    ):
        super().__init__(batch_size, seed)
        check_choice("name", name, tuple(DATASETS))
        names = list(class_names) if class_names is not None else [str(c) for c in range(CLASSES_PER_DATASET)]
        for option, value in (("normal_class", normal_class), ("anomaly_class", anomaly_class)):
            if type(value) is not int or not 0 <= value < len(names):  # bool is an int: refuse true
                raise OptionError(option, f"must be a class index in 0..{len(names) - 1} ({', '.join(names)})", value)
        if normal_class == anomaly_class:
            raise OptionError("anomaly_class", "must differ from normal_class", anomaly_class)
        check_alpha(alpha)
        self.name = name
        self.normal_class = normal_class
        self.anomaly_class = anomaly_class
        self.alpha = alpha
        self.data_dir = Path(data_dir)
        self.download = download
        self._folder: Path | None = None  # the cache folder, once prepare_data has verified it

    def prepare_data(self) -> None:
        """Fetch what is missing (with download) and verify every file's checksum, once."""
        if self._folder is None:
            self._folder = fetch(self.name, self.data_dir, sources=None if self.download else ())

    def load(self) -> tuple[LabelledImages, dict[str, LabelledImages]]:
        self.prepare_data()  # a no-op when the trainer or the caller has already prepared the data
        x_train, y_train, x_test, y_test = read_arrays(self.name, self._folder)  # decode only: verified above
        idx, is_anomaly = contaminated_training_indices(
            y_train, self.normal_class, self.anomaly_class, self.alpha, self.seed
        )
        train = LabelledImages(
            to_unit_float(x_train[idx]),
            torch.from_numpy(y_train[idx].astype(np.int64)),
            torch.from_numpy(is_anomaly),
        )
        test = {}
        for split in TEST_SPLITS:
            t_idx, t_anomaly = evaluation_split_indices(y_test, self.normal_class, self.anomaly_class, split)
            test[split] = LabelledImages(
                to_unit_float(x_test[t_idx]),
                torch.from_numpy(y_test[t_idx].astype(np.int64)),
                torch.from_numpy(t_anomaly),
            )
        return train, test


ANOMALY_LABELS = {"1", "anomaly", "anomalous", "true", "yes"}
NORMAL_LABELS = {"0", "normal", "false", "no"}


def read_label_csv(path: Path) -> dict[Path, bool]:
    """`path,label` rows (header optional) -> {resolved image path: is_anomaly}; paths are relative
    to the CSV's folder unless absolute. Labels: 1/anomalous/anomaly or 0/normal."""
    import csv

    labels: dict[Path, bool] = {}
    with open(path, newline="") as handle:
        for line_no, row in enumerate(csv.reader(handle), start=1):
            if not row or (line_no == 1 and row[0].strip().lower() == "path"):
                continue
            if len(row) < 2:
                raise ValueError(f"{path}:{line_no}: expected 'path,label', got {row}")
            value = row[1].strip().lower()
            if value not in ANOMALY_LABELS | NORMAL_LABELS:
                raise ValueError(f"{path}:{line_no}: label {row[1]!r} is neither normal (0) nor anomalous (1)")
            image = Path(row[0].strip())
            labels[(image if image.is_absolute() else path.parent / image).resolve()] = value in ANOMALY_LABELS
    return labels


class FolderDataModule(AnomalyDataModule):
    """Your own images: a folder trained on without labels; labels, where given, only evaluate.

    root: training images (nested folders allowed). test_root: optional folder with `normal/` and
    `anomalous/` subfolders; test_csv: optional `path,label` list instead; train_labels_csv: optional
    labels of training images, for the refinement diagnostics only.
    """

    def __init__(
        self,
        root: str | Path,
        preprocessing: Preprocessing,
        batch_size: int,
        seed: int,
        test_root: str | Path | None = None,
        test_csv: str | Path | None = None,
        train_labels_csv: str | Path | None = None,
    ):
        super().__init__(batch_size, seed)
        self.root = Path(root)
        self.preprocessing = preprocessing
        self.test_root = Path(test_root) if test_root else None
        self.test_csv = Path(test_csv) if test_csv else None
        self.train_labels_csv = Path(train_labels_csv) if train_labels_csv else None
        self.skipped: list[tuple[Path, str]] = []

    def _labelled(self, paths: list[Path], truth: list[bool]) -> LabelledImages:
        from itsr.data.images import load_images

        x, kept, skipped = load_images(paths, self.preprocessing, progress=len(paths) > 1000)
        self.skipped += skipped
        flags = [truth[paths.index(p)] for p in kept] if kept else []
        is_anomaly = torch.tensor(flags, dtype=torch.bool)
        return LabelledImages(x, is_anomaly.long(), is_anomaly)

    def load(self) -> tuple[LabelledImages, dict[str, LabelledImages]]:
        from itsr.data.images import find_images

        for key, folder in (("root", self.root), ("test_root", self.test_root)):
            if folder is not None and not folder.is_dir():
                found = "a file" if folder.is_file() else "missing"
                raise FileNotFoundError(
                    f"dataset.{key}={folder} must be an existing folder, but it is {found}; point it at your images"
                )
        paths = find_images(self.root)
        if not paths:
            raise ValueError(f"dataset.root={self.root}: no image files (.png, .jpg, .jpeg, .bmp) found")
        known = read_label_csv(self.train_labels_csv) if self.train_labels_csv else {}
        train = self._labelled(paths, [known.get(p.resolve(), False) for p in paths])
        if len(train) == 0:
            raise ValueError(f"dataset.root={self.root}: none of the {len(paths)} files is a readable image")
        test: dict[str, LabelledImages] = {}
        if self.test_root is not None:
            normal = find_images(self.test_root / "normal")
            anomalous = find_images(self.test_root / "anomalous")
            test["test"] = self._labelled(normal + anomalous, [False] * len(normal) + [True] * len(anomalous))
        elif self.test_csv is not None:
            labels = read_label_csv(self.test_csv)
            test_paths = list(labels)
            test["test"] = self._labelled(test_paths, [labels[p] for p in test_paths])
        return train, test

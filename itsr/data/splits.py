"""The paper's contaminated training set and its two test splits (Sec. 5), as index arrays.

Labels decide which images go where; they travel with the data for evaluation and logging only.
"""

from __future__ import annotations

import math

import numpy as np

from itsr.errors import OptionError

TEST_SPLITS = ("observed", "unobserved")


ALPHA_RANGE = (0.0, 0.5)  # [low, high): anomalies are the minority of the training set (Sec. 2, 5)


def check_alpha(alpha: float) -> None:
    """The one check of the contamination rate: a number in [0, 0.5)."""
    low, high = ALPHA_RANGE
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not low <= alpha < high:
        raise OptionError("alpha", f"must lie in [{low:g}, {high:g})", alpha)


def n_anomalies_for(alpha: float, n_normal: int) -> int:
    """Anomalies to add so they make up a fraction alpha of the whole training set.

    n / (n_normal + n) = alpha  =>  n = alpha * n_normal / (1 - alpha), rounded half up.
    """
    check_alpha(alpha)
    return int(math.floor(alpha * n_normal / (1.0 - alpha) + 0.5))


def contaminated_training_indices(
    labels: np.ndarray, normal_class: int, anomaly_class: int, alpha: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """All normal training images plus a seeded draw of anomalies; returns (indices, is_anomaly).

    Indices are sorted so the set does not depend on draw order; alpha = 0 gives a clean set.
    """
    if normal_class == anomaly_class:
        raise ValueError(f"normal_class and anomaly_class must differ, both are {normal_class}")
    normal = np.flatnonzero(labels == normal_class)
    pool = np.flatnonzero(labels == anomaly_class)
    if normal.size == 0:
        raise ValueError(f"no training image has the normal class {normal_class}")
    n_anomalies = n_anomalies_for(alpha, normal.size)
    if n_anomalies > pool.size:
        raise ValueError(
            f"alpha={alpha} needs {n_anomalies} images of class {anomaly_class}, "
            f"but the training set has {pool.size}; choose a smaller alpha"
        )
    rng = np.random.default_rng(seed)
    drawn = rng.choice(pool, size=n_anomalies, replace=False)
    indices = np.sort(np.concatenate([normal, drawn]))
    return indices, labels[indices] == anomaly_class


def evaluation_split_indices(
    labels: np.ndarray, normal_class: int, anomaly_class: int, split: str
) -> tuple[np.ndarray, np.ndarray]:
    """Test images of one split; returns (indices, is_anomaly).

    observed: all normal test images + all of the training anomaly class (about 1:1).
    unobserved: all normal test images + every class that is neither normal nor the training
    anomaly class (about 1:8 on MNIST).
    """
    is_normal = labels == normal_class
    if split == "observed":
        keep = is_normal | (labels == anomaly_class)
    elif split == "unobserved":
        keep = labels != anomaly_class
    else:
        raise ValueError(f"unknown test split {split!r}; choose one of {TEST_SPLITS}")
    indices = np.flatnonzero(keep)
    return indices, ~is_normal[indices]


HOLDOUT_RANGE = (0.0, 0.5)  # [low, high): the model must still train on most of its set
HOLDOUT_STREAM = 0x686F6C64  # keeps the hold-out draw independent of the anomaly draw that uses the same seed


def check_holdout_fraction(fraction: float) -> None:
    low, high = HOLDOUT_RANGE
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not low <= fraction < high:
        raise OptionError("holdout_fraction", f"must lie in [{low:g}, {high:g})", fraction)


def holdout_split(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(trained, held_out) sorted index arrays: a seeded draw of round(fraction * n) samples, stratified by
    nothing (the training set is unlabeled), so the held-out slice is as contaminated as the rest."""
    check_holdout_fraction(fraction)
    n_held = int(math.floor(fraction * n + 0.5))
    if fraction > 0 and not 2 <= n_held <= n - 2:
        raise OptionError("holdout_fraction", f"leaves {n_held} of {n} samples held out; needs 2..{n - 2}", fraction)
    order = np.random.default_rng([seed, HOLDOUT_STREAM]).permutation(n)
    return np.sort(order[n_held:]), np.sort(order[:n_held])

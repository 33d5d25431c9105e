"""The refinement's cost: one round (encode + one-class SVM) and the SVM's scaling with the set size."""

from __future__ import annotations

import time

import numpy as np
import torch

from itsr.refinement import detect_candidates

SVM_SIZES = (6_000, 60_000, 600_000)
EXACT_SVM_MAX = 60_000  # libsvm's one-class SVM grows about quadratically; 600k would take hours
PLANTED_FRACTION = 0.05
PLANTED_RADIUS = (3.5, 6.0)  # planted outliers lie this many std from the mode: far, in the prior's tails
SVM_NU = 0.02  # the paper's nu (Sec. 5)
SCORE_BATCH_SIZE = 2048  # the runs' score_batch_size (conf/config.yaml)


def planted_codes(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """2-D codes: N(0, I) plus a fraction of sparse, far outliers (Sec. 4.2's expectation)."""
    rng = np.random.default_rng(seed)
    n_out = int(n * PLANTED_FRACTION)
    normal = rng.normal(size=(n - n_out, 2))
    angle, radius = rng.uniform(0, 2 * np.pi, n_out), rng.uniform(*PLANTED_RADIUS, n_out)
    outliers = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)
    return np.concatenate([normal, outliers]), np.r_[np.zeros(n - n_out, bool), np.ones(n_out, bool)]


def time_svm(n: int, method: str) -> dict:
    codes, truth = planted_codes(n)
    start = time.perf_counter()
    flagged = detect_candidates(codes, np.zeros(n, bool), nu=SVM_NU, method=method)
    seconds = time.perf_counter() - start
    return {
        "n": n,
        "method": method,
        "seconds": seconds,
        "planted_found": int((flagged & truth).sum()),
        "planted": int(truth.sum()),
        "flagged": int(flagged.sum()),
    }


def svm_scaling(sizes: tuple[int, ...] = SVM_SIZES) -> list[dict]:
    """Exact and Nystroem one-class SVM at each size; the exact one only up to EXACT_SVM_MAX."""
    rows = []
    for n in sizes:
        for method in ("exact", "nystroem"):
            if method == "exact" and n > EXACT_SVM_MAX:
                rows.append({"n": n, "method": method, "seconds": None, "note": "not run: quadratic growth"})
                continue
            rows.append(time_svm(n, method))
    return rows


def refinement_round_s(module, x: torch.Tensor) -> float:
    """Seconds of one refinement round: encode the training set, fit the SVM, flag candidates."""
    start = time.perf_counter()
    codes = module.score(x, SCORE_BATCH_SIZE)["code"].double().numpy()
    detect_candidates(codes, np.zeros(len(codes), bool), nu=SVM_NU)
    return time.perf_counter() - start

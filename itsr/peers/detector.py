"""Build, fit, score, save and load one PyOD detector: the only module of itsr that imports PyOD.

Input is always the flattened image in [0, 1] as the DataModules give it; detectors that standardise by
default (PCA, Deep SVDD) do so themselves, as PyOD does. Labels never reach a detector.
"""

from __future__ import annotations

import hashlib
import inspect
import io
from pathlib import Path

import numpy as np
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

from itsr.atomic import write_bytes_atomic
from itsr.peers import PEER_FILE, SCORE_CRITERION, PeerError

# PyOD's detectors take the input dimension under this name when they need it (Deep SVDD)
INPUT_DIM_OPTION = "n_features"
# PyOD's neighbour-based detectors (KNN, LOF) need more training images than neighbours
NEIGHBOURS_OPTION = "n_neighbors"
# joblib's zlib level for peer.joblib: KNN, LOF and ECOD keep the training images, mostly zero pixels
PICKLE_COMPRESSION = 3


def detector_class(target: str) -> type:
    """The class named by model.detector._target_, or a PeerError naming the key."""
    try:
        return get_class(target)
    except Exception as error:  # ImportError, AttributeError, ValueError from Hydra's locator
        raise PeerError(f"model.detector._target_={target!r}: no such class ({error})") from error


def detector_options(detector_cfg: DictConfig) -> tuple[str, dict]:
    """(target, keyword arguments) of model.detector, resolved to plain values."""
    options = OmegaConf.to_container(detector_cfg, resolve=True)
    return options.pop("_target_"), options


def constructor_options(target: str) -> list[str] | None:
    """The keyword arguments the detector's constructor takes (None: it takes any), so the config check
    can name a wrong key of model.detector instead of a TypeError deep inside Hydra's instantiate."""
    parameters = inspect.signature(detector_class(target).__init__).parameters
    if any(p.kind == p.VAR_KEYWORD for p in parameters.values()):
        return None
    return [name for name in parameters if name != "self"]


def build_detector(detector_cfg: DictConfig, model_name: str, input_dim: int):
    target, options = detector_options(detector_cfg)
    if INPUT_DIM_OPTION in options and options[INPUT_DIM_OPTION] is None:
        options[INPUT_DIM_OPTION] = input_dim
    try:
        return detector_class(target)(**options)
    except PeerError:
        raise
    except Exception as error:  # PyOD checks some values in its constructors (ValueError, TypeError)
        raise PeerError(
            f"model={model_name}: {target} refused its options ({type(error).__name__}: {error}); "
            "check model.detector.*"
        ) from error


def fit_detector(detector, x: np.ndarray, model_name: str, source: str) -> np.ndarray:
    """Fit on the training images (no labels); return the training scores the thresholds come from.

    The training scores are PyOD's `decision_scores_`, not `decision_function(x)`: for KNN and LOF they
    are leave-one-out (a training image is not its own neighbour), as a test image is scored against a
    training set it is not part of; `decision_function` on the training set would count each image as
    its own nearest neighbour at distance 0. For the other detectors both are the same numbers.
    """
    neighbours = getattr(detector, NEIGHBOURS_OPTION, None)
    if isinstance(neighbours, int) and neighbours >= len(x):
        raise PeerError(
            f"model.detector.{NEIGHBOURS_OPTION}={neighbours}: model={model_name} needs more training images "
            f"than neighbours, and the training set ({source}) has {len(x)}; lower it or add images"
        )
    try:
        detector.fit(x)
    except Exception as error:  # scikit-learn and PyOD raise many types for values they refuse
        raise PeerError(
            f"model={model_name}: {type(detector).__name__} could not fit on {len(x)} training images of "
            f"{x.shape[1]} values ({source}): {type(error).__name__}: {error}; check model.detector.*"
        ) from error
    scores = np.asarray(detector.decision_scores_, dtype=np.float64)
    if not np.isfinite(scores).all():
        raise PeerError(
            f"model={model_name}: {int((~np.isfinite(scores)).sum())} of {len(scores)} training scores are not "
            "finite, so no threshold can be taken from them; check model.detector.*"
        )
    return scores


def score_images(detector, x: np.ndarray) -> np.ndarray:
    """The detector's score per image, higher = more anomalous (PyOD's convention)."""
    return np.asarray(detector.decision_function(x), dtype=np.float64)


def criterion_scores(detector, x):
    """Scores by criterion name, as a network's ScoringModel.score gives them (a peer has one: `score`)."""
    import torch

    return {SCORE_CRITERION: torch.from_numpy(score_images(detector, x.numpy()))}


def save_peer(run_dir: Path, detector) -> str:
    """Pickle the fitted detector beside model.pt; return its SHA-256, which model.pt records."""
    import joblib

    buffer = io.BytesIO()
    joblib.dump(detector, buffer, compress=PICKLE_COMPRESSION)
    data = buffer.getvalue()
    write_bytes_atomic(run_dir / PEER_FILE, data)
    return hashlib.sha256(data).hexdigest()


def load_peer(run_dir: Path, expected_sha256: str):
    """Unpickle a run directory's detector. Unpickling runs code from the file: call this only for a
    directory the user named, and only if the file is the one its model.pt recorded."""
    import joblib

    path = Path(run_dir) / PEER_FILE
    if not path.is_file():
        raise PeerError(f"{path}: no such file; a peer run keeps its fitted detector there beside model.pt")
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != expected_sha256:
        raise PeerError(f"{path}: not the detector this run's model.pt recorded (SHA-256 differs); refused")
    return joblib.load(io.BytesIO(data))

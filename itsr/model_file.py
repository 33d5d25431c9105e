"""The scoring model file, `model.pt` in the run directory: weights, thresholds, preprocessing.

It holds tensors and plain data only and is read with `torch.load(weights_only=True)`, so loading a
file from someone else never runs code from it; a file that carries pickled objects is refused.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import torch

from itsr.atomic import write_bytes_atomic
from itsr.data.images import Preprocessing
from itsr.detector import ThresholdDetector
from itsr.models import AnomalyModel, model_class
from itsr.models.registry import registered_name
from itsr.peers import PEER_MODULE

MODEL_FILE = "model.pt"
MODEL_FORMAT = 1  # "module" holds the registered class name; files that hold "ae"/"aae" load as well


class ModelFileError(ValueError):
    """A model file that cannot be used for scoring; the message says why and what to do."""


def _plain(obj):
    """hparams as plain lists, dicts and numbers (weights_only loading accepts nothing else)."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def save_model(
    path: Path,
    module: AnomalyModel,
    model_name: str,
    detector: ThresholdDetector,
    preprocessing: Preprocessing,
    holdout_detector: ThresholdDetector | None = None,
) -> None:
    """The network (its registered class, hparams and weights), the fitted detector with its training
    scores (so other percentiles can be chosen when scoring), the detector calibrated on the held-out
    slice where the run had one, and the preprocessing."""
    payload = {
        "format": MODEL_FORMAT,
        "model": model_name,
        "module": registered_name(module),
        "hparams": _plain(dict(module.hparams)),
        "state_dict": {k: v.detach().cpu() for k, v in module.state_dict().items()},
        "preprocessing": preprocessing.to_dict(),
        **detector.to_dict(),
        "holdout_detector": None if holdout_detector is None else holdout_detector.to_dict(),
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    write_bytes_atomic(path, buffer.getvalue())


def resolve_model_path(model: str | Path) -> Path:
    path = Path(model)
    if path.is_dir():
        path = path / MODEL_FILE
    if path.suffix == ".ckpt":
        raise ModelFileError(
            f"{path}: a Lightning checkpoint holds no thresholds or preprocessing; give the run directory "
            f"or its {MODEL_FILE}"
        )
    if not path.is_file():
        raise ModelFileError(f"{path}: no model file; give a run directory of `python -m itsr.run` or its {MODEL_FILE}")
    return path


def read_model_file(model: str | Path) -> dict:
    """model.pt's content, loaded with weights_only=True: tensors and plain data, never code."""
    path = resolve_model_path(model)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ModelFileError(
            f"{path}: refused or unreadable ({type(error).__name__}); itsr model files hold tensors and plain "
            "data only, and this one does not load that way. Re-export it with `python -m itsr.run`."
        ) from error
    if not isinstance(payload, dict) or payload.get("format") != MODEL_FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise ModelFileError(
            f"{path}: model file format {found}, this version reads {MODEL_FORMAT}; retrain or "
            "use the itsr version that wrote it"
        )
    return payload


THRESHOLD_SOURCES = ("auto", "train", "holdout")  # itsr predict --thresholds


def load_model(
    model: str | Path, payload: dict | None = None, thresholds: str = "auto"
) -> tuple[AnomalyModel, ThresholdDetector, dict]:
    """The module in eval mode, its detector, and the file's metadata (payload: the file's content, if
    already read). thresholds: "train" (the paper's rule, from the training scores), "holdout" (calibrated
    on the held-out slice; refused for a model trained without one) or "auto" (holdout where there is one)."""
    path = resolve_model_path(model)
    payload = read_model_file(model) if payload is None else payload
    if payload.get("module") == PEER_MODULE:
        raise ModelFileError(
            f"{path}: holds no network (module {PEER_MODULE!r}); a PyOD peer's run directory is scored "
            "by `python -m itsr.predict RUN_DIR ...`"
        )
    for key in ("thresholds", "preprocessing", "state_dict", "hparams", "module"):
        if payload.get(key) is None:
            raise ModelFileError(f"{path}: no {key} in the model file; it cannot score images")
    try:
        module_class = model_class(payload["module"])
    except KeyError as error:
        raise ModelFileError(f"{path}: its network is not one this version scores ({error.args[0]})") from None
    _check_thresholds(path, payload, module_class.has_likelihood)
    try:
        prep = Preprocessing.from_dict(payload["preprocessing"])
        if payload["hparams"].get("input_dim") != prep.input_dim:
            raise ValueError(
                f"preprocessing {prep.size[0]}x{prep.size[1]} {prep.color} gives {prep.input_dim} inputs, the "
                f"network takes {payload['hparams'].get('input_dim')}"
            )
        module = module_class(**payload["hparams"])
        module.load_state_dict(payload["state_dict"])
        detector = saved_detector(path, payload, thresholds)
    except ModelFileError:
        raise
    except Exception as error:  # hparams, weights or preprocessing that do not fit each other
        raise ModelFileError(
            f"{path}: its {payload['module']} network or preprocessing does not fit this version "
            f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}); retrain with "
            "`python -m itsr.run` or use the itsr version that wrote it"
        ) from None
    module.eval()
    return module, detector, payload


def saved_detector(path: Path, payload: dict, thresholds: str = "auto") -> ThresholdDetector:
    """The decision rule a model file saved, networks' and peers' alike: the training set's (the paper's
    rule) or the held-out slice's (thresholds: "train", "holdout", or "auto" = holdout where there is one)."""
    if "t_rec" not in payload["thresholds"]:  # a peer's file from before peers shared ThresholdDetector
        raise ModelFileError(
            f"{path}: written by an older itsr whose peer files kept their thresholds in another layout; "
            "rerun the peer with `python -m itsr.run` (it takes seconds)"
        )
    held = payload.get("holdout_detector")
    if thresholds == "holdout" and held is None:
        raise ModelFileError(
            f"{path}: --thresholds holdout, but this model was trained without a held-out slice "
            "(scoring.holdout_fraction=0); use --thresholds train"
        )
    return ThresholdDetector.from_dict(held if thresholds in ("holdout", "auto") and held is not None else payload)


def _check_thresholds(path: Path, payload: dict, has_likelihood: bool) -> None:
    """A NaN or infinite threshold scores every image NaN and flags none: refuse such a file (a run
    whose training diverged writes one) instead of reporting "0 anomalous"."""
    thresholds = payload["thresholds"]
    needed = ("t_rec", "rec_median") + (("t_prior", "lik_median") if has_likelihood else ())
    for key in needed:
        value = thresholds.get(key) if isinstance(thresholds, dict) else None
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ModelFileError(
                f"{path}: threshold {key} is {value!r}, not a finite number (did its training diverge?); "
                "it cannot flag anything. Retrain, or check the run's metrics.json."
            )

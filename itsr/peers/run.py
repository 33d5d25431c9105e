"""A PyOD detector in the run pipeline of `itsr.run` (itsr.interface.RunModel), beside our networks.

The same pipeline, DataModule, threshold object (itsr.detector.ThresholdDetector: p90 of the training
scores, `scoring.rec_percentile`, as criterion `score`; PyOD's contamination rule as criterion
`contamination`), writers and metrics. Its own files: train_errors.png of its scores, model.pt (weights_only:
the threshold detectors with the training scores, preprocessing; no pickle) and peer.joblib (the fitted
detector, a pickle; see `itsr.peers.detector.load_peer`).
"""

from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig

from itsr.atomic import write_bytes_atomic, write_csv_atomic
from itsr.detector import ThresholdDetector
from itsr.evaluation import error_by_group
from itsr.figures import training_error_histogram
from itsr.model_file import MODEL_FILE, MODEL_FORMAT
from itsr.peers import CONTAMINATION_CRITERION, PEER_FILE, PEER_MODULE, SCORE_CRITERION
from itsr.peers.detector import build_detector, criterion_scores, detector_options, fit_detector, save_peer
from itsr.peers.refinement import refine_peer
from itsr.results import REFINEMENT_FILE, run_identity

# PyOD's deep detectors call their training length by one of these names
EPOCH_OPTIONS = ("epochs", "epoch_num")
# PyOD computes in its own dtypes (NumPy float64; Deep SVDD in torch float32); no trainer.precision applies
PEER_PRECISION = "pyod-default"


def contamination_percentile(detector) -> float:
    """PyOD's threshold_ is this percentile of the training scores (the top `contamination` flagged)."""
    return 100.0 * (1.0 - float(detector.contamination))


class PeerRun:
    """One PyOD detector's run: fitted once, or refined by its own scores (refine=itsr)."""

    score_names = (SCORE_CRITERION,)
    restart_refusal = "a peer run cannot resume, so it would start afresh"
    precision = PEER_PRECISION
    device = "cpu"

    def __init__(self, cfg: DictConfig):
        self.cfg = cfg
        self.name = cfg.model.name
        self.detector = None
        self.train_scores: np.ndarray | None = None
        self.candidates: np.ndarray | None = None
        self.history: list[dict] | None = None
        self.fit_time = self.score_time = 0.0

    def checkpoint(self, run_dir: Path, config: dict) -> None:
        return None  # a PyOD fit takes seconds and keeps no checkpoint

    def fit(self, dm, run_dir: Path, logger, ckpt_path) -> None:
        """Fit on the trained part's images (no labels, no held-out slice); pickle the fitted detector."""
        cfg, name = self.cfg, self.name
        source = f"dataset.root={cfg.dataset.root}" if "root" in cfg.dataset else cfg.dataset.setting
        started = time.perf_counter()
        refinement = cfg.model.get("refinement")
        if refinement is None:
            self.detector = build_detector(cfg.model.detector, name, dm.input_dim)
            self.train_scores = fit_detector(self.detector, dm.train.x.numpy(), name, source)
        else:  # refine=itsr: rounds of refits without the candidates (labels only for A's precision and recall)
            self.detector, self.train_scores, self.candidates, self.history = refine_peer(
                lambda: build_detector(cfg.model.detector, name, dm.input_dim),
                dm.train.x.numpy(),
                dm.train.is_anomaly.numpy(),
                refinement.rounds,
                refinement.nu,
                refinement.by,
                name,
                source,
            )
        self.fit_time = time.perf_counter() - started
        # saved as fitted: scoring may leave state behind (ECOD keeps the last scored batch, 383 MB on MNIST)
        self.peer_sha256 = save_peer(run_dir, self.detector)

    def score(self, x: torch.Tensor, batch_size: int) -> dict[str, torch.Tensor]:
        started = time.perf_counter()
        scores = criterion_scores(self.detector, x)
        self.score_time += time.perf_counter() - started
        return scores

    def training_scores(self, x: torch.Tensor, batch_size: int) -> dict[str, torch.Tensor]:
        """PyOD's own training scores (leave-one-out for KNN and LOF; candidates scored as unseen)."""
        return {SCORE_CRITERION: torch.from_numpy(self.train_scores)}

    def fit_threshold_detector(
        self, scores, rec_percentile, lik_percentile, mask=None, training: bool = True
    ) -> ThresholdDetector:
        """`score` over the training scores (the paper's T_rec rule); `contamination` as PyOD's threshold_,
        over the samples the kept detector was fitted on (a refined peer: X without A)."""
        values = scores[SCORE_CRITERION]
        fitted = None
        if training and self.candidates is not None:
            fitted = torch.from_numpy(~self.candidates)
        return ThresholdDetector.fit_single_score(
            values,
            rec_percentile,
            SCORE_CRITERION,
            {CONTAMINATION_CRITERION: contamination_percentile(self.detector)},
            mask=mask,
            extra_mask=fitted,
        )

    def identity(self) -> dict:
        _, options = detector_options(self.cfg.model.detector)
        identity = run_identity(
            self.cfg,
            epochs=next((options[k] for k in EPOCH_OPTIONS if k in options), None),
            batch_size=options.get("batch_size"),
        )
        return identity | {
            "detector": self.cfg.model.detector._target_,
            "detector_options": options,
            "score_percentile": self.cfg.scoring.rec_percentile,
        }

    def train_summary(self, scores: dict[str, torch.Tensor], is_anomaly: torch.Tensor) -> dict:
        return {"train_scores": error_by_group(scores[SCORE_CRITERION], is_anomaly, prefix="score")}

    def train_score_columns(self, dm) -> dict[str, list]:
        return {} if self.candidates is None else {"candidate": self.candidates.astype(int).tolist()}

    def save(self, run_dir: Path, result, dm) -> None:
        """model.pt of a peer: plain data and tensors only (weights_only loading), pointing at peer.joblib;
        the threshold detectors in the networks' layout, the calibrated one where the run had a held-out slice."""
        target, options = detector_options(self.cfg.model.detector)
        payload = {
            "format": MODEL_FORMAT,
            "model": self.cfg.model.name,
            "module": PEER_MODULE,
            "detector": {"target": target, "options": options},
            "peer_file": PEER_FILE,
            "peer_sha256": self.peer_sha256,
            "preprocessing": dm.preprocessing.to_dict(),
            **result.detector.to_dict(),
            "holdout_detector": None if result.holdout_detector is None else result.holdout_detector.to_dict(),
        }
        buffer = io.BytesIO()
        torch.save(payload, buffer)
        write_bytes_atomic(run_dir / MODEL_FILE, buffer.getvalue())

    def write_figures(self, run_dir: Path, result, dm) -> None:
        cfg = self.cfg
        training_error_histogram(
            result.scores["train"][SCORE_CRITERION],
            dm.train.is_anomaly,
            f"Training scores: {self.name.upper()}, {cfg.dataset.setting}, alpha={cfg.alpha}",
            run_dir / "train_errors.png",
            xlabel=f"{type(self.detector).__name__} score (higher = more anomalous)",
        )

    def add_results(self, metrics: dict, run_dir: Path) -> None:
        metrics["fit_time_s"] = round(self.fit_time, 3)
        metrics["score_time_s"] = round(self.score_time, 3)  # the test splits and the held-out slice
        if self.history is not None:
            metrics["config"]["refine_by"] = "score"  # the only way a peer finds candidates (refine_peer)
            metrics["refinement"] = self.history
            if self.history:
                write_csv_atomic(run_dir / REFINEMENT_FILE, self.history)

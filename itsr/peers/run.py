"""One peer run: the run directory contract of `itsr.run`, with a PyOD detector instead of a network.

The same DataModule (contaminated training set, observed and unobserved test splits, or your folder),
the same writers, the same threshold rule (p90 of the training scores, `scoring.rec_percentile`), the same
metrics. Files: metrics.json (criteria `score` and `contamination`), test_scores.csv and train_scores.csv
(column `score`), train_errors.png, model.pt (weights_only: thresholds, training scores, preprocessing;
no pickle) and peer.joblib (the fitted detector, a pickle; see `itsr.peers.detector.load_peer`).
"""

from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig

from itsr.atomic import write_bytes_atomic, write_csv_atomic, write_json_atomic
from itsr.build import build_datamodule
from itsr.evaluation import error_by_group
from itsr.figures import training_error_histogram
from itsr.model_file import MODEL_FILE, MODEL_FORMAT
from itsr.peers import CONTAMINATION_CRITERION, PEER_FILE, PEER_MODULE, SCORE_CRITERION
from itsr.peers.detector import (
    build_detector,
    detector_options,
    evaluate_peer_split,
    fit_detector,
    peer_holdout_thresholds,
    peer_thresholds,
    save_peer,
    score_images,
)
from itsr.peers.refinement import refine_peer
from itsr.provenance import provenance, write_config
from itsr.results import (
    HOLDOUT_SCORES_FILE,
    REFINEMENT_FILE,
    TEST_SCORES_FILE,
    TRAIN_SCORES_FILE,
    holdout_results,
    metrics_head,
    nan_to_none,
    run_identity,
    write_holdout_scores,
    write_test_scores,
    write_train_scores,
)
from itsr.runtime import configure_torch, resolved_config
from itsr.tracking import build_logger, finishing, log_results

# PyOD's deep detectors call their training length by one of these names
EPOCH_OPTIONS = ("epochs", "epoch_num")
# PyOD computes in its own dtypes (NumPy float64; Deep SVDD in torch float32); no trainer.precision applies
PEER_PRECISION = "pyod-default"


def save_peer_model(
    path: Path,
    cfg: DictConfig,
    peer_sha256: str,
    thresholds: dict,
    train_scores: np.ndarray,
    prep,
    holdout: tuple[dict, np.ndarray] | None = None,
):
    """model.pt of a peer: plain data and tensors only (weights_only loading), pointing at peer.joblib;
    holdout: the calibrated thresholds and the held-out slice's scores, where the run had one."""
    target, options = detector_options(cfg.model.detector)
    payload = {
        "format": MODEL_FORMAT,
        "model": cfg.model.name,
        "module": PEER_MODULE,
        "detector": {"target": target, "options": options},
        "peer_file": PEER_FILE,
        "peer_sha256": peer_sha256,
        "thresholds": thresholds,
        "percentiles": {SCORE_CRITERION: cfg.scoring.rec_percentile},
        "criterion": SCORE_CRITERION,
        "preprocessing": prep.to_dict(),
        "train_score": torch.from_numpy(train_scores),  # re-threshold at other percentiles when scoring
        "thresholds_holdout": None if holdout is None else holdout[0],
        "holdout_score": None if holdout is None else torch.from_numpy(holdout[1]),
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    write_bytes_atomic(path, buffer.getvalue())


def fit_and_evaluate_peer(cfg: DictConfig, run_dir: Path) -> dict:
    """From a validated config to metrics.json in run_dir; returns the metrics (as `train_and_evaluate`)."""

    started = time.time()
    configure_torch(cfg.threads, cfg.flush_denormal)
    pl.seed_everything(cfg.seed, workers=True)  # numpy's and torch's global RNGs: Deep SVDD shuffles with them
    run_dir.mkdir(parents=True, exist_ok=True)
    resolved = resolved_config(cfg)
    write_config(run_dir, resolved)

    dm = build_datamodule(cfg)
    dm.prepare_data()
    dm.setup("fit")
    name = cfg.model.name
    source = f"dataset.root={cfg.dataset.root}" if "root" in cfg.dataset else cfg.dataset.setting
    detector = build_detector(cfg.model.detector, name, dm.input_dim)
    logger = build_logger(cfg, run_dir)
    with finishing(logger):
        fit_started = time.perf_counter()
        refinement = cfg.model.get("refinement")
        candidates, history = None, None
        if refinement is None:
            train_scores = fit_detector(detector, dm.train.x.numpy(), name, source)  # images only, never labels
        else:  # refine=itsr: rounds of refits without the candidates (labels only for A's precision and recall)
            detector, train_scores, candidates, history = refine_peer(
                lambda: build_detector(cfg.model.detector, name, dm.input_dim),
                dm.train.x.numpy(),
                dm.train.is_anomaly.numpy(),
                refinement.rounds,
                refinement.nu,
                refinement.by,
                name,
                source,
            )
        fit_time = time.perf_counter() - fit_started
        # saved as fitted: scoring may leave state behind (ECOD keeps the last scored batch, 383 MB on MNIST)
        peer_sha256 = save_peer(run_dir, detector)
        score_started = time.perf_counter()
        test_scores = {split: score_images(detector, images.x.numpy()) for split, images in dm.test.items()}
        score_time = time.perf_counter() - score_started
        thresholds = peer_thresholds(train_scores, detector, cfg.scoring.rec_percentile)
        metrics_by_split = {
            split: evaluate_peer_split(thresholds, dm.test[split].is_anomaly, scores)
            for split, scores in test_scores.items()
        }
        holdout = None
        if dm.holdout is not None:  # fitted on the trained part only; thresholds from the held-out slice
            held_scores = score_images(detector, dm.holdout.x.numpy())
            holdout = (peer_holdout_thresholds(held_scores, detector, cfg.scoring.rec_percentile), held_scores)
            write_holdout_scores(run_dir / HOLDOUT_SCORES_FILE, {SCORE_CRITERION: held_scores.tolist()}, dm)

        if dm.test:
            test = {split: {SCORE_CRITERION: scores.tolist()} for split, scores in test_scores.items()}
            write_test_scores(run_dir / TEST_SCORES_FILE, test, dm)
        candidate_column = {} if candidates is None else {"candidate": candidates.astype(int).tolist()}
        write_train_scores(run_dir / TRAIN_SCORES_FILE, {SCORE_CRITERION: train_scores.tolist()}, dm, candidate_column)
        save_peer_model(run_dir / MODEL_FILE, cfg, peer_sha256, thresholds, train_scores, dm.preprocessing, holdout)
        train_tensor = torch.from_numpy(train_scores)
        training_error_histogram(
            train_tensor,
            dm.train.is_anomaly,
            f"Training scores: {name.upper()}, {cfg.dataset.setting}, alpha={cfg.alpha}",
            run_dir / "train_errors.png",
            xlabel=f"{type(detector).__name__} score (higher = more anomalous)",
        )
        _, options = detector_options(cfg.model.detector)
        identity = run_identity(
            cfg,
            epochs=next((options[k] for k in EPOCH_OPTIONS if k in options), None),
            batch_size=options.get("batch_size"),
        )
        config = identity | {
            "detector": cfg.model.detector._target_,
            "detector_options": options,
            "score_percentile": cfg.scoring.rec_percentile,
        }
        criteria_thresholds = {k: thresholds[k] for k in (SCORE_CRITERION, CONTAMINATION_CRITERION)}
        metrics = metrics_head(dm, config, criteria_thresholds, metrics_by_split) | {
            "train_scores": {
                k.replace("rec_", "score_"): v for k, v in error_by_group(train_tensor, dm.train.is_anomaly).items()
            },
            "fit_time_s": round(fit_time, 3),
            "score_time_s": round(score_time, 3),
            "wall_time_s": round(time.time() - started, 1),
            "device": "cpu",
            "torch_threads": torch.get_num_threads(),
            "provenance": provenance(resolved, "cpu", PEER_PRECISION),
        }
        if history is not None:
            metrics["config"]["refine_by"] = "score"  # the only way a peer finds candidates (refine_peer)
            metrics["refinement"] = history
            if history:
                write_csv_atomic(run_dir / REFINEMENT_FILE, history)
        if holdout is not None:
            held_thresholds = holdout[0]
            metrics |= holdout_results(
                dm,
                {k: held_thresholds[k] for k in (SCORE_CRITERION, CONTAMINATION_CRITERION)},
                {
                    split: evaluate_peer_split(held_thresholds, dm.test[split].is_anomaly, scores)
                    for split, scores in test_scores.items()
                },
            )
        metrics = nan_to_none(metrics)
        write_json_atomic(run_dir / "metrics.json", metrics)
        log_results(logger, metrics, sorted(run_dir.glob("*.png")))
        return metrics

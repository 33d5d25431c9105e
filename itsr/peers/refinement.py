"""Training set refinement (Sec. 4.2) with a PyOD detector's own judgement instead of an SVM on codes.

`model=<peer> refine=itsr`: d rounds, each fitting a fresh detector on the samples still outside the
candidate set A and adding the top nu of them by their training score to A (weight 0: left out of the
next fit); the detector that is kept is fitted on X without A. A peer cannot train with negative
weights, so the networks' retraining phase has no counterpart here. Labels only feed the diagnostics
(A's precision and recall), as in `itsr.refinement`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

from itsr.peers import PeerError
from itsr.peers.detector import fit_detector, score_images
from itsr.refinement import candidate_quality, check_refinement_options, resolve_by, score_gap, top_scoring

log = logging.getLogger(__name__)


def fit_on_remaining(new_detector: Callable, x: np.ndarray, candidates: np.ndarray, model_name: str, source: str):
    """A fresh detector fitted on the samples outside A; the training score of every sample.

    Samples in A are scored as unseen images (`decision_function`); the fitted ones by PyOD's
    `decision_scores_`, leave-one-out for KNN and LOF, so no sample is scored against itself.
    """
    detector = new_detector()
    kept = ~candidates
    scores = np.empty(len(x), dtype=np.float64)
    scores[kept] = fit_detector(detector, x[kept], model_name, source)
    if candidates.any():
        scores[candidates] = score_images(detector, x[candidates])
    return detector, scores


def refine_peer(
    new_detector: Callable,
    x: np.ndarray,
    is_anomaly: np.ndarray,
    rounds: int,
    nu: float,
    by: str,
    model_name: str,
    source: str,
):
    """(detector fitted on X without A, training scores of all of X, A, one row per round)."""
    check_refinement_options(nu, by)
    by = resolve_by(by, has_codes=False)
    if by != "score":
        why = "has no latent codes for a one-class SVM" if by == "svm" else "is fitted at once, not in batches"
        raise PeerError(
            f"model.refinement.by={by}: model={model_name} {why}; "
            "use model.refinement.by=score (the top nu of its own training scores)"
        )
    candidates = np.zeros(len(x), dtype=bool)
    history: list[dict] = []
    for round_ in range(1, rounds + 1):
        _, scores = fit_on_remaining(new_detector, x, candidates, model_name, source)
        new = top_scoring(scores, candidates, nu)
        if len(x) - int((candidates | new).sum()) <= 1:  # a detector needs at least two samples to fit
            log.warning("refinement round %d would leave too few samples to fit; refinement stops here", round_)
            break
        gap = score_gap(scores, candidates, new)
        candidates = candidates | new
        history.append(
            {"round": round_, "n_new": int(new.sum()), **candidate_quality(candidates, is_anomaly), "score_gap": gap}
        )
        log.info("refinement round %d: %s", round_, history[-1])
    detector, scores = fit_on_remaining(new_detector, x, candidates, model_name, source)
    return detector, scores, candidates, history

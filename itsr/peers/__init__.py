"""PyOD detectors as peers of AE, AAE and ITSR: the same training set, splits, threshold rule and run files.

This module is light (no PyOD import), so the config checks and the report can know the peers without
loading a detector. The fitting lives in `itsr.peers.detector` and `itsr.peers.run`.
"""

from __future__ import annotations

# conf/model/<name>.yaml for each; the report's row order
PEERS = ("iforest", "ocsvm", "knn", "lof", "ecod", "pca", "deepsvdd")
# "score": anomaly if the detector's score > p90 of its training scores (the paper's T_rec rule, Sec. 3, 5);
# "contamination": PyOD's own threshold_, the top `contamination` (= alpha) of the training scores.
SCORE_CRITERION = "score"
CONTAMINATION_CRITERION = "contamination"
PEER_CRITERIA = (CONTAMINATION_CRITERION, SCORE_CRITERION)  # the paper-rule criterion last, as `combined`
PEER_MODULE = "pyod"  # model.pt's "module" field for a peer: its detector lives in PEER_FILE, not in model.pt
PEER_FILE = "peer.joblib"  # a pickle; read only from a run directory the user names (itsr.predict)


class PeerError(ValueError):
    """A peer that cannot be built, fit or loaded; the message names the config key or the file."""


def is_peer(model_name: str) -> bool:
    return model_name in PEERS


__all__ = ["PEERS", "PEER_CRITERIA", "SCORE_CRITERION", "CONTAMINATION_CRITERION", "PEER_FILE", "PeerError", "is_peer"]

"""ITSR's iterative training set refinement (Sec. 4.2) as a Lightning Callback.

Phases, scheduled by epoch (never by global_step, which counts every optimizer step):
  pretraining   epochs [0, P): all w_i = 1;
  refinement    after epoch P + k*R (k = 0..d-1): a one-class SVM on the latent codes (by="svm") or
                the top nu of the remaining samples' reconstruction errors (by="score") flags
                candidates, they join A (which only grows), w_i = 0 for A; R epochs on the rest;
  retraining    after epoch P + d*R: T_retrain = p80 of the candidates' reconstruction errors,
                w_i = w_anomaly < 0 for candidates above it, 0 for the others in A.
by="batch" (in the spirit of Latent Outlier Exposure, LOE-hard, Qiu et al. 2022) keeps the schedule but
finds no set A: from epoch P on, every batch's top `batch_fraction` by reconstruction error is dropped
(weight 0) from that step; the rounds record which samples the last epoch dropped, and there is no
negative-weight phase (LOE-hard has none).
The candidate set, the round counter, the phase and the diagnostics live in the callback's
state_dict; the weights live in the DataModule's. Both go into checkpoints, so a resumed run
continues with the same A, weights and phase.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from scipy.stats import spearmanr
from sklearn.svm import OneClassSVM

from itsr.atomic import write_csv_atomic
from itsr.errors import OptionError, check_choice, check_positive_int
from itsr.hooks import RunParticipant
from itsr.results import REFINEMENT_FILE

log = logging.getLogger(__name__)

PHASES = ("pretraining", "refinement", "retraining")
FIT_ON = ("remaining", "all")
# how candidates are found: a one-class SVM on the codes (Sec. 4.2), the top nu by the training score, the
# top of every training batch (networks only), or "auto": the SVM where the model has codes (the networks),
# the score where it has none (PyOD peers)
CANDIDATES_BY = ("auto", "svm", "score", "batch")


def resolve_by(by: str, has_codes: bool) -> str:
    """`by` with "auto" replaced by what the model allows: "svm" with codes, else "score"."""
    check_choice("by", by, CANDIDATES_BY)
    return by if by != "auto" else ("svm" if has_codes else "score")


SVM_METHODS = ("exact", "nystroem")
NYSTROEM_COMPONENTS = 100  # kernel approximation rank for the "nystroem" method


@dataclass(frozen=True)
class RefinementSchedule:
    pretrain_epochs: int
    rounds: int
    round_epochs: int
    retrain_epochs: int

    def __post_init__(self) -> None:
        for key in ("pretrain_epochs", "rounds", "round_epochs", "retrain_epochs"):
            check_positive_int(key, getattr(self, key))

    @property
    def retrain_start(self) -> int:
        return self.pretrain_epochs + self.rounds * self.round_epochs

    @property
    def total_epochs(self) -> int:
        return self.retrain_start + self.retrain_epochs

    def detection_round_after(self, completed_epochs: int) -> int | None:
        """The round (1-based) that starts once this many epochs are done, else None."""
        offset = completed_epochs - self.pretrain_epochs
        if offset < 0 or offset % self.round_epochs or offset // self.round_epochs >= self.rounds:
            return None
        return offset // self.round_epochs + 1

    def phase_of_epoch(self, epoch: int) -> str:
        """Phase that a (0-based) epoch trains in."""
        if epoch < self.pretrain_epochs:
            return "pretraining"
        return "refinement" if epoch < self.retrain_start else "retraining"


def one_class_svm(nu: float, kernel: str, gamma: str | float, method: str, codes: np.ndarray, seed: int = 0):
    """The paper's exact one-class SVM, or for large sets a linear one on a Nystroem RBF approximation.

    The approximation (scikit-learn's Nystroem + SGDOneClassSVM) scales linearly in the number of codes;
    the exact libsvm solver grows about quadratically (see `python -m itsr.bench`).
    """
    if method == "exact":
        return OneClassSVM(kernel=kernel, nu=nu, gamma=gamma)
    check_choice("svm", method, SVM_METHODS)
    if kernel != "rbf":
        raise OptionError("kernel", "must be rbf with svm=nystroem (it approximates the rbf kernel only)", kernel)
    from sklearn.kernel_approximation import Nystroem
    from sklearn.linear_model import SGDOneClassSVM
    from sklearn.pipeline import make_pipeline

    if gamma == "scale":  # scikit-learn's definition, which Nystroem does not accept by name
        gamma = 1.0 / (codes.shape[1] * codes.var())
    return make_pipeline(
        Nystroem(gamma=gamma, n_components=min(NYSTROEM_COMPONENTS, len(codes)), random_state=seed),
        SGDOneClassSVM(nu=nu, random_state=seed),
    )


def detect_candidates(
    codes: np.ndarray,
    candidates: np.ndarray,
    nu: float,
    kernel: str = "rbf",
    gamma: str | float = "scale",
    fit_on: str = "remaining",
    method: str = "exact",
) -> np.ndarray:
    """New candidates: the one-class SVM's outliers among the codes, not yet in A.

    fit_on="remaining" (our default) fits and predicts on the codes still outside A, so each round
    looks for new outliers among the samples still trained on; "all" refits on every code.
    """
    check_choice("fit_on", fit_on, FIT_ON)
    pool = np.flatnonzero(~candidates) if fit_on == "remaining" else np.arange(len(codes))
    svm = one_class_svm(nu, kernel, gamma, method, codes[pool]).fit(codes[pool])
    outliers = pool[svm.predict(codes[pool]) == -1]
    new = np.zeros(len(codes), dtype=bool)
    new[outliers] = True
    return new & ~candidates


def top_scoring(scores: np.ndarray, candidates: np.ndarray, nu: float) -> np.ndarray:
    """New candidates by the model's own judgement: the round(nu * n) highest scores among the n samples
    still outside A (higher = more anomalous). The score-based counterpart of `detect_candidates`, for
    models without codes (PyOD peers) or to compare with the SVM on the same network."""
    if not np.isfinite(scores).all():
        raise FloatingPointError("training scores contain NaN or inf; no candidates can be ranked")
    pool = np.flatnonzero(~candidates)
    n_new = int(round(nu * len(pool)))
    new = np.zeros(len(scores), dtype=bool)
    if n_new:
        order = np.argsort(-scores[pool], kind="stable")  # ties: the earlier sample first, reproducibly
        new[pool[order[:n_new]]] = True
    return new


def score_gap(scores: np.ndarray, candidates: np.ndarray, new: np.ndarray) -> float:
    """A signal that needs no labels: how far the new candidates' scores lie above the pool they were taken
    from (the samples outside A before this round), in the pool's standard deviations. A top 2% drawn from
    a smooth, anomaly-free distribution sits about 2.4 above; planted anomalies that stand out sit further."""
    pool = scores[~candidates]
    spread = float(pool.std())
    if not new.any() or spread == 0.0 or not np.isfinite(spread):
        return float("nan")
    return float((scores[new].mean() - pool.mean()) / spread)


def candidate_lift(base_scores: np.ndarray, refined_scores: np.ndarray, candidates: np.ndarray) -> float:
    """A label-free signal of refinement: how much further A stands above the rest once the detector no
    longer learns from it (refined minus base training scores, each in the rest's standard deviations).
    Planted anomalies left out of training should look stranger to the refitted detector; normals left out
    should not."""
    # score_gap with A as both the set left out and the samples measured: A's mean above the rest, in its std
    return score_gap(refined_scores, candidates, candidates) - score_gap(base_scores, candidates, candidates)


def rank_stability(base_scores: np.ndarray, refined_scores: np.ndarray, candidates: np.ndarray) -> float:
    """A label-free signal of refinement: Spearman's rank correlation of the base and the refined detector's
    training scores over the samples outside A (1: refinement left their order as it was)."""
    kept = ~candidates
    if kept.sum() < 2:
        return float("nan")
    return float(spearmanr(base_scores[kept], refined_scores[kept]).statistic)


def check_refinement_options(nu: float, by: str) -> None:
    """The options every refinement shares, networks and peers alike."""
    if not 0.0 < nu <= 1.0:
        raise OptionError("nu", "must lie in (0, 1]", nu)
    check_choice("by", by, CANDIDATES_BY)


def check_negative_weight(w_anomaly: float) -> None:
    if not w_anomaly < 0:
        raise OptionError("w_anomaly", "must be < 0 (Sec. 4.2: retraining pushes the candidates away)", w_anomaly)


def retraining_weights(
    rec_error: np.ndarray, candidates: np.ndarray, percentile: float, w_anomaly: float
) -> tuple[np.ndarray, float]:
    """Weights for retraining and T_retrain (Sec. 4.2).

    Outside A: 1. In A: w_anomaly where the reconstruction error exceeds T_retrain, the given
    percentile of the errors within A, else 0 (likely false positives, left out).
    """
    check_negative_weight(w_anomaly)
    weights = np.ones(len(rec_error), dtype=np.float32)
    if not candidates.any():
        return weights, float("nan")
    t_retrain = float(np.percentile(rec_error[candidates], percentile))
    weights[candidates] = np.where(rec_error[candidates] > t_retrain, w_anomaly, 0.0)
    return weights, t_retrain


def negative_sample_means(scores: dict[str, torch.Tensor], negative: np.ndarray, when: str) -> dict[str, float]:
    """Mean log-likelihood and reconstruction error (eval mode) of the samples weighted < 0."""
    out = {}
    for name, key in (("log_likelihood", "log_likelihood"), ("rec_error", "rec_error")):
        values = scores[key].double().numpy()[negative] if key in scores else np.empty(0)
        out[f"negative_{name}_{when}"] = float(values.mean()) if values.size else float("nan")
    return out


def candidate_quality(candidates: np.ndarray, is_anomaly: np.ndarray) -> dict[str, float | int]:
    """How well A matches the planted anomalies (labels used for logging only)."""
    n_candidates = int(candidates.sum())
    hits = int((candidates & is_anomaly).sum())
    n_anomalies = int(is_anomaly.sum())
    return {
        "n_candidates": n_candidates,
        "n_true_anomalies_in_candidates": hits,
        "precision": hits / n_candidates if n_candidates else float("nan"),
        "recall": hits / n_anomalies if n_anomalies else float("nan"),
    }


class ITSRRefinement(pl.Callback, RunParticipant):
    """Runs detection + refinement rounds and the switch to retraining at epoch boundaries."""

    def __init__(
        self,
        pretrain_epochs: int,
        rounds: int,
        round_epochs: int,
        retrain_epochs: int,
        nu: float,
        kernel: str,
        gamma: str | float,
        fit_on: str,
        retrain_percentile: float,
        w_anomaly: float,
        score_batch_size: int,
        svm: str = "exact",
        by: str = "svm",
        batch_fraction: float = 0.1,
    ):
        check_refinement_options(nu, by)
        if not 0.0 < batch_fraction < 1.0:
            raise OptionError("batch_fraction", "must lie in (0, 1)", batch_fraction)
        self.batch_fraction = batch_fraction
        check_negative_weight(w_anomaly)
        if not 0.0 <= retrain_percentile <= 100.0:
            raise OptionError("retrain_percentile", "must lie in [0, 100]", retrain_percentile)
        check_choice("fit_on", fit_on, FIT_ON)
        check_choice("svm", svm, SVM_METHODS)
        if svm == "nystroem" and kernel != "rbf":
            raise OptionError("kernel", "must be rbf with svm=nystroem (it approximates the rbf kernel only)", kernel)
        self.svm = svm
        self.by = resolve_by(by, has_codes=True)  # every network of the run contract has codes
        self.schedule = RefinementSchedule(pretrain_epochs, rounds, round_epochs, retrain_epochs)
        self.nu, self.kernel, self.gamma, self.fit_on = nu, kernel, gamma, fit_on
        self.retrain_percentile = retrain_percentile
        self.w_anomaly = w_anomaly
        self.score_batch_size = score_batch_size
        self.candidates: np.ndarray | None = None
        self.rounds_done = 0
        self.stopped_early = False
        self.phase = "pretraining"
        self.history: list[dict] = []
        self.retraining: dict = {}
        # training errors when pretraining ended: the "before ITSR" of Fig. 5 (d)-(f)
        self.pretrained_rec_error: np.ndarray | None = None

    @property
    def total_epochs(self) -> int:
        """The training length this schedule needs (the run's max_epochs)."""
        return self.schedule.total_epochs

    def phase_of_epoch(self, epoch: int) -> str:
        """The phase a (0-based) epoch trains in, for the curves and the progress display."""
        return self.schedule.phase_of_epoch(epoch)

    def train_score_columns(self, dm) -> dict[str, list]:
        """train_scores.csv's extra columns: the final candidate set and weight, and the error when
        pretraining ended (Fig. 5 d-f)."""
        if self.candidates is None:
            return {}
        columns = {"candidate": self.candidates.astype(int).tolist(), "weight": dm.sample_weights.cpu().tolist()}
        if self.pretrained_rec_error is not None:
            columns["rec_error_pretrained"] = self.pretrained_rec_error.tolist()
        return columns

    def add_results(self, metrics: dict, run_dir) -> None:
        """metrics.json gains the schedule, the rounds and the retraining figures; refinement.csv the rounds."""
        metrics["config"]["schedule"] = self.schedule.__dict__
        metrics["config"]["refine_by"] = self.by
        metrics["refinement"] = self.history
        metrics["retraining"] = self.retraining
        write_csv_atomic(Path(run_dir) / REFINEMENT_FILE, self.history)

    # Lightning hooks -------------------------------------------------------------------------
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.max_epochs != self.schedule.total_epochs:
            raise ValueError(
                f"trainer.max_epochs={trainer.max_epochs} but the ITSR schedule needs "
                f"{self.schedule.total_epochs} epochs (pretraining + rounds x round epochs + "
                "retraining); set max_epochs from the schedule"
            )
        if self.candidates is None:
            self.candidates = np.zeros(len(trainer.datamodule.train), dtype=bool)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """by="batch": drop the top of every batch from the end of pretraining on (set per epoch, so a
        resumed run drops from the same epoch)."""
        after_pretraining = trainer.current_epoch >= self.schedule.pretrain_epochs
        pl_module.batch_drop_fraction = self.batch_fraction if self.by == "batch" and after_pretraining else 0.0
        pl_module.take_batch_dropped()  # forget what an interrupted epoch dropped

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        completed = trainer.current_epoch + 1
        if self.by == "batch":
            self._record_batch_drops(trainer, pl_module, completed)
            return
        round_ = self.schedule.detection_round_after(completed)
        if round_ is not None and not self.stopped_early:
            self._refine(trainer, pl_module, round_, completed)
        elif completed == self.schedule.retrain_start:
            self._start_retraining(trainer, pl_module, completed)

    def state_dict(self) -> dict:
        return {
            "candidates": None if self.candidates is None else torch.from_numpy(self.candidates.copy()),
            "rounds_done": self.rounds_done,
            "stopped_early": self.stopped_early,
            "phase": self.phase,
            "history": list(self.history),
            "retraining": dict(self.retraining),
            "pretrained_rec_error": None
            if self.pretrained_rec_error is None
            else torch.from_numpy(self.pretrained_rec_error.copy()),
        }

    def load_state_dict(self, state_dict: dict) -> None:
        candidates = state_dict["candidates"]
        self.candidates = None if candidates is None else candidates.numpy().astype(bool)
        self.rounds_done = int(state_dict["rounds_done"])
        self.stopped_early = bool(state_dict["stopped_early"])
        self.phase = str(state_dict["phase"])
        self.history = list(state_dict["history"])
        self.retraining = dict(state_dict["retraining"])
        before = state_dict.get("pretrained_rec_error")
        self.pretrained_rec_error = None if before is None else before.numpy()

    # The three phases ---------------------------------------------------------------------
    def _refine(self, trainer: pl.Trainer, pl_module, round_: int, completed: int) -> None:
        dm = trainer.datamodule
        scores = pl_module.score(dm.train.x, self.score_batch_size)
        if round_ == 1:
            self.pretrained_rec_error = scores["rec_error"].double().numpy()
        rec_error = scores["rec_error"].double().numpy()
        if self.by == "score":  # the network's own training score: its reconstruction error
            new = top_scoring(rec_error, self.candidates, self.nu)
        else:
            codes = scores["code"].double().numpy()
            if not np.isfinite(codes).all():
                raise FloatingPointError(f"latent codes contain NaN or inf before refinement round {round_}")
            new = detect_candidates(codes, self.candidates, self.nu, self.kernel, self.gamma, self.fit_on, self.svm)
        grown = self.candidates | new
        if grown.all():
            log.warning(
                "refinement round %d would leave no sample with weight 1; refinement stops here "
                "(lower model.refinement.nu)",
                round_,
            )
            self.stopped_early = True
            return
        gap = score_gap(rec_error, self.candidates, new)
        self.candidates = grown
        self.rounds_done = round_
        self.phase = "refinement"
        dm.set_sample_weights(torch.from_numpy((~grown).astype(np.float32)))
        is_anomaly = dm.train.is_anomaly.numpy()
        row = {"round": round_, "epoch": completed, "n_new": int(new.sum())}
        row |= candidate_quality(grown, is_anomaly) | {"score_gap": gap}
        self.history.append(row)
        log.info("ITSR round %d: %s", round_, row)
        self._log(pl_module, {f"refinement/{k}": v for k, v in row.items()})

    def _record_batch_drops(self, trainer: pl.Trainer, pl_module, completed: int) -> None:
        """by="batch": at each of the schedule's detection epochs, a row on the samples the last epoch
        dropped (its "candidates"); the phase follows the schedule."""
        dropped = pl_module.take_batch_dropped().numpy()
        self.phase = self.schedule.phase_of_epoch(completed - 1)
        round_ = self.schedule.detection_round_after(completed)
        if round_ is None and completed != self.schedule.total_epochs:
            return
        dm = trainer.datamodule
        last = np.zeros(len(dm.train), dtype=bool)
        last[dropped] = True
        if round_ == 1:
            self.pretrained_rec_error = pl_module.score(dm.train.x, self.score_batch_size)["rec_error"].double().numpy()
        if not last.any():  # the epoch before the first detection trained without drops
            return
        row = {"round": len(self.history) + 1, "epoch": completed, "n_new": int((last & ~self.candidates).sum())}
        row |= candidate_quality(last, dm.train.is_anomaly.numpy()) | {"score_gap": float("nan")}
        self.candidates, self.rounds_done = last, row["round"]
        self.history.append(row)
        log.info("batch refinement, epoch %d: %s", completed, row)
        self._log(pl_module, {f"refinement/{k}": v for k, v in row.items()})

    def _start_retraining(self, trainer: pl.Trainer, pl_module, completed: int) -> None:
        dm = trainer.datamodule
        scores = pl_module.score(dm.train.x, self.score_batch_size)
        rec_error = scores["rec_error"].double().numpy()
        weights, t_retrain = retraining_weights(rec_error, self.candidates, self.retrain_percentile, self.w_anomaly)
        dm.set_sample_weights(torch.from_numpy(weights))
        self.phase = "retraining"
        negative = weights < 0
        self.retraining = {
            "epoch": completed,
            "t_retrain": t_retrain,
            "n_negative": int(negative.sum()),
            "n_true_anomalies_negative": int((negative & dm.train.is_anomaly.numpy()).sum()),
            # normals pushed away too (issue 22.3: 156 of 254 at paper scale, MNIST 5%); labels for logging only
            "n_normals_negative": int((negative & ~dm.train.is_anomaly.numpy()).sum()),
            **negative_sample_means(scores, negative, "start"),
        }
        log.info("ITSR retraining starts: %s", self.retraining)
        self._log(pl_module, {f"retraining/{k}": v for k, v in self.retraining.items()})

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Where retraining left the negative-weight samples: the end-to-end check that it pushed
        them the way Sec. 4.2 says (higher reconstruction error, lower likelihood)."""
        if self.by == "batch" or self.phase != "retraining" or trainer.current_epoch < self.schedule.total_epochs:
            return
        dm = trainer.datamodule
        negative = dm.sample_weights.cpu().numpy() < 0
        scores = pl_module.score(dm.train.x, self.score_batch_size)
        self.retraining.update(negative_sample_means(scores, negative, "end"))
        log.info("ITSR retraining ends: %s", self.retraining)

    @staticmethod
    def _log(pl_module: pl.LightningModule, values: dict) -> None:
        if pl_module.logger is not None:
            clean = {k: float(v) for k, v in values.items() if v == v}  # drop NaN
            pl_module.logger.log_metrics(clean, step=pl_module.current_epoch)

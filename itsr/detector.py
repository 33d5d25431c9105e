"""The decision rule of a trained model, as one fitted object (in the spirit of PyOD's BaseDetector).

Fitted on the training scores with the paper's percentiles, it holds T_rec and T_prior (Sec. 3,
4.1), gives one score per criterion (higher = more anomalous) and the decisions, computes the test
metrics, and is what model.pt saves and `itsr.predict` loads. It keeps the training scores, so the
same model can be re-thresholded at other percentiles when scoring new images.

The networks and the PyOD peers share it. A peer has one score per image ("score", higher = more
anomalous): the T_rec rule reads that score and is reported as criterion "score", and PyOD's own rule
(flag the top `contamination` of the training scores) is a further percentile of the same score,
criterion "contamination" (`fit_single_score`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from itsr.scoring import (
    CRITERIA,
    MIN_SCALE,
    Thresholds,
    criterion_scores,
    decisions,
    detection_metrics,
    fit_thresholds,
    percentile,
)

REC_ONLY = ("rec",)  # a model without a latent prior has the reconstruction criterion alone
REC_SCORE = "rec_error"  # the networks' scores, as AnomalyModel.score names them
LIKELIHOOD_SCORE = "log_likelihood"


def _select(values: torch.Tensor | None, mask: torch.Tensor | None) -> torch.Tensor | None:
    return values if values is None or mask is None else values[mask]


@dataclass(frozen=True)
class ThresholdDetector:
    """T_rec = the rec_percentile-th percentile of the training errors, T_prior = the lik_percentile-th
    of the training log-likelihoods; an image is anomalous by `rec`, `lik`, or either (`combined`)."""

    thresholds: Thresholds
    rec_percentile: float
    lik_percentile: float | None
    train_rec_error: torch.Tensor
    train_log_likelihood: torch.Tensor | None = None
    population: torch.Tensor | None = None  # the training samples the thresholds come from; None = all
    score_name: str = REC_SCORE  # the score the T_rec rule reads (a peer: "score")
    rec_criterion: str = "rec"  # that rule's criterion name (a peer: "score")
    # further percentile rules on the same score, (criterion, percentile, threshold), listed before it
    extra_rules: tuple[tuple[str, float, float], ...] = ()

    @classmethod
    def fit(
        cls,
        rec_error: torch.Tensor,
        log_likelihood: torch.Tensor | None,
        rec_percentile: float,
        lik_percentile: float,
        mask: torch.Tensor | None = None,
    ) -> ThresholdDetector:
        """Thresholds from the training scores, or from the samples `mask` selects (see
        itsr.evaluation.threshold_mask); the saved training scores are always all of them, and the
        mask is kept so that refit draws from the same population."""
        thresholds = fit_thresholds(
            _select(rec_error, mask), _select(log_likelihood, mask), rec_percentile, lik_percentile
        )
        return cls(
            thresholds,
            rec_percentile,
            lik_percentile if log_likelihood is not None else None,
            rec_error.detach().cpu(),
            None if log_likelihood is None else log_likelihood.detach().cpu(),
            None if mask is None else mask.detach().cpu(),
        )

    @classmethod
    def fit_single_score(
        cls,
        scores: torch.Tensor,
        score_percentile: float,
        score_name: str,
        extra_percentiles: dict[str, float],
        mask: torch.Tensor | None = None,
        extra_mask: torch.Tensor | None = None,
    ) -> ThresholdDetector:
        """A detector with one score (a PyOD peer): the paper's rule, anomalous above the
        score_percentile-th percentile of the training scores, reported as criterion `score_name`, and
        one further rule per named percentile (PyOD's contamination rule), taken over the samples
        extra_mask selects (a refined peer: the ones it was fitted on, as PyOD's threshold_), else as `mask`."""
        base = cls.fit(scores, None, score_percentile, 0.0, mask=mask)
        values = _select(base.train_rec_error, base.population if extra_mask is None else extra_mask.cpu())
        rules = tuple((name, float(q), percentile(values, q)) for name, q in extra_percentiles.items())
        return replace(base, score_name=score_name, rec_criterion=score_name, extra_rules=rules)

    def refit(self, rec_percentile: float | None = None, lik_percentile: float | None = None) -> ThresholdDetector:
        """The same detector at other percentiles (None keeps the saved one), from the saved training
        scores of the population it was fitted on; with neither given, the saved thresholds unchanged."""
        if rec_percentile is None and lik_percentile is None:
            return self
        rec = self.rec_percentile if rec_percentile is None else rec_percentile
        lik = self.lik_percentile if lik_percentile is None else lik_percentile
        rec_error = _select(self.train_rec_error, self.population)
        thresholds = fit_thresholds(rec_error, _select(self.train_log_likelihood, self.population), rec, lik)
        return replace(self, thresholds=thresholds, rec_percentile=rec, lik_percentile=lik)

    @property
    def criteria(self) -> tuple[str, ...]:
        own = CRITERIA if self.thresholds.t_prior is not None else REC_ONLY
        return tuple(name for name, _, _ in self.extra_rules) + tuple(
            self.rec_criterion if c == "rec" else c for c in own
        )

    @property
    def default_criterion(self) -> str:
        """The paper's rule: either threshold (Sec. 4.1) where there is a prior, else T_rec (Sec. 3)."""
        return self.criteria[-1]

    def _named(self, own: dict[str, torch.Tensor], extra: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The extra rules first, then the model's own criteria under their reported names."""
        return extra | {self.rec_criterion if c == "rec" else c: v for c, v in own.items()}

    def scores(self, rec_error: torch.Tensor, log_likelihood: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """One score per criterion, > 0 exactly when that criterion flags the image."""
        extra = {}
        for name, _, threshold in self.extra_rules:  # in units of the distance from the training median
            scale = max(threshold - self.thresholds.rec_median, MIN_SCALE)
            extra[name] = (rec_error.double() - threshold) / scale
        return self._named(criterion_scores(self.thresholds, rec_error, log_likelihood), extra)

    def decide(self, rec_error: torch.Tensor, log_likelihood: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Boolean decisions per criterion, with the paper's strict inequalities."""
        extra = {name: rec_error > threshold for name, _, threshold in self.extra_rules}
        return self._named(decisions(self.thresholds, rec_error, log_likelihood), extra)

    def _inputs(self, scores: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
        likelihood = scores.get(LIKELIHOOD_SCORE) if self.thresholds.t_prior is not None else None
        return scores[self.score_name], likelihood

    def scores_of(self, scores: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """`scores` from a model's named scores (ScoringModel.score)."""
        return self.scores(*self._inputs(scores))

    def decide_of(self, scores: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """`decide` from a model's named scores (ScoringModel.score)."""
        return self.decide(*self._inputs(scores))

    def evaluate_scores(self, is_anomaly: torch.Tensor, scores: dict[str, torch.Tensor]) -> dict[str, dict[str, float]]:
        """`evaluate` from a model's named scores (ScoringModel.score)."""
        return self.evaluate(is_anomaly, *self._inputs(scores))

    def reported_thresholds(self) -> dict[str, float | None]:
        """metrics.json's `thresholds`: t_rec and t_prior of a network; a peer's threshold per criterion."""
        if self.rec_criterion == "rec" and not self.extra_rules:
            return {"t_rec": self.thresholds.t_rec, "t_prior": self.thresholds.t_prior}
        return {name: threshold for name, _, threshold in self.extra_rules} | {
            self.rec_criterion: self.thresholds.t_rec
        }

    def evaluate(
        self, is_anomaly: torch.Tensor, rec_error: torch.Tensor, log_likelihood: torch.Tensor | None = None
    ) -> dict[str, dict[str, float]]:
        """TPR, TNR, BACC, AUROC and AP of every criterion on one labelled split."""
        scores = self.scores(rec_error, log_likelihood)
        decided = self.decide(rec_error, log_likelihood)
        return {name: detection_metrics(is_anomaly, decided[name], scores[name]) for name in scores}

    def to_dict(self) -> dict:
        """model.pt's fields for the decision rule (the layout of format 1, so older files load)."""
        return {
            "thresholds": self.thresholds.to_dict(),
            "percentiles": {"rec": self.rec_percentile, "lik": self.lik_percentile},
            "criterion": self.default_criterion,
            "train_rec_error": self.train_rec_error,
            "train_log_likelihood": self.train_log_likelihood,
            "threshold_population": self.population,  # absent in files written before it: all samples
            "score_name": self.score_name,  # absent in files written before peers shared this object
            "rec_criterion": self.rec_criterion,
            "extra_rules": [list(rule) for rule in self.extra_rules],
        }

    @classmethod
    def from_dict(cls, payload: dict) -> ThresholdDetector:
        percentiles = payload["percentiles"]
        return cls(
            Thresholds(**payload["thresholds"]),
            percentiles["rec"],
            percentiles.get("lik"),
            payload["train_rec_error"],
            payload.get("train_log_likelihood"),
            payload.get("threshold_population"),
            payload.get("score_name", REC_SCORE),
            payload.get("rec_criterion", "rec"),
            tuple((str(name), float(q), float(t)) for name, q, t in payload.get("extra_rules", ())),
        )

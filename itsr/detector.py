"""The decision rule of a trained model, as one fitted object (in the spirit of PyOD's BaseDetector).

Fitted on the training scores with the paper's percentiles, it holds T_rec and T_prior (Sec. 3,
4.1), gives one score per criterion (higher = more anomalous) and the decisions, computes the test
metrics, and is what model.pt saves and `itsr.predict` loads. It keeps the training scores, so the
same model can be re-thresholded at other percentiles when scoring new images.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from itsr.scoring import CRITERIA, Thresholds, criterion_scores, decisions, detection_metrics, fit_thresholds

REC_ONLY = ("rec",)  # a model without a latent prior has the reconstruction criterion alone


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
        return CRITERIA if self.thresholds.t_prior is not None else REC_ONLY

    @property
    def default_criterion(self) -> str:
        """The paper's rule: either threshold (Sec. 4.1) where there is a prior, else T_rec (Sec. 3)."""
        return self.criteria[-1]

    def scores(self, rec_error: torch.Tensor, log_likelihood: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """One score per criterion, > 0 exactly when that criterion flags the image."""
        return criterion_scores(self.thresholds, rec_error, log_likelihood)

    def decide(self, rec_error: torch.Tensor, log_likelihood: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Boolean decisions per criterion, with the paper's strict inequalities."""
        return decisions(self.thresholds, rec_error, log_likelihood)

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
        )

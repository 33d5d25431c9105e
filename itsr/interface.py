"""What a detector offers the run, declared once: our networks (AE, AAE, ITSR) and the PyOD peers alike.

`ScoringModel` is what scoring and thresholds need (itsr.evaluation.evaluate, the curves callback);
`RunModel` adds what one run needs around it (itsr.run's pipeline): fitting on the weighted training
data in the run directory, the model file, and its own figures and metrics.json entries. The networks'
side is itsr.network_run.NetworkRun (a LightningModule trained by a Trainer), the peers'
itsr.peers.run.PeerRun (a PyOD detector, optionally refined). Light: type names only.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import torch

    from itsr.data.datamodule import AnomalyDataModule
    from itsr.detector import ThresholdDetector
    from itsr.evaluation import Evaluation


@runtime_checkable
class ScoringModel(Protocol):
    def score(self, x: torch.Tensor, batch_size: int) -> dict[str, torch.Tensor]:
        """Named scores per image (networks: rec_error, log_likelihood where there is a prior, and the
        latent code; a peer: score), on the CPU."""
        ...

    def training_scores(self, x: torch.Tensor, batch_size: int) -> dict[str, torch.Tensor]:
        """The training set's scores as the thresholds take them (a KNN peer: leave-one-out)."""
        ...

    def fit_threshold_detector(
        self,
        scores: dict[str, torch.Tensor],
        rec_percentile: float,
        lik_percentile: float,
        mask: torch.Tensor | None = None,
        training: bool = True,
    ) -> ThresholdDetector:
        """The decision rule at the given percentiles of these scores (of the samples `mask` selects): the
        training set's (training=True) or the held-out slice's (the calibrated rule)."""
        ...


@runtime_checkable
class RunModel(ScoringModel, Protocol):
    device: str
    precision: str  # as provenance records it (trainer.precision, or the peers' own dtypes)
    score_names: tuple[str, ...]  # the columns of the score CSVs
    restart_refusal: str  # why a finished run directory cannot be run again without a checkpoint

    def checkpoint(self, run_dir: Path, config: dict) -> str | None:
        """The checkpoint to resume from (checked against config), or None to start afresh."""
        ...

    def fit(self, dm: AnomalyDataModule, run_dir: Path, logger: Any, ckpt_path: str | None) -> None:
        """Train (networks: with the sampler's weights) or fit (peers) on dm's training set, never on the
        held-out slice."""
        ...

    def identity(self) -> dict:
        """metrics.json's `config` block (itsr.results.run_identity plus the model's own entries)."""
        ...

    def train_summary(self, scores: dict[str, torch.Tensor], is_anomaly: torch.Tensor) -> dict:
        """metrics.json's summary of the training scores by group (normals vs anomalies)."""
        ...

    def train_score_columns(self, dm: AnomalyDataModule) -> dict[str, list]:
        """train_scores.csv's extra columns (the refinement's candidates and weights)."""
        ...

    def save(self, run_dir: Path, result: Evaluation, dm: AnomalyDataModule) -> None:
        """model.pt (and a peer's pickle) for itsr.predict."""
        ...

    def write_figures(self, run_dir: Path, result: Evaluation, dm: AnomalyDataModule) -> None: ...

    def add_results(self, metrics: dict, run_dir: Path) -> None:
        """The model's own entries of metrics.json (timings, refinement rounds) and files."""
        ...

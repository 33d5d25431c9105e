"""Training curves (Figs. 1 and 4): every N epochs, the reconstruction error of normal vs anomalous
training images and the test metrics under the thresholds of that moment: the paper's (training
scores) and, with a held-out slice, the calibrated ones (columns ending in `_holdout`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytorch_lightning as pl

from itsr.atomic import write_csv_atomic
from itsr.errors import check_positive_int
from itsr.evaluation import error_by_group, evaluate
from itsr.hooks import participants
from itsr.results import CURVES_FILE, HOLDOUT_SUFFIX


class TrainingCurves(pl.Callback):
    """Appends one row per evaluation to `curves.csv` in the run directory.

    Rows live in the callback's state, so a resumed run rewrites the same file with no gap and no
    duplicate. The labels are read for these curves only, never by training.
    """

    def __init__(
        self,
        every_n_epochs: int,
        score_batch_size: int,
        rec_percentile: float,
        lik_percentile: float,
        path: str | Path | None = None,
        phase_of_epoch: Callable[[int], str] | None = None,
    ):
        check_positive_int("every_n_epochs", every_n_epochs)
        self.every_n_epochs = every_n_epochs
        self.path = None if path is None else Path(path)
        self.score_batch_size = score_batch_size
        self.rec_percentile = rec_percentile
        self.lik_percentile = lik_percentile
        self.phase_of_epoch = phase_of_epoch
        self.rows: list[dict] = []

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Unless given: curves.csv in the run directory, and the phases of a callback that has them."""
        if self.path is None:
            self.path = Path(trainer.default_root_dir) / CURVES_FILE
        if self.phase_of_epoch is None:
            self.phase_of_epoch = next(
                (c.phase_of_epoch for c in participants(trainer.callbacks) if c is not self), None
            )

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        completed = trainer.current_epoch + 1
        if completed % self.every_n_epochs and completed != trainer.max_epochs and completed != 1:
            return
        dm = trainer.datamodule
        result = evaluate(pl_module, dm, self.score_batch_size, self.rec_percentile, self.lik_percentile)
        row: dict = {"epoch": completed}
        if self.phase_of_epoch is not None:
            row["phase"] = self.phase_of_epoch(trainer.current_epoch)
        row |= error_by_group(result.scores["train"]["rec_error"], dm.train.is_anomaly)
        for split, by_criterion in result.metrics.items():
            for criterion, values in by_criterion.items():
                for metric in ("tpr", "tnr", "bacc", "auroc"):
                    row[f"{split}_{criterion}_{metric}"] = values[metric]
        for split, by_criterion in (result.metrics_holdout or {}).items():  # the calibrated rule (issue 23)
            for criterion, values in by_criterion.items():
                for metric in ("tpr", "tnr", "bacc"):  # AUROC does not depend on the threshold
                    row[f"{split}_{criterion}_{metric}{HOLDOUT_SUFFIX}"] = values[metric]
        self.rows.append(row)
        write_csv_atomic(self.path, self.rows)
        if pl_module.logger is not None:
            pl_module.logger.log_metrics(
                {f"curves/{k}": v for k, v in row.items() if isinstance(v, float) and v == v},
                step=completed,
            )

    def state_dict(self) -> dict:
        return {"rows": list(self.rows)}

    def load_state_dict(self, state_dict: dict) -> None:
        self.rows = list(state_dict["rows"])

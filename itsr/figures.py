"""Per-run figures, drawn from tensors the run already has (never from logs)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from itsr.atomic import write_bytes_atomic  # noqa: E402
from itsr.colors import ANOMALY_COLOR, NORMAL_COLOR  # noqa: E402


def _save(fig, path: Path) -> None:
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    write_bytes_atomic(path, buffer.getvalue())


def training_error_histogram(
    rec_error: torch.Tensor,
    is_anomaly: torch.Tensor,
    title: str,
    path: Path,
    xlabel: str = "reconstruction error (pixelwise MSE)",
) -> None:
    """Reconstruction error (or a peer's score) of normal vs anomalous training images (Fig. 5 d-f)."""
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    # from 0 for errors; a peer's score may be negative (PyOD's IForest, OCSVM)
    bins = torch.linspace(min(0.0, float(rec_error.min())), float(rec_error.max()), 60).numpy()
    for mask, color, label in ((~is_anomaly, NORMAL_COLOR, "normal"), (is_anomaly, ANOMALY_COLOR, "anomalous")):
        if mask.any():  # an unlabeled folder has no known anomalies
            ax.hist(rec_error[mask].numpy(), bins=bins, density=True, alpha=0.6, color=color, label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("density")
    ax.set_title(title)
    ax.legend()
    _save(fig, path)


def score_scatter(
    rec_error: torch.Tensor,
    log_likelihood: torch.Tensor,
    is_anomaly: torch.Tensor,
    t_rec: float,
    t_prior: float,
    title: str,
    path: Path,
) -> None:
    """Reconstruction error against prior log-likelihood with both thresholds (Figs. 3, 4b)."""
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for mask, color, label in ((~is_anomaly, NORMAL_COLOR, "normal"), (is_anomaly, ANOMALY_COLOR, "anomalous")):
        ax.scatter(log_likelihood[mask].numpy(), rec_error[mask].numpy(), s=3, alpha=0.5, color=color, label=label)
    ax.axhline(t_rec, color="k", lw=0.8, ls="--", label="T_rec")
    ax.axvline(t_prior, color="k", lw=0.8, ls=":", label="T_prior")
    ax.set_xlabel("log-likelihood of the code under N(0, I)")
    ax.set_ylabel("reconstruction error")
    ax.set_yscale("log")
    ax.set_title(title)
    ax.legend(markerscale=3, fontsize=8)
    _save(fig, path)


def latent_scatter(codes: torch.Tensor, is_anomaly: torch.Tensor, title: str, path: Path) -> None:
    """The 2-D codes of the training set, normal vs anomalous."""
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    for mask, color, label in ((~is_anomaly, NORMAL_COLOR, "normal"), (is_anomaly, ANOMALY_COLOR, "anomalous")):
        ax.scatter(codes[mask, 0].numpy(), codes[mask, 1].numpy(), s=3, alpha=0.5, color=color, label=label)
    ax.set_xlabel("z1")
    ax.set_ylabel("z2")
    ax.set_title(title)
    ax.legend(markerscale=3)
    _save(fig, path)


def write_run_figures(run_dir: Path, cfg, result, dm) -> None:
    """The run's figures from its evaluation: training errors; for a model with a prior, the test scores
    against both thresholds and the training codes."""
    setting = f"{cfg.model.name.upper()}, {cfg.dataset.setting}, alpha={cfg.alpha}"
    train = result.scores["train"]
    training_error_histogram(
        train["rec_error"], dm.train.is_anomaly, f"Training errors: {setting}", run_dir / "train_errors.png"
    )
    if "log_likelihood" in train and dm.test:
        split = next(iter(dm.test))  # "observed" for the benchmarks
        observed = result.scores[split]
        score_scatter(
            observed["rec_error"],
            observed["log_likelihood"],
            dm.test[split].is_anomaly,
            result.thresholds.t_rec,
            result.thresholds.t_prior,
            f"Test split {split}: {setting}",
            run_dir / "test_scores_scatter.png",
        )
        latent_scatter(train["code"], dm.train.is_anomaly, f"Training codes: {setting}", run_dir / "latent.png")

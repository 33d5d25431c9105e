"""The report's figures (Figs. 1, 3, 4, 5 of the paper), drawn from the files runs wrote.

The only module of the report that imports matplotlib; `itsr.report` does not import it, so reading
and tabulating runs never loads a plotting stack.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from itsr.atomic import write_bytes_atomic  # noqa: E402
from itsr.colors import ANOMALY_COLOR, NORMAL_COLOR  # noqa: E402
from itsr.report.paper import METHODS, PAPER, SETTINGS, SPLITS  # noqa: E402
from itsr.report.runs import read_csv  # noqa: E402
from itsr.report.tables import CLEAN, FIG5_ALPHA, mean_std, method_criterion, peers_in  # noqa: E402
from itsr.results import CURVES_FILE, TEST_SCORES_FILE, TRAIN_SCORES_FILE  # noqa: E402

FIG_DPI = 110
OUTCOME_COLORS = {
    "true normal": "tab:blue",
    "false positive": "tab:green",
    "true positive": "tab:orange",
    "false negative": "tab:red",
}


def _save(fig, path: Path) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=FIG_DPI, bbox_inches="tight")
    plt.close(fig)
    write_bytes_atomic(path, buffer.getvalue())
    return path.name


def _first(runs, setting: str, alpha: float, model: str):
    matching = sorted(
        (r for r in runs if (r.setting, r.alpha, r.model) == (setting, alpha, model)), key=lambda r: r.seed
    )
    return matching[0] if matching else None


def fig5_bars(cells, out_dir: Path) -> str | None:
    """BACC per method and test split, ours (mean, std over seeds) beside the paper's bars; the peers
    (PyOD, criterion `score`) beside our methods, where the report has them."""
    if not any(k[1] == FIG5_ALPHA for k in cells):
        return None
    methods = (*METHODS, *peers_in(cells, FIG5_ALPHA))
    if len(methods) > len(METHODS):  # with peers: one row per setting, so the bars stay readable
        fig, axes = plt.subplots(len(SETTINGS), 1, figsize=(2 + 0.9 * len(methods), 3.2 * len(SETTINGS)), sharey=True)
    else:
        fig, axes = plt.subplots(1, len(SETTINGS), figsize=(5 * len(SETTINGS), 3.8), sharey=True)
    width = 0.2
    for ax, (setting, title) in zip(axes, SETTINGS.items()):
        x = np.arange(len(methods))
        for j, split in enumerate(SPLITS):
            keys = [(setting, FIG5_ALPHA, m, split, method_criterion(m)) for m in methods]
            ours = [mean_std(cells[k].bacc) if k in cells else (np.nan, np.nan) for k in keys]
            paper = [PAPER[k].bacc if k in PAPER else np.nan for k in keys]
            offset = (j - 0.5) * 2 * width
            ax.bar(
                x + offset - width / 2,
                [o[0] for o in ours],
                width,
                yerr=[o[1] for o in ours],
                color=["tab:blue", "tab:orange"][j],
                label=f"ours, {split}",
            )
            ax.bar(
                x + offset + width / 2,
                paper,
                width,
                color="none",
                edgecolor=["tab:blue", "tab:orange"][j],
                hatch="//",
                label=f"paper, {split}",
            )
        if len(methods) > len(METHODS):  # peers to the right of this line
            ax.axvline(len(METHODS) - 0.5, color="grey", lw=0.8, ls=":")
        ax.set_xticks(x, [m.upper() for m in methods])
        ax.set_ylim(0.4, 1.0)
        ax.set_title(f"{title}, α = 5%")
        ax.set_xlabel("method" + (" (right of the dotted line: PyOD peers)" if len(methods) > len(METHODS) else ""))
    for ax in axes:
        ax.set_ylabel("balanced accuracy")
    axes[-1].legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    return _save(fig, out_dir / "fig5_bacc.png")


def fig1_ae_curves(runs, out_dir: Path) -> str | None:
    run = _first(runs, "mnist_0v2", FIG5_ALPHA, "ae")
    if run is None or not (run.path / CURVES_FILE).is_file():
        return None
    c = read_csv(run.path / CURVES_FILE)
    needed = ["epoch", *(f"rec_{g}_{s}" for g in ("normal", "anomalous") for s in ("mean", "std"))]
    missing = [name for name in needed + [f"observed_rec_{m}" for m in ("tpr", "tnr", "bacc")] if name not in c]
    if missing:  # a curves.csv of an older or foreign run: the report goes on without this figure
        print(f"fig1 not drawn: {run.path / CURVES_FILE} has no column {', '.join(missing)}", file=sys.stderr)
        return None
    epoch = np.array(c["epoch"])
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 3.8))
    for group, color, style in (("normal", NORMAL_COLOR, "-"), ("anomalous", ANOMALY_COLOR, "--")):
        mean, std = np.array(c[f"rec_{group}_mean"]), np.array(c[f"rec_{group}_std"])
        a.plot(epoch, mean, style, color=color, label=f"{group} (training)")
        a.fill_between(epoch, np.maximum(mean - std, mean / 10), mean + std, color=color, alpha=0.2)
    a.set_xlabel("epoch")
    a.set_ylabel("reconstruction error (log)")
    a.set_yscale("log")  # the errors fall by orders of magnitude; their ratio is what Fig. 1 is about
    a.set_title("(a) AE on MNIST 0 vs 2, α = 5%: training errors")
    a.legend()
    for metric in ("tpr", "tnr", "bacc"):
        b.plot(epoch, c[f"observed_rec_{metric}"], label=metric.upper())
    b.set_xlabel("epoch")
    b.set_ylabel("rate on the observed test split")
    b.set_ylim(0, 1.02)
    b.set_title("(b) detection with T_rec = p90")
    b.legend()
    return _save(fig, out_dir / "fig1_ae_curves.png")


def fig3_clean_scatter(runs, out_dir: Path) -> str | None:
    run = _first(runs, *CLEAN)
    if run is None or not (run.path / TEST_SCORES_FILE).is_file():
        return None
    c = read_csv(run.path / TEST_SCORES_FILE)
    obs = np.array(c["split"]) == "observed"
    anomaly = np.array(c["anomaly"], dtype=bool) & obs
    normal = ~np.array(c["anomaly"], dtype=bool) & obs
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    for mask, color, label in ((normal, NORMAL_COLOR, "T-shirt (normal)"), (anomaly, "tab:red", "Pullover (anomaly)")):
        ax.scatter(
            np.array(c["log_likelihood"])[mask],
            np.array(c["rec_error"])[mask],
            s=3,
            alpha=0.5,
            color=color,
            label=label,
        )
    ax.set_xlabel("log-likelihood of the code")
    ax.set_ylabel("reconstruction error")
    ax.set_yscale("log")
    ax.set_title("Fig. 3: AAE on clean T-shirts, test T-shirt vs Pullover")
    ax.legend(markerscale=3)
    return _save(fig, out_dir / "fig3_clean_scatter.png")


def fig4_itsr(runs, out_dir: Path) -> str | None:
    run = _first(runs, "mnist_0v2", FIG5_ALPHA, "itsr")
    if run is None or not (run.path / CURVES_FILE).is_file() or not (run.path / TRAIN_SCORES_FILE).is_file():
        return None
    c, t = read_csv(run.path / CURVES_FILE), read_csv(run.path / TRAIN_SCORES_FILE)
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    epoch = np.array(c["epoch"])
    for group, color, style in (("normal", NORMAL_COLOR, "-"), ("anomalous", ANOMALY_COLOR, "--")):
        mean, std = np.array(c[f"rec_{group}_mean"]), np.array(c[f"rec_{group}_std"])
        a.plot(epoch, mean, style, color=color, label=group)
        a.fill_between(epoch, mean - std, mean + std, color=color, alpha=0.2)
    phases = np.array(c["phase"])
    for phase in ("refinement", "retraining"):
        if (phases == phase).any():
            a.axvline(epoch[np.argmax(phases == phase)], color="k", lw=0.8, ls=":")
    a.set_xlabel("epoch (dotted: refinement, retraining start)")
    a.set_ylabel("reconstruction error (training)")
    a.set_title("(a) ITSR on MNIST 0 vs 2, α = 5%: three phases")
    a.legend()
    anomaly, candidate = np.array(t["anomaly"], bool), np.array(t["candidate"], bool)
    outcomes = {
        "true normal": ~anomaly & ~candidate,
        "false positive": ~anomaly & candidate,
        "true positive": anomaly & candidate,
        "false negative": anomaly & ~candidate,
    }
    for name, mask in outcomes.items():
        b.scatter(
            np.array(t["log_likelihood"])[mask],
            np.array(t["rec_error"])[mask],
            s=3,
            alpha=0.6,
            color=OUTCOME_COLORS[name],
            label=f"{name} ({mask.sum()})",
        )
    b.set_xlabel("log-likelihood of the code")
    b.set_ylabel("reconstruction error")
    b.set_yscale("log")
    b.set_title("(b) training set after ITSR, by the SVM's candidate set")
    b.legend(markerscale=3, fontsize=8)
    return _save(fig, out_dir / "fig4_itsr.png")


def fig5_errors_before_after(runs, out_dir: Path) -> str | None:
    available = [(s, _first(runs, s, FIG5_ALPHA, "itsr")) for s in SETTINGS]
    available = [(s, r) for s, r in available if r and (r.path / TRAIN_SCORES_FILE).is_file()]
    if not available:
        return None
    fig, axes = plt.subplots(1, len(available), figsize=(5 * len(available), 3.8), squeeze=False)
    for ax, (setting, run) in zip(axes[0], available):
        t = read_csv(run.path / TRAIN_SCORES_FILE)
        if "rec_error_pretrained" not in t:
            continue
        anomaly = np.array(t["anomaly"], bool)
        data, labels, colors = [], [], []
        for stage, column in (("before", "rec_error_pretrained"), ("after", "rec_error")):
            for name, mask, color in (("normal", ~anomaly, NORMAL_COLOR), ("anomalous", anomaly, ANOMALY_COLOR)):
                data.append(np.array(t[column])[mask])
                labels.append(f"{name}\n{stage}")
                colors.append(color)
        parts = ax.boxplot(data, showfliers=False, patch_artist=True)
        for patch, color in zip(parts["boxes"], colors):
            patch.set_facecolor(color)
        ax.set_xticks(range(1, len(labels) + 1), labels, fontsize=8)
        ax.set_ylabel("reconstruction error (training)")
        ax.set_title(f"{SETTINGS[setting]}: before / after ITSR")
        ax.legend(
            handles=[Patch(color=NORMAL_COLOR, label="normal"), Patch(color=ANOMALY_COLOR, label="anomalous")],
            fontsize=8,
        )
    return _save(fig, out_dir / "fig5def_itsr_errors.png")


def write_report_figures(runs, cells, out_dir: Path) -> list[str]:
    """Every figure the runs have the files for; the names of those written, in the report's order."""
    out_dir.mkdir(parents=True, exist_ok=True)
    made = [
        fig5_bars(cells, out_dir),
        fig1_ae_curves(runs, out_dir),
        fig3_clean_scatter(runs, out_dir),
        fig4_itsr(runs, out_dir),
        fig5_errors_before_after(runs, out_dir),
    ]
    return [m for m in made if m]


def profile_curves(runs, out_dir: Path) -> list[str]:
    """The robustness profile: BACC and AUROC (observed split) against alpha per method, the mean over class
    pairs with a band from the lowest to the highest pair; refined methods dashed beside their base."""
    from itsr.report.profile import per_setting

    out_dir.mkdir(parents=True, exist_ok=True)
    methods = sorted({r.model for r in runs})
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, metric in zip(axes, ("bacc", "auroc")):
        table = per_setting(runs, "observed", metric)
        for method in methods:
            alphas = sorted(a for (m, a) in table if m == method)
            values = [np.array([v for v in table[(method, a)].values() if v == v]) for a in alphas]
            keep = [i for i, v in enumerate(values) if v.size]
            if not keep:
                continue
            xs = [alphas[i] for i in keep]
            mean = [values[i].mean() for i in keep]
            line = ax.plot(
                xs, mean, marker="o", linestyle="--" if "+" in method or method == "itsr" else "-", label=method
            )[0]
            ax.fill_between(
                xs, [values[i].min() for i in keep], [values[i].max() for i in keep], color=line.get_color(), alpha=0.12
            )
        ax.set_xlabel("contamination α")
        ax.set_ylabel(f"{metric.upper()}, observed split")
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7, ncol=2)
    fig.suptitle("Mean over class pairs (band: lowest to highest pair)")
    return [_save(fig, out_dir / "profile_observed.png")]

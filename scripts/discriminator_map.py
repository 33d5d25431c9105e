"""Where does a trained AAE's discriminator call codes "prior samples"? (issue: rare anomalies at the mode)

    python scripts/discriminator_map.py RUN_DIR [RUN_DIR ...] [--data-dir DIR] [--extent 4] [--png]

For each run directory of an AAE or ITSR run (its model.pt, loaded with weights_only, and its saved
Hydra config to rebuild the same contaminated training set), the script evaluates the
discriminator's output sigmoid(D(z)) on a grid of 2-D codes and prints: where it peaks, its value at
the prior's mode, and its mean over the codes of the training normals and of the training anomalies
(encoded in eval mode, as scored). With --png it draws the map with the codes on top, beside the
run's other figures (discriminator_map.png).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from itsr.build import build_datamodule
from itsr.data.fetch import default_data_dir
from itsr.model_file import load_model
from itsr.run import CONFIG_DIR

GRID_POINTS = 201  # per axis


def discriminator_map(run_dir: Path, data_dir: str | None, extent: float, png: bool) -> dict:
    module, _, _ = load_model(run_dir)
    if not hasattr(module, "discriminator"):
        raise SystemExit(f"{run_dir}: an AE run has no discriminator")
    cfg = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    if "datamodule" not in cfg.dataset:  # a run made before the DataModule was a config entry
        ds = cfg.dataset
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            cfg = compose(
                "config",
                overrides=[
                    f"dataset={ds.name}",
                    f"dataset.normal_class={ds.normal_class}",
                    f"dataset.anomaly_class={ds.anomaly_class}",
                    f"alpha={cfg.alpha}",
                    f"seed={cfg.seed}",
                    f"data_dir={cfg.data_dir}",
                ],
            )
    # the saved data_dir interpolates ${hydra:runtime.cwd}, which resolves only inside a Hydra app
    cfg.data_dir = data_dir or str(default_data_dir())
    dm = build_datamodule(cfg)
    dm.prepare_data()
    dm.setup("fit")
    codes = module.score(dm.train.x, 2048)["code"]
    anomalous = dm.train.is_anomaly.bool()
    axis = torch.linspace(-extent, extent, GRID_POINTS)
    grid = torch.cartesian_prod(axis, axis)
    with torch.no_grad():
        d_grid = torch.sigmoid(module.discriminator(grid)).reshape(GRID_POINTS, GRID_POINTS)
        d_codes = torch.sigmoid(module.discriminator(codes))
        d_mode = float(torch.sigmoid(module.discriminator(torch.zeros(1, 2))))
    peak = int(d_grid.argmax())
    peak_z = grid[peak]
    out = {
        "run": str(run_dir),
        "peak_D": float(d_grid.max()),
        "peak_at": [round(float(v), 2) for v in peak_z],
        "peak_radius": round(float(peak_z.norm()), 2),
        "D_at_mode": d_mode,
        "D_normals_mean": float(d_codes[~anomalous].mean()),
        "D_anomalies_mean": float(d_codes[anomalous].mean()) if anomalous.any() else float("nan"),
        "anomaly_code_radius_mean": float(codes[anomalous].norm(dim=1).mean()) if anomalous.any() else float("nan"),
        "normal_code_radius_mean": float(codes[~anomalous].norm(dim=1).mean()),
    }
    if png:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5.5, 4.5))
        image = ax.imshow(
            d_grid.T.numpy(), origin="lower", extent=(-extent, extent, -extent, extent), cmap="viridis", vmin=0, vmax=1
        )
        ax.scatter(*codes[~anomalous].T.numpy(), s=1, c="white", alpha=0.3, label="training normals")
        ax.scatter(*codes[anomalous].T.numpy(), s=3, c="red", alpha=0.7, label="training anomalies")
        ax.set_xlim(-extent, extent)
        ax.set_ylim(-extent, extent)
        ax.set_title(f"sigmoid(D(z)): {cfg.model.name}, {cfg.dataset.setting}, alpha={cfg.alpha}, seed {cfg.seed}")
        ax.title.set_fontsize(8)
        ax.legend(loc="lower right", fontsize=7)
        fig.colorbar(image, ax=ax)
        fig.savefig(run_dir / "discriminator_map.png", dpi=110, bbox_inches="tight")
        plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--data-dir", help="the IDX cache (default: $ITSR_DATA_DIR, else ./data)")
    parser.add_argument("--extent", type=float, default=4.0, help="the grid spans [-extent, extent]^2")
    parser.add_argument("--png", action="store_true", help="write discriminator_map.png into each run directory")
    args = parser.parse_args(argv)
    print("| run | peak D | at (radius) | D at mode | D normals | D anomalies | radius normals | radius anomalies |")
    print("|" + " --- |" * 8)
    for run in args.runs:
        r = discriminator_map(run, args.data_dir, args.extent, args.png)
        print(
            f"| {Path(r['run']).name} | {r['peak_D']:.3f} | {r['peak_at']} ({r['peak_radius']}) | {r['D_at_mode']:.3f} "
            f"| {r['D_normals_mean']:.3f} | {r['D_anomalies_mean']:.3f} | {r['normal_code_radius_mean']:.2f} "
            f"| {r['anomaly_code_radius_mean']:.2f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

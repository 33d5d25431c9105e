"""The name of a setting (dataset, normal class, anomaly class): what run directories, metrics.json and
the report group runs by. Light (no torch, Lightning or Hydra), so the report can resolve the name in a
saved .hydra/config.yaml without a training stack."""

from __future__ import annotations

# The paper's settings by (dataset, normal class, anomaly class); reports set them beside the paper.
PAPER_SETTINGS = {
    ("mnist", 0, 2): "mnist_0v2",
    ("fmnist", 0, 2): "fmnist_tshirt_v_pullover",
    ("fmnist", 0, 9): "fmnist_tshirt_v_boot",
}
SETTING_RESOLVER = "itsr.setting"  # conf/dataset/*.yaml: setting: ${itsr.setting:name,normal,anomaly}


def setting_name(dataset: str, normal_class, anomaly_class) -> str:
    """The setting's key follows the classes, so a class override is never reported (or averaged)
    as the paper's setting: the paper's name for its pairs, else e.g. `mnist_1v7`. Total on any
    input, since Hydra resolves it for the run directory before `validate` can refuse a bad class."""
    key = (dataset, normal_class, anomaly_class)
    if all(type(v) is int for v in key[1:]) and key in PAPER_SETTINGS:
        return PAPER_SETTINGS[key]
    return f"{dataset}_{normal_class}v{anomaly_class}"


def register_setting_resolver() -> None:
    """Make `${itsr.setting:...}` resolvable by OmegaConf (once per process)."""
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver(SETTING_RESOLVER):
        OmegaConf.register_new_resolver(SETTING_RESOLVER, setting_name)

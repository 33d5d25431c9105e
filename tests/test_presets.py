"""Presets list the expected jobs, and the command line narrows a preset's grid."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser

from itsr.run import CONFIG_DIR


def sweep_jobs(arguments: list[str]) -> list[dict[str, str]]:
    """The jobs `python -m itsr.run -m ARGUMENTS` launches, as Hydra's basic sweeper expands them:
    the preset's hydra.sweeper.params first, the command line after (and winning)."""
    plain = [a for a in arguments if "," not in a]
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("config", overrides=plain, return_hydra_config=True)
    params = [f"{k}={v}" for k, v in (cfg.hydra.sweeper.params or {}).items()]
    overrides = OverridesParser.create().parse_overrides(params + list(arguments))
    batches = BasicSweeper.split_arguments(overrides, None)
    return [dict(o.split("=", 1) for o in job) for batch in batches for job in batch]


def test_quick_preset_is_the_papers_grid() -> None:
    jobs = sweep_jobs(["experiment=quick"])
    assert len(jobs) == 3 * 3 * 3
    assert {j["model"] for j in jobs} == {"ae", "aae", "itsr"}
    assert {j["dataset"] for j in jobs} == {"mnist", "fmnist_boot", "fmnist"}
    assert {j["alpha"] for j in jobs} == {"0.05", "0.01", "0.001"}


def test_fig5_part_of_quick_is_nine_jobs() -> None:
    jobs = sweep_jobs(["experiment=quick", "alpha=0.05"])
    assert len(jobs) == 9 and {j["alpha"] for j in jobs} == {"0.05"}


def test_paper_preset_has_three_seeds() -> None:
    jobs = sweep_jobs(["experiment=paper"])
    assert len(jobs) == 3 * 3 * 3 * 3
    assert {j["seed"] for j in jobs} == {"0", "1", "2"}


def test_peers_preset_is_every_peer_on_the_papers_grid_with_three_seeds() -> None:
    from itsr.peers import PEERS

    jobs = sweep_jobs(["experiment=peers"])
    assert len(jobs) == len(PEERS) * 3 * 3 * 3
    assert {j["model"] for j in jobs} == set(PEERS)
    assert {j["dataset"] for j in jobs} == {"mnist", "fmnist_boot", "fmnist"}
    assert {j["alpha"] for j in jobs} == {"0.05", "0.01", "0.001"} and {j["seed"] for j in jobs} == {"0", "1", "2"}


def test_the_issues_mixed_grid_of_our_models_and_peers_composes_and_validates() -> None:
    from itsr.config import validate
    from tests.conftest import compose_cfg

    jobs = sweep_jobs(["model=ae,aae,itsr,iforest,ocsvm", "dataset=mnist,fmnist", "alpha=0.05,0.01"])
    assert len(jobs) == 5 * 2 * 2
    for job in jobs:
        validate(compose_cfg([f"{k}={v}" for k, v in job.items()]))


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (["experiment=quick", "model=ae"], 9),  # the command line narrows the preset's model list
        (["experiment=paper", "model=itsr", "seed=0"], 9),
        (["experiment=quick", "dataset=mnist,fmnist", "alpha=0.05"], 6),
        (["experiment=peers", "model=iforest,knn", "alpha=0.05,0.01"], 2 * 3 * 2 * 3),
    ],
)
def test_command_line_takes_precedence_over_the_preset(arguments, expected) -> None:
    jobs = sweep_jobs(arguments)
    assert len(jobs) == expected
    for argument in arguments[1:]:
        key, value = argument.split("=")
        assert {j[key] for j in jobs} == set(value.split(","))


def test_the_design_card_grid_without_a_preset() -> None:
    jobs = sweep_jobs(["dataset=mnist,fmnist", "alpha=0.05,0.01,0.001"])
    assert len(jobs) == 6


def test_presets_set_epochs_not_choices() -> None:
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        quick = compose("config", overrides=["experiment=quick", "model=ae", "dataset=fmnist"])
        fig1 = compose("config", overrides=["experiment=fig1"])
        clean = compose("config", overrides=["experiment=clean"])
    assert quick.model.name == "ae" and quick.model.max_epochs == 150 and quick.dataset.setting.endswith("pullover")
    assert fig1.model.name == "ae" and fig1.model.max_epochs == 10000 and fig1.alpha == 0.05
    assert clean.model.name == "aae" and clean.alpha == 0.0 and clean.dataset.anomaly_class == 2

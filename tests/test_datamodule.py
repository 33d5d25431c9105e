"""The weighted DataModule: the sampler honours weights, batches carry them, state round-trips."""

from __future__ import annotations

import pytest
import torch

from itsr.data.datamodule import NonZeroWeightBatchSampler


def test_sampler_never_draws_zero_weights_and_draws_every_other_sample_once() -> None:
    weights = torch.ones(103)
    weights[[3, 50, 77]] = 0
    weights[[10, 11]] = -1.0  # retraining candidates are drawn (and pushed away)
    sampler = NonZeroWeightBatchSampler(weights, batch_size=10, seed=0)
    drawn = torch.cat(list(sampler))
    assert sorted(drawn.tolist()) == [i for i in range(103) if i not in (3, 50, 77)]


def test_sampler_reads_weights_when_an_epoch_starts() -> None:
    weights = torch.ones(20)
    sampler = NonZeroWeightBatchSampler(weights, batch_size=4, seed=0)
    assert sum(len(b) for b in sampler) == 20
    weights[:5] = 0  # what the refinement callback does, in place
    assert sorted(torch.cat(list(sampler)).tolist()) == list(range(5, 20))


def test_permutation_depends_on_seed_and_epoch_only() -> None:
    w = torch.ones(50)
    a, b = NonZeroWeightBatchSampler(w, 8, seed=3), NonZeroWeightBatchSampler(w, 8, seed=3)
    a.set_epoch(4)
    b.set_epoch(4)
    assert torch.equal(torch.cat(list(a)), torch.cat(list(b)))
    b.set_epoch(5)
    assert not torch.equal(torch.cat(list(a)), torch.cat(list(b)))


def test_a_single_sample_tail_is_folded_into_the_previous_batch() -> None:
    batches = list(NonZeroWeightBatchSampler(torch.ones(9), batch_size=4, seed=0))
    assert [len(b) for b in batches] == [4, 5]


def test_batches_carry_images_weights_and_indices_but_no_labels(toy_datamodule) -> None:
    dm = toy_datamodule
    w = torch.ones(len(dm.train))
    w[:7] = 0
    w[7] = -2.0
    dm.set_sample_weights(w)
    seen = []
    for batch in dm.train_dataloader():
        assert set(batch) == {"x", "weight", "index"}
        assert torch.equal(batch["x"], dm.train.x[batch["index"]])
        assert torch.equal(batch["weight"], w[batch["index"]])
        seen.append(batch["index"])
    seen = torch.cat(seen)
    assert not set(range(7)) & set(seen.tolist())
    assert len(seen) == len(dm.train) - 7


def test_weights_survive_a_state_dict_round_trip_even_before_setup(toy_datamodule) -> None:
    from itsr.data.datamodule import TensorDataModule

    w = torch.linspace(-1, 1, len(toy_datamodule.train))
    toy_datamodule.set_sample_weights(w)
    state = toy_datamodule.state_dict()
    fresh = TensorDataModule(toy_datamodule.train, toy_datamodule.test, batch_size=32, seed=0)
    fresh.load_state_dict(state)  # Lightning may restore before setup()
    fresh.setup()
    assert torch.equal(fresh.sample_weights, w)


def test_a_placed_datamodule_draws_the_same_batches(toy_datamodule) -> None:
    # On a GPU place_on("cuda") keeps data and weights there; the draw must not change with the place.
    reference = [b["index"].clone() for b in toy_datamodule.train_dataloader()]
    toy_datamodule.place_on("cpu")
    again = [b["index"] for b in toy_datamodule.train_dataloader()]
    assert all(torch.equal(a, b) for a, b in zip(reference, again))
    assert toy_datamodule.sample_weights.device == toy_datamodule.train.x.device


def test_the_benchmark_data_is_verified_once_and_then_only_decoded(monkeypatch) -> None:
    """prepare_data checks every file's checksum; setup decodes without reading them for a hash again."""
    from itsr.data import fetch as fetch_module
    from itsr.data.datamodule import BenchmarkDataModule
    from tests.conftest import DATA_DIR

    checks = []
    original = fetch_module._check_cache
    monkeypatch.setattr(
        fetch_module, "_check_cache", lambda folder, file: checks.append(file.name) or original(folder, file)
    )
    dm = BenchmarkDataModule("mnist", 0, 2, 0.05, seed=0, data_dir=DATA_DIR, batch_size=128, download=False)
    dm.prepare_data()
    dm.prepare_data()  # Lightning calls it again in fit: nothing more to verify
    dm.setup("fit")
    assert sorted(checks) == sorted(f.name for f in fetch_module.DATASETS["mnist"].files)  # each file once
    assert len(dm.train) == 5923 + 312


def test_a_benchmark_datamodule_refuses_bad_arguments_by_name() -> None:
    from itsr.data.datamodule import BenchmarkDataModule
    from itsr.errors import OptionError

    for kwargs, option in (
        ({"alpha": 0.5}, "alpha"),
        ({"anomaly_class": 0}, "anomaly_class"),
        ({"normal_class": 10}, "normal_class"),
        ({"name": "cifar"}, "name"),
    ):
        arguments = {"name": "mnist", "normal_class": 0, "anomaly_class": 2, "alpha": 0.05} | kwargs
        with pytest.raises(OptionError) as refused:
            BenchmarkDataModule(**arguments, seed=0, data_dir="/nonexistent", batch_size=8)
        assert refused.value.option == option

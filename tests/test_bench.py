"""The benchmark's arithmetic and its reference loop (speed itself is measured by `make bench`)."""

from __future__ import annotations

import pytest

from itsr.bench import epoch_flops, linear_macs, planted_codes


def test_flop_count_of_the_paper_networks() -> None:
    assert linear_macs([784, 1000, 1000, 32]) == (784_000 + 1_000_000 + 32_000, 784_000)
    # AE: forward + backward (weights and inputs) of encoder and decoder, no input gradient for images
    per_sample = 3 * (1_816_000 + 1_816_000) - 784_000
    assert epoch_flops("ae", 10, 784, [1000, 1000], 32, []) == pytest.approx(2 * per_sample * 10)
    aae = epoch_flops("aae", 6235, 784, [1000, 1000], 2, [1000, 1000])
    assert 250e9 < aae < 330e9  # about 45 MFLOP per sample, three steps


def test_planted_codes_have_the_planted_fraction() -> None:
    codes, truth = planted_codes(1000)
    assert codes.shape == (1000, 2) and truth.sum() == 50

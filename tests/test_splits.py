"""The paper's contaminated training set and test splits, on real MNIST labels."""

from __future__ import annotations

import numpy as np
import pytest

from itsr.data.splits import contaminated_training_indices, evaluation_split_indices, n_anomalies_for


@pytest.mark.parametrize(("alpha", "expected"), [(0.05, 312), (0.01, 60), (0.001, 6), (0.0, 0)])
def test_contamination_counts_on_real_mnist(mnist_arrays, alpha: float, expected: int) -> None:
    _, y_train, _, _ = mnist_arrays
    idx, is_anomaly = contaminated_training_indices(y_train, 0, 2, alpha, seed=0)
    assert (y_train == 0).sum() == 5923
    assert is_anomaly.sum() == expected
    assert (~is_anomaly).sum() == 5923
    assert set(np.unique(y_train[idx])) <= {0, 2}
    assert np.all(is_anomaly == (y_train[idx] == 2))
    if expected:
        assert is_anomaly.mean() == pytest.approx(alpha, abs=1e-3)


def test_anomaly_count_is_the_paper_fraction_of_the_whole_set() -> None:
    # n / (n_normal + n) = alpha, rounded half up
    assert n_anomalies_for(0.05, 5923) == 312
    assert n_anomalies_for(0.4, 12) == 8
    for minority_no_more in (0.5, 1.0):  # the one alpha rule: anomalies stay the minority, [0, 0.5)
        with pytest.raises(ValueError, match=r"alpha must lie in \[0, 0.5\)"):
            n_anomalies_for(minority_no_more, 10)


def test_draw_is_seeded_and_depends_on_the_seed(mnist_arrays) -> None:
    _, y, _, _ = mnist_arrays
    a, _ = contaminated_training_indices(y, 0, 2, 0.05, seed=1)
    b, _ = contaminated_training_indices(y, 0, 2, 0.05, seed=1)
    c, _ = contaminated_training_indices(y, 0, 2, 0.05, seed=2)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert np.all(np.diff(a) > 0), "indices are sorted and unique"


def test_too_many_anomalies_and_equal_classes_are_errors() -> None:
    labels = np.array([0] * 100 + [2] * 3)
    with pytest.raises(ValueError, match="needs 11 images of class 2"):
        contaminated_training_indices(labels, 0, 2, 0.1, seed=0)
    with pytest.raises(ValueError, match="must differ"):
        contaminated_training_indices(labels, 0, 0, 0.1, seed=0)


def test_test_splits_match_the_paper_on_mnist(mnist_arrays) -> None:
    _, _, _, y_test = mnist_arrays
    obs, obs_anomaly = evaluation_split_indices(y_test, 0, 2, "observed")
    unobs, unobs_anomaly = evaluation_split_indices(y_test, 0, 2, "unobserved")
    n0, n2 = (y_test == 0).sum(), (y_test == 2).sum()
    assert (n0, n2) == (980, 1032)
    assert len(obs) == n0 + n2 and obs_anomaly.sum() == n2
    assert set(np.unique(y_test[obs])) == {0, 2}
    assert len(unobs) == 10000 - n2 and unobs_anomaly.sum() == 10000 - n2 - n0
    assert set(np.unique(y_test[unobs])) == {0, 1, 3, 4, 5, 6, 7, 8, 9}
    assert np.all(unobs_anomaly == (y_test[unobs] != 0))
    with pytest.raises(ValueError, match="unknown test split"):
        evaluation_split_indices(y_test, 0, 2, "validation")

"""Labelled data: bundled sets with int64 labels, seeded synthetic data, held-out splits."""

from __future__ import annotations

import numpy as np
import pytest

from gradtwin.data import BUNDLED, Dataset, holdout, synthetic_classes
from gradtwin.errors import DataError


@pytest.mark.parametrize(
    ("name", "n", "d", "k"),
    [("breast_cancer", 569, 30, 2), ("iris", 150, 4, 3), ("wine", 178, 13, 3), ("digits", 1797, 64, 10)],
)
def test_bundled_sets_split_and_prepared(name: str, n: int, d: int, k: int) -> None:
    data = BUNDLED[name](True)
    assert data.test is not None
    assert data.n + data.test.n == n and data.test.n == round(0.25 * n)
    assert data.X.shape[1] == data.test.X.shape[1] == d
    assert data.Y.dtype == data.test.Y.dtype == np.int64
    assert set(np.unique(data.Y)) == set(range(k))
    if name == "digits":
        assert 0.0 <= data.X.min() and data.X.max() <= 1.0  # ink levels 0..16 divided by 16
    else:  # standardized with the training rows' statistics only
        np.testing.assert_allclose(data.X.mean(axis=0), 0.0, atol=1e-12)
        np.testing.assert_allclose(data.X.std(axis=0), 1.0, atol=1e-12)
        raw = BUNDLED[name](False)
        test_rows, train_rows = _rows(raw, data.test)
        mean, std = raw.X[train_rows].mean(axis=0), raw.X[train_rows].std(axis=0)  # the training rows' statistics
        np.testing.assert_allclose(data.X * std + mean, raw.X[train_rows], atol=1e-9)
        np.testing.assert_allclose(data.test.X * std + mean, raw.X[test_rows], atol=1e-9)


def _rows(raw: Dataset, test: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the raw rows the held-out split took, and of the rest (the split keeps their order)."""
    order = np.random.default_rng(0).permutation(raw.n)
    return np.sort(order[: test.n]), np.sort(order[test.n :])


def test_holdout_is_seeded_and_disjoint() -> None:
    data = Dataset(np.arange(40.0).reshape(20, 2), np.arange(20) % 2, "ids")
    a, b, c = holdout(data, seed=1), holdout(data, seed=1), holdout(data, seed=2)
    assert a.test is not None and b.test is not None and c.test is not None
    np.testing.assert_array_equal(a.test.X, b.test.X)
    assert not np.array_equal(a.test.X, c.test.X)
    rows = np.concatenate([a.X[:, 0], a.test.X[:, 0]])
    assert sorted(rows.tolist()) == list(range(0, 40, 2))  # every row once, in one split


def test_synthetic_classes_are_seeded_and_overlap() -> None:
    a = synthetic_classes(n=300, d=2, k=3, seed=3)
    b = synthetic_classes(n=300, d=2, k=3, seed=3)
    np.testing.assert_array_equal(a.X, b.X)
    np.testing.assert_array_equal(a.Y, b.Y)
    assert a.Y.dtype == np.int64 and set(np.unique(a.Y)) <= {0, 1, 2}
    assert not np.array_equal(a.Y, synthetic_classes(n=300, d=2, k=3, seed=4).Y)


@pytest.mark.parametrize(("kwargs", "message"), [({"n": 3}, "n >= 4"), ({"k": 1}, "k >= 2"), ({"d": 0}, "d >= 1")])
def test_synthetic_classes_refuse_bad_sizes(kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(DataError, match=message):
        synthetic_classes(**kwargs)


def test_holdout_refuses_too_few_rows() -> None:
    with pytest.raises(DataError, match="too few"):
        holdout(Dataset(np.zeros((1, 1)), np.zeros(1, dtype=np.int64), "one"))

"""Labelled data for the classifiers: bundled sets, a seeded generator and a held-out split.

Labels are int64 class indices 0..k-1, so that the autograd twins can index with them and
no float label is ever compared to a class. The bundled sets ship inside scikit-learn, so
nothing is downloaded. Each comes split: `data.test` holds the held-out rows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np

from gradtwin.data import Dataset, check_xy, standardize
from gradtwin.errors import DataError

TEST_FRACTION = 0.25


def holdout(data: Dataset, test_fraction: float = TEST_FRACTION, seed: int = 0) -> Dataset:
    """The training rows of `data`, with the rest (a seeded random `test_fraction`) as `.test`."""
    if not 0 < test_fraction < 1:
        raise DataError(f"test_fraction must be between 0 and 1; got {test_fraction!r}")
    n_test = round(test_fraction * data.n)
    if not 1 <= n_test < data.n:
        raise DataError(f"{data.name}: {data.n} rows are too few to hold {test_fraction:g} of them out")
    order = np.random.default_rng(seed).permutation(data.n)
    test_rows, train_rows = np.sort(order[:n_test]), np.sort(order[n_test:])
    test = replace(data, X=data.X[test_rows], Y=data.Y[test_rows], name=f"{data.name} (held out)", test=None)
    return replace(data, X=data.X[train_rows], Y=data.Y[train_rows], test=test)


def _bundled(loader: Callable[..., object], name: str, y_name: str) -> Dataset:
    bunch = loader()
    X = np.ascontiguousarray(bunch.data, dtype=np.float64)  # type: ignore[attr-defined]  # (n, d)
    Y = np.ascontiguousarray(bunch.target, dtype=np.int64)  # type: ignore[attr-defined]  # (n,)
    check_xy(X, Y, name)
    return Dataset(X, Y, name=name, x_name=f"{X.shape[1]} features", y_name=y_name)


def load_breast_cancer(prepare: bool = True) -> Dataset:
    """Wisconsin breast cancer: 569 tumours, 30 features; label 0 malignant, 1 benign.

    `prepare`: hold 25% out and standardize with the training rows' statistics (the raw
    features span five orders of magnitude).
    """
    from sklearn.datasets import load_breast_cancer as loader

    data = _bundled(loader, "breast cancer", "benign")
    return standardize(holdout(data)) if prepare else data


def load_iris(prepare: bool = True) -> Dataset:
    """Fisher's iris: 150 flowers, 4 measurements (cm), 3 species. `prepare` as for breast cancer."""
    from sklearn.datasets import load_iris as loader

    data = _bundled(loader, "iris", "species")
    return standardize(holdout(data)) if prepare else data


def load_wine(prepare: bool = True) -> Dataset:
    """Wines of three cultivars: 178 wines, 13 chemical measurements. `prepare` as for breast cancer."""
    from sklearn.datasets import load_wine as loader

    data = _bundled(loader, "wine", "cultivar")
    return standardize(holdout(data)) if prepare else data


def load_digits(prepare: bool = True) -> Dataset:
    """Handwritten digits: 1,797 images of 8x8 pixels with ink levels 0..16, classes 0-9.

    `prepare`: hold 25% out and divide the pixels by 16 into [0, 1]. Not standardized: some
    pixels are blank in every image, and a known range needs no estimated statistics.
    """
    from sklearn.datasets import load_digits as loader

    data = _bundled(loader, "digits", "digit")
    if not prepare:
        return data
    split = holdout(data)
    assert split.test is not None
    return replace(split, X=split.X / 16.0, test=replace(split.test, X=split.test.X / 16.0))


BUNDLED: dict[str, Callable[[bool], Dataset]] = {
    "breast_cancer": load_breast_cancer,
    "iris": load_iris,
    "wine": load_wine,
    "digits": load_digits,
}


def synthetic_classes(n: int = 500, d: int = 2, k: int = 2, seed: int = 0, scale: float = 1.0) -> Dataset:
    """X ~ N(0, I) (n, d); each label drawn from softmax(scale * (X W* + b*)), W* and b* ~ N(0, 1).

    Labels are drawn, not thresholded, so the classes overlap: with n well above d*k the data
    are not separable and the unpenalized cross-entropy has a finite minimiser. `scale`
    sharpens (large) or blurs (small) the class boundaries. Comes with a 25% held-out split.
    """
    if n < 4:
        raise DataError(f"synthetic data needs n >= 4 (a quarter is held out); got {n}")
    if d < 1 or k < 2:
        raise DataError(f"synthetic data needs d >= 1 and k >= 2; got d={d}, k={k}")
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))  # (n, d)
    Z = scale * (X @ rng.standard_normal((d, k)) + rng.standard_normal(k))  # (n, k)
    P = np.exp(Z - Z.max(axis=1, keepdims=True))  # (n, k)
    P /= P.sum(axis=1, keepdims=True)
    Y = (rng.random((n, 1)) > np.cumsum(P, axis=1)).sum(axis=1).astype(np.int64)  # (n,) inverse-CDF draw
    Y = np.minimum(Y, k - 1)  # a cumulative sum that rounds below 1 must not give class k
    return holdout(Dataset(X, Y, name=f"synthetic(n={n}, d={d}, k={k}, seed={seed})", y_name="class"), seed=seed)

"""The data sets that ship inside scikit-learn: diabetes for regression, four labelled sets.

Labels are int64 class indices 0..k-1, so that the autograd twins can index with them and
no float label is ever compared to a class. Nothing is downloaded. Each labelled set comes
split: `data.test` holds the held-out rows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np

from gradtwin.data.dataset import Dataset, check_xy
from gradtwin.data.prepare import holdout, standardize


def load_diabetes_bmi() -> Dataset:
    """scikit-learn's diabetes data: body-mass index (kg/m^2) against disease progression.

    442 patients; the raw (unscaled) values, so that w reads in the data's own units unless
    the caller standardizes.
    """
    from sklearn.datasets import load_diabetes

    bunch = load_diabetes(scaled=False)
    X = np.ascontiguousarray(bunch.data[:, 2], dtype=np.float64)  # (442,) column 'bmi'
    Y = np.ascontiguousarray(bunch.target, dtype=np.float64)  # (442,)
    check_xy(X, Y, "diabetes")
    return Dataset(X, Y, name="diabetes", x_name="bmi", y_name="progression")


def load_diabetes_all() -> Dataset:
    """scikit-learn's diabetes data: all 10 baseline variables against disease progression.

    442 patients, X (442, 10) in the data's own units (age, sex, bmi, bp, s1..s6).
    """
    from sklearn.datasets import load_diabetes

    bunch = load_diabetes(scaled=False)
    X = np.ascontiguousarray(bunch.data, dtype=np.float64)  # (442, 10)
    Y = np.ascontiguousarray(bunch.target, dtype=np.float64)  # (442,)
    check_xy(X, Y, "diabetes")
    return Dataset(X, Y, name="diabetes", x_name=",".join(bunch.feature_names), y_name="progression")


def _bundled(loader: Callable[..., object], name: str, y_name: str) -> Dataset:
    bunch = loader()
    X = np.ascontiguousarray(bunch.data, dtype=np.float64)  # type: ignore[attr-defined]  # (n, d)
    Y = np.ascontiguousarray(bunch.target, dtype=np.int64)  # type: ignore[attr-defined]  # (n,)
    check_xy(X, Y, name)
    return Dataset(X, Y, name=name, x_name=f"{X.shape[1]} features", y_name=y_name)


def _prepared(data: Dataset, prepare: bool, standardized: bool) -> Dataset:
    if not prepare:
        return data
    split = holdout(data)
    return standardize(split) if standardized else split


def load_breast_cancer(prepare: bool = True, standardized: bool = True) -> Dataset:
    """Wisconsin breast cancer: 569 tumours, 30 features; label 0 malignant, 1 benign.

    `prepare`: hold 25% out and, if `standardized`, standardize with the training rows'
    statistics (the raw features span five orders of magnitude).
    """
    from sklearn.datasets import load_breast_cancer as loader

    data = _bundled(loader, "breast cancer", "benign")
    return _prepared(data, prepare, standardized)


def load_iris(prepare: bool = True, standardized: bool = True) -> Dataset:
    """Fisher's iris: 150 flowers, 4 measurements (cm), 3 species. `prepare` as for breast cancer."""
    from sklearn.datasets import load_iris as loader

    data = _bundled(loader, "iris", "species")
    return _prepared(data, prepare, standardized)


def load_wine(prepare: bool = True, standardized: bool = True) -> Dataset:
    """Wines of three cultivars: 178 wines, 13 chemical measurements. `prepare` as for breast cancer."""
    from sklearn.datasets import load_wine as loader

    data = _bundled(loader, "wine", "cultivar")
    return _prepared(data, prepare, standardized)


def load_digits(prepare: bool = True, standardized: bool = True) -> Dataset:
    """Handwritten digits: 1,797 images of 8x8 pixels with ink levels 0..16, classes 0-9.

    `prepare`: hold 25% out and divide the pixels by 16 into [0, 1]. Never standardized (so
    `standardized` is ignored): some pixels are blank in every image, and a known range needs
    no estimated statistics.
    """
    from sklearn.datasets import load_digits as loader

    data = _bundled(loader, "digits", "digit")
    if not prepare:
        return data
    split = holdout(data)
    assert split.test is not None
    mean, scale = np.zeros(data.X.shape[1]), np.full(data.X.shape[1], 16.0)  # (64,) each: X = (raw - 0) / 16
    test = replace(split.test, X=split.test.X / 16.0, x_mean=mean, x_scale=scale)
    return replace(split, X=split.X / 16.0, test=test, x_mean=mean, x_scale=scale)


BUNDLED: dict[str, Callable[..., Dataset]] = {
    "breast_cancer": load_breast_cancer,
    "iris": load_iris,
    "wine": load_wine,
    "digits": load_digits,
}

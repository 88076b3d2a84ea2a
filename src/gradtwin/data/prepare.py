"""Preparing data for gradient descent: standardized features, a seeded held-out split."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from gradtwin.data.dataset import Dataset
from gradtwin.errors import DataError

TEST_FRACTION = 0.25


def standardize(data: Dataset) -> Dataset:
    """Centre X and scale it to unit variance (per feature); Y is left in its units.

    With unit-variance X the loss's Hessian is close to 2*I, so one learning rate suits
    every data set and gradient descent reaches least squares in hundreds of steps.
    The statistics are kept, `x_mean` and `x_scale` (() or (d,)), composed with any earlier
    preparation, so that parameters can be mapped back to the data's own units.
    """
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is caught just below
        mean = data.X.mean(axis=0)
        std = data.X.std(axis=0)
        X = (data.X - mean) / std
    if np.any(std == 0):
        names = data.x_name.split(",")
        if data.X.ndim == 1 or data.X.shape[1] == 1:
            raise DataError(f"{data.name}: X is constant, so it cannot be standardized")
        j = int(np.flatnonzero(std == 0)[0])
        label = names[j] if len(names) == data.X.shape[1] else f"{j} of X"
        raise DataError(f"{data.name}: x column {label!r} is constant, so it cannot be standardized")
    if not (np.all(np.isfinite(std)) and np.all(np.isfinite(X))):
        raise DataError(f"{data.name}: X spreads beyond float64's range, so it cannot be standardized")
    x_mean, x_scale = mean, std
    if data.x_mean is not None and data.x_scale is not None:  # X was prepared before: raw = X * scale + mean
        x_mean, x_scale = data.x_mean + mean * data.x_scale, data.x_scale * std
    prepared = {"standardized": True, "x_mean": x_mean, "x_scale": x_scale}
    test = data.test
    if test is not None:  # scaled by the training rows' statistics: the test rows stay unseen
        test = replace(test, X=(test.X - mean) / std, **prepared)
    return replace(data, X=X, test=test, **prepared)


def holdout(data: Dataset, test_fraction: float = TEST_FRACTION, seed: int = 0) -> Dataset:
    """The training rows of `data`, with the rest (a seeded random `test_fraction`) as `.test`."""
    if not 0 < test_fraction < 1:
        raise DataError(f"test_fraction must be between 0 and 1; got {test_fraction!r}")
    n_test = round(test_fraction * data.n)
    if not 1 <= n_test < data.n:
        raise DataError(f"{data.name}: {data.n} rows are too few to hold {test_fraction:g} of them out")
    order = np.random.default_rng(seed).permutation(data.n)
    test_rows, train_rows = np.sort(order[:n_test]), np.sort(order[n_test:])
    if data.class_names is not None:  # a class the training rows lack could never be learnt
        seen = np.bincount(data.Y[train_rows], minlength=len(data.class_names))  # (k,)
        missing = int(np.flatnonzero(seen == 0)[0]) if np.any(seen == 0) else -1
        if missing >= 0:
            rows = int(np.sum(data.Y == missing))
            raise DataError(
                f"{data.name}: class {data.class_names[missing]!r} of {data.y_name} has {rows} row(s), all in the "
                f"{test_fraction:.0%} held out (seeded); each class needs training rows: add rows of it"
            )
    test = replace(data.rows(test_rows), name=f"{data.name} (held out)")
    return replace(data.rows(train_rows), test=test)

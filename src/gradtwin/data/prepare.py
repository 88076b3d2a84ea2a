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
    """
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is caught just below
        mean = data.X.mean(axis=0)
        std = data.X.std(axis=0)
        X = (data.X - mean) / std
    if np.any(std == 0):
        raise DataError(f"{data.name}: X is constant, so it cannot be standardized")
    if not (np.all(np.isfinite(std)) and np.all(np.isfinite(X))):
        raise DataError(f"{data.name}: X spreads beyond float64's range, so it cannot be standardized")
    test = data.test
    if test is not None:  # scaled by the training rows' statistics: the test rows stay unseen
        test = replace(test, X=(test.X - mean) / std, standardized=True)
    return replace(data, X=X, standardized=True, test=test)


def holdout(data: Dataset, test_fraction: float = TEST_FRACTION, seed: int = 0) -> Dataset:
    """The training rows of `data`, with the rest (a seeded random `test_fraction`) as `.test`."""
    if not 0 < test_fraction < 1:
        raise DataError(f"test_fraction must be between 0 and 1; got {test_fraction!r}")
    n_test = round(test_fraction * data.n)
    if not 1 <= n_test < data.n:
        raise DataError(f"{data.name}: {data.n} rows are too few to hold {test_fraction:g} of them out")
    order = np.random.default_rng(seed).permutation(data.n)
    test_rows, train_rows = np.sort(order[:n_test]), np.sort(order[n_test:])
    test = replace(data.rows(test_rows), name=f"{data.name} (held out)")
    return replace(data.rows(train_rows), test=test)

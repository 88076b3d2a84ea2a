"""Seeded synthetic data: a noisy line for regression, overlapping classes for the classifiers."""

from __future__ import annotations

import numpy as np

from gradtwin import validate
from gradtwin.data.dataset import Dataset
from gradtwin.data.prepare import holdout
from gradtwin.errors import DataError, UsageError
from gradtwin.manual.softmax import softmax


def synthetic_linear1d(n: int = 200, w: float = 3.0, b: float = -2.0, noise: float = 0.5, seed: int = 0) -> Dataset:
    """Y = w*X + b + noise * N(0, 1), with X ~ N(0, 1); the same seed gives the same data."""
    validate.whole(n, "n", needs="synthetic data")
    for label, value in (("w", w), ("b", b), ("noise", noise)):
        validate.finite(value, label, needs="synthetic data")
    if noise < 0:
        raise UsageError(f"synthetic data needs noise >= 0; got {noise!r}")
    validate.whole(seed, "seed", 0, needs="synthetic data")
    rng = np.random.default_rng(seed)
    X = rng.standard_normal(n)  # (n,)
    Y = w * X + b + noise * rng.standard_normal(n)  # (n,)
    return Dataset(X, Y, name=f"synthetic(n={n}, seed={seed})")


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
    P = softmax(Z)  # (n, k)
    Y = (rng.random((n, 1)) > np.cumsum(P, axis=1)).sum(axis=1).astype(np.int64)  # (n,) inverse-CDF draw
    Y = np.minimum(Y, k - 1)  # a cumulative sum that rounds below 1 must not give class k
    return holdout(Dataset(X, Y, name=f"synthetic(n={n}, d={d}, k={k}, seed={seed})", y_name="class"), seed=seed)

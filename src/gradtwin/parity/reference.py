"""Independent references the trained twins are measured against (not derived from the twins or the exact engine)."""

from __future__ import annotations

import numpy as np

from gradtwin.data import Dataset


def least_squares(data: Dataset) -> dict[str, np.ndarray]:
    """Minimiser of the mean squared error by `numpy.linalg.lstsq` on [X, 1] (float64).

    Returns {"w": () for 1-D X or (d,), "b": ()}: the point gradient descent should reach.
    """
    X = data.X.reshape(data.n, -1)  # (n, d)
    design = np.hstack([X, np.ones((data.n, 1))])  # (n, d + 1)
    coef, *_ = np.linalg.lstsq(design, data.Y, rcond=None)  # (d + 1,)
    w = coef[:-1] if data.X.ndim == 2 else coef[0]
    return {"w": np.asarray(w), "b": np.asarray(coef[-1])}

"""Central finite differences in float64: the independent referee of every hand derivation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from gradtwin.parity.rounding import unit_roundoff


def finite_differences(
    loss: Callable[[dict[str, np.ndarray]], float],
    params: dict[str, np.ndarray],
    loss_error: float,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Central differences of `loss` in float64, with a bound on their error.

    Step h = u^(1/3) * max(1, |p|) balances truncation (~h^2) and rounding (~u/h). The
    error bound is the rounding part, 2*loss_error / (2h) with `loss_error` the bound on
    one evaluation of the loss, plus the truncation part, estimated (Richardson) as
    |D(h) - D(2h)| / 3 and doubled for safety; for a quadratic loss it is rounding only.
    Returns (gradients, error bounds), each keyed like `params`.
    """
    grads: dict[str, np.ndarray] = {}
    bounds: dict[str, np.ndarray] = {}
    base = {k: np.array(v, dtype=np.float64) for k, v in params.items()}
    for name, p in base.items():
        g = np.zeros_like(p)
        e = np.zeros_like(p)
        for idx in np.ndindex(p.shape):
            h = float(fd_step(p[idx]))
            d1 = _central(loss, base, name, idx, h)
            d2 = _central(loss, base, name, idx, 2 * h)
            g[idx] = d1
            e[idx] = loss_error / h + 2.0 * abs(d1 - d2) / 3.0
        grads[name], bounds[name] = g, e
    return grads, bounds


def fd_step(p: Any) -> np.ndarray:
    """The finite-difference step for parameter values `p`: u^(1/3) * max(1, |p|) (float64)."""
    return unit_roundoff(np.float64) ** (1.0 / 3.0) * np.maximum(1.0, np.abs(np.asarray(p, dtype=np.float64)))


def _central(
    loss: Callable[[dict[str, np.ndarray]], float],
    params: dict[str, np.ndarray],
    name: str,
    idx: tuple[int, ...],
    h: float,
) -> float:
    original = params[name][idx]
    params[name][idx] = original + h
    up = float(loss(params))
    params[name][idx] = original - h
    down = float(loss(params))
    params[name][idx] = original
    return (up - down) / (2.0 * h)

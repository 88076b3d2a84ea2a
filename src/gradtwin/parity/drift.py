"""How far runs of gradient descent may drift apart through rounding alone: the one drift bound.

Two implementations of one step p' = p - lr * g(p) (two twins, two devices, one process or
several) start from the same p. Each computes g within t_g = gamma(K + ops) * scale of the
exact gradient (`rounding.tolerance`), then rounds lr*g and the subtraction once each, so
each p' is within lr*t_g + u*lr*|g| + u*|p'| of the exact step and the two differ by at most
twice that: `step_tolerance`. One implementation against the exact step (the closed-form
trajectory) differs by half of it.

Free runs drift further: with e_t = ||p^a_t - p^b_t||_2,

    e_{t+1} <= rho_t * e_t + ||delta_t||_2,     delta_t the step tolerance,

where rho_t = max_i |1 - lr * lambda_i(H_t)| for a quadratic loss (constant Hessian H_t of the
step's rows), and rho_t = 1 for a convex, L-smooth loss at lr <= 2/L, where a gradient step is
nonexpansive. For the mlp (not convex) rho_t = 1 asserts that the run did not amplify rounding
differences, which is what its twins' histories being equal means. Every element is within the
2-norm bound: `drift_tolerance`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from gradtwin.models import Model
from gradtwin.parity.rounding import ROUNDING_OPS, tolerance, unit_roundoff
from gradtwin.parity.scales import gradient_scale, loss_scale, rounding_terms


def gradient_tolerance(
    model: Model,
    params: dict[str, np.ndarray],
    X: np.ndarray,
    Y: np.ndarray,
    dtype: Any,
    ops: int = ROUNDING_OPS,
    weight: np.ndarray | None = None,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Bounds on |a - b| of the loss and of each gradient computed twice in `dtype`, in any order.

    gamma(K) * sum|terms| holds for every order of summation (Higham, sec. 3.1), so the
    bound covers a GPU's reduction tree and an all-reduce across processes alike; `ops`
    counts the roundings a term sees besides the sum (raise it for extra steps).
    """
    p64 = {k: np.asarray(v, dtype=np.float64) for k, v in params.items()}
    K = rounding_terms(model, X, p64, weight)
    loss_tol = 2 * tolerance(dtype, K, loss_scale(model, p64, X, Y, weight), ops)
    scales = gradient_scale(model, p64, X, Y, weight)
    return loss_tol, {k: 2 * tolerance(dtype, K, scales[k], ops) for k in p64}


def step_tolerance(
    model: Model,
    params: dict[str, np.ndarray],
    X: np.ndarray,
    Y: np.ndarray,
    dtype: Any,
    lr: float,
    ops: int = ROUNDING_OPS,
    weight: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Bound on |a - b| of p - lr*g(p) computed by two implementations from the same p."""
    u = unit_roundoff(dtype)
    p64 = {k: np.asarray(v, dtype=np.float64) for k, v in params.items()}
    _, grad_tol = gradient_tolerance(model, p64, X, Y, dtype, ops, weight)
    scales = gradient_scale(model, p64, X, Y, weight)  # |g| <= sum|terms|
    out = {}
    for k, p in p64.items():
        step = lr * np.asarray(scales[k])
        out[k] = lr * grad_tol[k] * (1 + u) + 2 * u * (step + (np.abs(p) + step))
    return out


def drift_tolerance(
    model: Model,
    params: dict[str, np.ndarray],
    X: np.ndarray,
    Y: np.ndarray,
    dtype: Any,
    lr: float,
    batches: Iterable[np.ndarray | None],
    ops: int = ROUNDING_OPS,
    weight: np.ndarray | None = None,
    implementations: int = 2,
) -> np.ndarray:
    """Bound on max |p^a_t - p^b_t| after each step t of two free runs from the same start.

    `params[name]` is (steps + 1, *shape): the parameters of one run at every step (the
    bound's scales are evaluated there; the other run's differ by second-order amounts).
    `batches` gives the rows of each step (None: all rows). `implementations=1` bounds one
    rounded run against the exact one (half the step tolerance). Returns (steps + 1,), from 0.
    """
    if implementations not in (1, 2):
        raise ValueError(f"implementations must be 1 or 2; got {implementations!r}")
    hessian = getattr(model.manual, "hessian", None)
    steps = next(iter(params.values())).shape[0] - 1
    bound = np.zeros(steps + 1)
    for t, rows in zip(range(steps), batches, strict=False):
        Xb, Yb = (X, Y) if rows is None else (X[rows], Y[rows])
        Vb = weight if weight is None or rows is None else weight[rows]
        if hessian is None:
            rho = 1.0  # nonexpansive (see the module's docstring)
        else:
            H = hessian(Xb) if Vb is None else hessian(Xb, weight=Vb)
            rho = float(np.max(np.abs(1.0 - lr * np.linalg.eigvalsh(np.asarray(H, dtype=np.float64)))))
        delta = step_tolerance(model, {k: v[t] for k, v in params.items()}, Xb, Yb, dtype, lr, ops, Vb)
        norm = float(np.sqrt(sum(np.sum(np.square(d)) for d in delta.values())))
        bound[t + 1] = rho * bound[t] + norm * implementations / 2
    return bound

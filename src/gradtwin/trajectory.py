"""How far two runs of gradient descent may drift apart through rounding alone, derived.

Two implementations of one step p' = p - lr * g(p) (two twins, two devices, one process
or several) start from the same p. Each computes g within t_g = gamma(K + ops) * scale of
the exact gradient (`parity.tolerance`), then rounds lr*g and the subtraction once each,
so each p' is within lr*t_g + u*lr*|g| + u*|p'| of the exact step and the two differ by at
most twice that: `step_tolerance`.

Free runs drift further: with e_t = ||p^a_t - p^b_t||_2 and H_t the Hessian of the step's
loss (constant for quadratic losses), e_{t+1} <= rho_t * e_t + ||delta_t||_2 with
rho_t = max_i |1 - lr * lambda_i(H_t)| and delta_t the step tolerance: `drift_tolerance`.
Every element is within the 2-norm bound. It needs the model's `hessian`; models without
one are compared step by step from shared points instead (`step_tolerance`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from gradtwin.check import rounding_terms
from gradtwin.data import Dataset
from gradtwin.models import Model
from gradtwin.parity import ROUNDING_OPS, tolerance, unit_roundoff


def gradient_tolerance(
    model: Model, params: dict[str, np.ndarray], X: np.ndarray, Y: np.ndarray, dtype: Any, ops: int = ROUNDING_OPS
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Bounds on |a - b| of the loss and of each gradient computed twice in `dtype`, in any order.

    gamma(K) * sum|terms| holds for every order of summation (Higham, sec. 3.1), so the
    bound covers a GPU's reduction tree and an all-reduce across processes alike; `ops`
    counts the roundings a term sees besides the sum (raise it for extra steps).
    """
    p64 = {k: np.asarray(v, dtype=np.float64) for k, v in params.items()}
    K = rounding_terms(model, Dataset(X, Y, name="tolerance"), p64)
    loss_tol = 2 * tolerance(dtype, K, model.manual.loss_scale(p64, X, Y), ops)
    scales = model.manual.gradient_scale(p64, X, Y)
    return loss_tol, {k: 2 * tolerance(dtype, K, scales[k], ops) for k in p64}


def step_tolerance(
    model: Model,
    params: dict[str, np.ndarray],
    X: np.ndarray,
    Y: np.ndarray,
    dtype: Any,
    lr: float,
    ops: int = ROUNDING_OPS,
) -> dict[str, np.ndarray]:
    """Bound on |a - b| of p - lr*g(p) computed by two implementations from the same p."""
    u = unit_roundoff(dtype)
    p64 = {k: np.asarray(v, dtype=np.float64) for k, v in params.items()}
    _, grad_tol = gradient_tolerance(model, p64, X, Y, dtype, ops)
    scales = model.manual.gradient_scale(p64, X, Y)  # |g| <= sum|terms|
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
) -> np.ndarray:
    """Bound on max |p^a_t - p^b_t| after each step t of two free runs from the same start.

    `params[name]` is (steps + 1, *shape): the parameters of one run at every step (the
    bound's scales are evaluated there; the other run's differ by second-order amounts).
    `batches` gives the rows of each step (None: all rows). Returns (steps + 1,), from 0.
    """
    hessian = getattr(model.manual, "hessian", None)
    if hessian is None:
        raise ValueError(f"model {model.name!r} has no constant Hessian; compare it step by step instead")
    steps = next(iter(params.values())).shape[0] - 1
    bound = np.zeros(steps + 1)
    for t, rows in zip(range(steps), batches, strict=False):
        Xb, Yb = (X, Y) if rows is None else (X[rows], Y[rows])
        lam = np.linalg.eigvalsh(np.asarray(hessian(Xb), dtype=np.float64))
        rho = float(np.max(np.abs(1.0 - lr * lam)))
        delta = step_tolerance(model, {k: v[t] for k, v in params.items()}, Xb, Yb, dtype, lr, ops)
        bound[t + 1] = rho * bound[t] + float(np.sqrt(sum(np.sum(np.square(d)) for d in delta.values())))
    return bound

"""Comparing twins: derived tolerances, finite differences, and mismatch reports.

Tolerances are bounds, not guesses. A sum of K rounded terms, computed in any order, is
within gamma(K) * sum|terms| of the exact sum, gamma(K) = K*u / (1 - K*u), u the unit
roundoff of the dtype (Higham, Accuracy and Stability of Numerical Algorithms, sec. 3.1).
Each twin may err by that much, so two twins may differ by twice that. Each model's
manual module supplies `gradient_scale` and `loss_scale`: the sum of |terms| of each
gradient and of the loss, evaluated with absolute values so that cancellation in the data
cannot shrink the tolerance below what rounding can really do.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

# Rounding steps a term passes through besides the sum itself: a product, a sum and a
# difference in the residual, the 2/n factor, the product with X, and the cast of X, Y and
# the parameters into a narrower dtype. Counted generously; it is tiny beside n.
ROUNDING_OPS = 10


def unit_roundoff(dtype: Any) -> float:
    """u = eps / 2: the largest relative error of one correctly rounded operation."""
    return float(np.finfo(dtype).eps) / 2.0


def gamma(k: int, dtype: Any) -> float:
    """gamma(k) = k*u / (1 - k*u), the bound on k successive roundings (inf if k*u >= 1)."""
    ku = k * unit_roundoff(dtype)
    return ku / (1.0 - ku) if ku < 1.0 else math.inf


def tolerance(dtype: Any, n_terms: int, scale: Any, ops: int = ROUNDING_OPS) -> np.ndarray:
    """Bound on |computed - exact| of one twin: gamma(n_terms + ops) * scale (elementwise)."""
    return gamma(n_terms + ops, dtype) * np.asarray(scale, dtype=np.float64)


@dataclass
class ParamCheck:
    """One parameter's comparison: worst element, both values there, errors and tolerance."""

    comparison: str  # e.g. "manual vs autograd"
    name: str  # parameter name, or "loss" for the forward value
    ok: bool
    max_abs_err: float
    max_rel_err: float
    tol: float  # the tolerance at the worst element
    worst_index: tuple[int, ...]
    a: float
    b: float
    point: int = 0  # which random point held the worst case

    def message(self) -> str:
        """A one-line diagnosis in the manner of torch.testing.assert_close."""
        at = f"[{', '.join(map(str, self.worst_index))}]" if self.worst_index else ""
        verdict = "agree" if self.ok else "MISMATCH"
        return (
            f"{self.comparison}: {self.name}{at} {verdict}: {self.a:.17g} vs {self.b:.17g}, "
            f"abs err {self.max_abs_err:.3g}, rel err {self.max_rel_err:.3g}, tolerance {self.tol:.3g}"
        )


def compare(comparison: str, name: str, a: Any, b: Any, tol: Any, point: int = 0) -> ParamCheck:
    """Compare arrays `a` and `b` elementwise against the tolerance array `tol`.

    The worst element is the one with the largest error relative to its own tolerance, so
    a small absolute error in a tightly bounded element is not hidden by a large one that
    its bound allows. NaN anywhere is a mismatch.
    """
    a64 = np.asarray(a, dtype=np.float64)
    b64 = np.asarray(b, dtype=np.float64)
    if a64.shape != b64.shape:
        raise ValueError(f"{comparison}: {name} has shape {a64.shape} in one and {b64.shape} in the other")
    tol64 = np.broadcast_to(np.asarray(tol, dtype=np.float64), a64.shape)
    err = np.abs(a64 - b64)
    err = np.where(np.isnan(err), np.inf, err)
    with np.errstate(over="ignore", invalid="ignore"):
        ratio = err / np.maximum(tol64, np.finfo(np.float64).tiny)
    flat = int(np.argmax(ratio)) if ratio.size else 0
    index = tuple(int(i) for i in np.unravel_index(flat, a64.shape)) if a64.shape else ()
    denom = np.maximum(np.abs(b64), np.finfo(np.float64).tiny)
    with np.errstate(over="ignore", invalid="ignore"):
        rel = err / denom
    return ParamCheck(
        comparison=comparison,
        name=name,
        ok=bool(np.all(err <= tol64)),
        max_abs_err=float(err.max()) if err.size else 0.0,
        max_rel_err=float(rel.max()) if err.size else 0.0,
        tol=float(tol64[index]),
        worst_index=index,
        a=float(a64[index]),
        b=float(b64[index]),
        point=point,
    )


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


def format_table(checks: list[ParamCheck]) -> str:
    """The checks as a fixed-width table, one row per comparison and parameter."""
    header = ("comparison", "param", "ok", "max abs err", "max rel err", "tolerance", "worst at", "point")
    rows = [
        (
            c.comparison,
            c.name,
            "yes" if c.ok else "NO",
            f"{c.max_abs_err:.3g}",
            f"{c.max_rel_err:.3g}",
            f"{c.tol:.3g}",
            str(list(c.worst_index)) if c.worst_index else "-",
            str(c.point),
        )
        for c in checks
    ]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(v).ljust(w) for v, w in zip(r, widths, strict=True)) for r in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def to_json(checks: list[ParamCheck]) -> str:
    """The checks as JSON; non-finite numbers become null so the output stays valid JSON."""
    return json.dumps([finite_or_none(asdict(c)) for c in checks], indent=2)


def finite_or_none(value: Any) -> Any:
    """Replace NaN and infinities (at any depth) with None: JSON has no NaN."""
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def worst(checks: list[ParamCheck]) -> list[ParamCheck]:
    """Per (comparison, parameter), the check whose error is largest against its tolerance."""
    best: dict[tuple[str, str], ParamCheck] = {}
    for c in checks:
        key = (c.comparison, c.name)
        ratio = c.max_abs_err / max(c.tol, np.finfo(np.float64).tiny)
        if key not in best:
            best[key] = c
            continue
        old = best[key]
        old_ratio = old.max_abs_err / max(old.tol, np.finfo(np.float64).tiny)
        if (not c.ok and old.ok) or (c.ok == old.ok and ratio > old_ratio):
            best[key] = c
    return list(best.values())


def history_max_abs_diff(a: Any, b: Any) -> dict[str, float]:
    """Largest |a - b| of each parameter and of the loss over the iterations both recorded.

    `a` and `b` are `train.History` objects; rows are matched by iteration number, so runs
    that stopped at different iterations are compared over what they share.
    """
    common, ia, ib = np.intersect1d(a.iteration, b.iteration, return_indices=True)
    out: dict[str, float] = {}
    for name in a.params:
        diff = np.abs(a.params[name][ia] - b.params[name][ib])
        out[name] = float(np.nan_to_num(diff, nan=np.inf).max()) if common.size else math.nan
    diff = np.abs(a.loss[ia] - b.loss[ib])
    out["loss"] = float(np.nan_to_num(diff, nan=np.inf).max()) if common.size else math.nan
    return out


def history_bound(model: Any, data: Any, history: Any, lr: float, dtype: Any) -> np.ndarray:
    """Bound on ||p_k - p_k exact||_2 for a twin run in `dtype`, at each row of `history`.

    The computed step is p_{k+1} = p_k - lr * (g(p_k) + a_k) + b_k, where a_k is the gradient's
    rounding error (at most `tolerance(dtype, K, gradient_scale)`) and b_k that of the update
    (at most u * (|lr g| + |p_{k+1}|): one product, one difference). For a quadratic loss the
    error then evolves as e_{k+1} = (I - lr H) e_k + lr a_k + b_k, and ||I - lr H||_2 <= 1 for
    0 < lr <= 2 / lambda_max, so ||e_k||_2 <= sum_{j<k} ||lr a_j + b_j||_2. Valid for the
    models with a constant Hessian (`manual.hessian`) at a stable lr, with `history` recorded at
    every iteration, in float64 data already rounded to `dtype` (both runs see that data).
    Two twins in `dtype` differ from each other by at most twice this.
    """
    X = np.asarray(np.asarray(data.X, dtype=dtype), dtype=np.float64)
    Y = np.asarray(np.asarray(data.Y, dtype=dtype), dtype=np.float64)
    K = int(model.manual.rounding_terms(X)) if hasattr(model.manual, "rounding_terms") else int(X.shape[0])
    u = unit_roundoff(dtype)
    rows = history.iteration.size
    if rows > 1 and not np.array_equal(history.iteration, np.arange(rows)):
        raise ValueError("history_bound needs a history recorded at every iteration (record_every=1)")
    steps = np.zeros(rows)
    for k in range(rows - 1):
        p = {name: values[k] for name, values in history.params.items()}
        nxt = {name: values[k + 1] for name, values in history.params.items()}
        grads = model.manual.gradients(p, X, Y)
        scale = model.manual.gradient_scale(p, X, Y)
        total = 0.0
        for name in p:
            a = tolerance(dtype, K, scale[name])
            b = u * (np.abs(lr * np.asarray(grads[name])) + np.abs(nxt[name]))
            total += float(np.sum((lr * a + b) ** 2))
        steps[k + 1] = math.sqrt(total)
    return np.cumsum(steps)

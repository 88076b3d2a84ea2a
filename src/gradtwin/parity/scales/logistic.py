"""Rounding scales of binary logistic regression: the sizes each gradient element is built from."""

from __future__ import annotations

from typing import Any

from array_api_compat import array_namespace

from gradtwin.manual.logistic import logits, sigmoid
from gradtwin.parity.rounding import FLUSH

Params = dict[str, Any]


def _magnitudes(params: Params, X: Any, Y: Any) -> tuple[Any, Any, Any]:
    """a_i = sum_j |X_ij w_j| + |b| (the size of z_i's sum), sigma(t_i) and softplus(t_i)."""
    xp = array_namespace(X, Y)
    a = xp.abs(X) @ xp.abs(params["w"]) + xp.abs(params["b"])  # (n,)
    z = logits(params, X)  # (n,)
    t = (1.0 - 2.0 * xp.astype(Y, z.dtype)) * z  # (n,)
    return a, sigmoid(t), xp.logaddexp(xp.zeros_like(t), t)


def gradient_scale(params: Params, X: Any, Y: Any, weight: Any = None) -> Params:
    """Sum of the magnitudes each gradient element is built from, for rounding bounds.

    dL/dz_i = s_i sigma(t_i) / n carries its own few roundings (exp, 1 + e, the division:
    relative, so of size sigma(t_i)), plus the error of z_i, at most gamma(d) * a_i, passed
    on through dsigma/dt = sigma (1 - sigma) <= sigma. So |error of dL/dz_i| is bounded by a
    gamma times e_i = sigma(t_i) * (1 + a_i) / n, and dw_j = sum_i X_ij dL/dz_i by a gamma
    times sum_i |X_ij| e_i. The sum over d features inside z is why `rounding_terms` is n + d.
    sigma, the division by n and each product may flush to zero: FLUSH for each of them.
    Weighted: v_i / sum_k v_k in place of 1/n.
    Shapes::  -> {"w": (d,), "b": ()}
    """
    xp = array_namespace(X, Y)
    n = X.shape[0]
    a, sig, _ = _magnitudes(params, X, Y)
    if weight is None:
        e = (sig + FLUSH) * (1.0 + a) / n + FLUSH  # (n,)
    else:
        e = (sig + FLUSH) * (1.0 + a) * (weight / xp.sum(weight)) + FLUSH  # (n,)
    return {"w": xp.abs(X).T @ e + n * FLUSH, "b": xp.sum(e)}


def loss_scale(params: Params, X: Any, Y: Any, weight: Any = None) -> Any:
    """1/n * sum_i (softplus(t_i) + sigma(t_i) * a_i): each term's own size plus the error of
    z_i (at most gamma(d) * a_i) times the slope dsoftplus/dt = sigma(t_i); FLUSH for a
    softplus of a very negative t, which is exp(t) and may flush to zero (weighted mean)."""
    xp = array_namespace(X, Y)
    a, sig, softplus = _magnitudes(params, X, Y)
    if weight is None:
        return xp.mean(softplus + sig * a + FLUSH)
    return xp.sum(weight * (softplus + sig * a + FLUSH)) / xp.sum(weight)


def rounding_terms(X: Any, params: Params, weight: Any = None) -> int:
    """The longest chain of roundings: the sum over d features in z, then over n samples, n more with weights"""
    return int(X.shape[0] + X.shape[1]) + (int(X.shape[0]) if weight is not None else 0)

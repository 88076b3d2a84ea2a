"""Rounding scales of multivariate linear regression: the sum of |terms| behind its loss and gradients."""

from __future__ import annotations

from typing import Any

from array_api_compat import array_namespace

Params = dict[str, Any]


def gradient_scale(params: Params, X: Any, Y: Any, weight: Any = None) -> Params:
    """Sum of the magnitudes of the terms each gradient adds up, for rounding bounds.

    A term of dw_j is 2/n * X_ij * (X_i . w + b - Y_i); its rounding error is bounded by a few
    unit roundoffs of 2/n * |X_ij| * (|X_i| . |w| + |b| + |Y_i|), whatever the residual's sign
    (weighted: 2 * v_i / sum_k v_k in place of 2/n).
    Shapes::  -> {"w": (d,), "b": ()}
    """
    xp = array_namespace(X, Y)
    n = X.shape[0]
    size = xp.abs(X) @ xp.abs(params["w"]) + xp.abs(params["b"]) + xp.abs(Y)  # (n,)
    if weight is None:
        return {"w": (2.0 / n) * (size @ xp.abs(X)), "b": (2.0 / n) * xp.sum(size)}
    size = (2.0 / xp.sum(weight)) * (weight * size)  # (n,)
    return {"w": size @ xp.abs(X), "b": xp.sum(size)}


def loss_scale(params: Params, X: Any, Y: Any, weight: Any = None) -> Any:
    """Bound on the magnitude of the loss's terms: 1/n * sum_i (|X_i| . |w| + |b| + |Y_i|)^2 (weighted mean)."""
    xp = array_namespace(X, Y)
    size = xp.abs(X) @ xp.abs(params["w"]) + xp.abs(params["b"]) + xp.abs(Y)  # (n,)
    if weight is None:
        return xp.mean(size * size)
    return xp.sum(weight * (size * size)) / xp.sum(weight)


def rounding_terms(X: Any, params: Params, weight: Any = None) -> int:
    """The longest sum: n rows in dw and db, after d + 2 terms in each residual, n more with weights"""
    return int(X.shape[0]) + int(X.shape[1]) + 2 + (int(X.shape[0]) if weight is not None else 0)

"""Rounding scales of the article's model: the sum of |terms| behind its loss and gradients."""

from __future__ import annotations

from typing import Any

from array_api_compat import array_namespace

Params = dict[str, Any]


def gradient_scale(params: Params, X: Any, Y: Any) -> Params:
    """Sum of the magnitudes of the terms each gradient adds up, for rounding bounds.

    Every term of dw is 2/n * X_i * (X_i w + b - Y_i); its rounding error is bounded by
    a few unit roundoffs of 2/n * |X_i| * (|X_i w| + |b| + |Y_i|), whatever the sign of the
    residual. Summing those over i gives the scale that `parity.tolerance` multiplies.
    Shapes::  -> {"w": (), "b": ()}
    """
    xp = array_namespace(X, Y)
    n = X.shape[0]
    size = xp.abs(X * params["w"]) + xp.abs(params["b"]) + xp.abs(Y)  # (n,)
    return {"w": (2.0 / n) * xp.sum(xp.abs(X) * size), "b": (2.0 / n) * xp.sum(size)}


def loss_scale(params: Params, X: Any, Y: Any) -> Any:
    """Bound on the magnitude of the loss's terms: 1/n * sum_i (|X_i w| + |b| + |Y_i|)^2."""
    xp = array_namespace(X, Y)
    size = xp.abs(X * params["w"]) + xp.abs(params["b"]) + xp.abs(Y)  # (n,)
    return xp.mean(size * size)


def rounding_terms(X: Any, params: Params, weight: Any = None) -> int:
    """The longest sum: n rows in dw and db (each residual is one product and two sums); no weights."""
    return int(X.shape[0])

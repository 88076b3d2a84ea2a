"""Rounding scales of the one-hidden-layer network: each intermediate's error scale, line by line."""

from __future__ import annotations

from typing import Any

from array_api_compat import array_namespace

from gradtwin.manual.mlp import activation_derivative, forward
from gradtwin.parity.rounding import FLUSH
from gradtwin.parity.scales.softmax import head_scales

Params = dict[str, Any]


def _scales(params: Params, X: Any, Y: Any, activation: str) -> dict[str, Any]:
    """Each intermediate's error scale s (|error| <= gamma * s, s >= |value|), line by line.

    The rule at each line: a sum or product errs by its own rounding (the size of its terms)
    plus each input's error times how strongly the output depends on that input, plus FLUSH
    for a value or product that may flush to zero (times the terms of a sum). Valid to first
    order; for relu only where no A_ij is within rounding of the kink (the registry's random
    problems keep clear of it).
    """
    xp = array_namespace(X, Y)
    h, k = params["W2"].shape
    W2 = xp.abs(params["W2"])  # (h, k)
    A, H, Z = forward(params, X, activation)
    D = activation_derivative(A, H, activation)  # (n, h)
    s_A = xp.abs(X) @ xp.abs(params["W1"]) + xp.abs(params["b1"])  # (n, h)  sum over d features
    s_H = xp.abs(H) + FLUSH + xp.abs(D) * s_A  # (n, h)  act's rounding + slope * error of A
    s_Z = s_H @ W2 + xp.abs(params["b2"]) + h * FLUSH  # (n, k)  sum over h hidden units
    s_dZ, loss_terms = head_scales(Z, s_Z, Y)  # (n, k), (n,)  lse over k classes
    s_dH = s_dZ @ W2.T + k * FLUSH  # (n, h)  sum over k classes
    if activation == "tanh":  # 1 - H*H: two roundings, and 2|H| times the error of H
        s_D = xp.abs(D) + H * H + 2.0 * xp.abs(H) * s_H
    elif activation == "sigmoid":  # H*(1 - H): two roundings, and |1 - 2H| <= 1 times the error of H
        s_D = 2.0 * xp.abs(D) + s_H + FLUSH
    else:  # relu: 0 or 1 exactly, away from the kink
        s_D = D
    s_dA = s_dH * s_D + FLUSH  # (n, h)
    return {"H": s_H, "dZ": s_dZ, "dA": s_dA, "loss_terms": loss_terms}


def gradient_scale(params: Params, X: Any, Y: Any, activation: str = "tanh") -> Params:
    """Sum of the magnitudes each gradient element is built from, for rounding bounds.

    dW2 = H.T @ dZ errs by at most gamma * s_H.T @ s_dZ, and dW1 = X.T @ dA by gamma * |X|.T @ s_dA,
    where s_dA has come through the sums over d (in A), h (in Z), k (in lse, and in dH): see
    `_scales`. Shapes::  -> {"W1": (d, h), "b1": (h,), "W2": (h, k), "b2": (k,)}
    """
    xp = array_namespace(X, Y)
    n = X.shape[0]
    s = _scales(params, X, Y, activation)
    return {
        "W1": xp.abs(X).T @ s["dA"] + n * FLUSH,
        "b1": xp.sum(s["dA"], axis=0),
        "W2": s["H"].T @ s["dZ"] + n * FLUSH,
        "b2": xp.sum(s["dZ"], axis=0),
    }


def loss_scale(params: Params, X: Any, Y: Any, activation: str = "tanh") -> Any:
    """1/n * sum_i (scale of lse_i + scale of Z_{i,Y_i}), Z's scale carried through the hidden layer."""
    xp = array_namespace(X, Y)
    return xp.mean(_scales(params, X, Y, activation)["loss_terms"])


def rounding_terms(X: Any, params: Params, weight: Any = None) -> int:
    """The longest chain of roundings: d in A, h in Z, k in lse, k in dH, then n samples, n more with weights"""
    return int(X.shape[0] + X.shape[1] + params["W1"].shape[1] + 2 * params["W2"].shape[1]) + (
        int(X.shape[0]) if weight is not None else 0
    )

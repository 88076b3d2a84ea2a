"""Rounding scales of softmax regression and of the cross-entropy head it shares with the mlp."""

from __future__ import annotations

from typing import Any

from array_api_compat import array_namespace

from gradtwin.manual.softmax import log_sum_exp, logits, one_hot
from gradtwin.parity.rounding import FLUSH

Params = dict[str, Any]


def head_scales(Z: Any, sZ: Any, Y: Any, weight: Any = None) -> tuple[Any, Any]:
    """Magnitudes the cross-entropy head is built from, given a bound sZ >= |Z| on Z's error scale.

    Every rounded quantity contributes its size times how strongly the result depends on it:
      lse_i: its own size |lse_i|, log of a sum in [1, k] (1), and each exp(Z_ij - m_i),
             whose argument errs by |Z_ij - m_i| and sZ_ij, weighted by dlse/dZ_ij = P_ij;
      P_ic = exp(Z_ic - lse_i): exp itself (1), the difference |Z_ic - lse_i|, and the errors
             of Z_ic and lse_i, all relative, so weighted by P_ic;
      n * dL/dZ_ic = P_ic - onehot_ic: plus the size of onehot_ic;
      and FLUSH for each exp and for the division by n, which may flush to zero.
    Weighted: v_i / sum_k v_k in place of 1/n.
    Returns s_dZ (n, k), with |error of dL/dZ| <= gamma * s_dZ, and the loss terms' scale (n,).
    """
    xp = array_namespace(Z, Y)
    onehot = one_hot(Y, Z)  # (n, k)
    m = xp.max(Z, axis=1, keepdims=True)  # (n, 1)
    lse = log_sum_exp(Z)[:, None]  # (n, 1)
    P = xp.exp(Z - lse) + FLUSH  # (n, k)
    s_lse = xp.abs(lse) + 1.0 + xp.sum(P * (sZ + xp.abs(Z - m)), axis=1, keepdims=True)  # (n, 1)
    e = onehot + P * (1.0 + xp.abs(Z - lse) + sZ + s_lse)  # (n, k)
    loss_terms = s_lse[:, 0] + xp.sum(onehot * sZ, axis=1)  # (n,)
    if weight is None:
        return e / Z.shape[0] + FLUSH, loss_terms
    return e * (weight / xp.sum(weight))[:, None] + FLUSH, loss_terms


def _z_scale(params: Params, X: Any) -> Any:
    """sZ_ic = sum_j |X_ij W_jc| + |b_c| >= |Z_ic|: Z's sum over d features errs by gamma(d) * sZ."""
    xp = array_namespace(X)
    return xp.abs(X) @ xp.abs(params["W"]) + xp.abs(params["b"])  # (n, k)


def gradient_scale(params: Params, X: Any, Y: Any, weight: Any = None) -> Params:
    """Sum of the magnitudes each gradient element is built from, for rounding bounds.

    dW_jc = sum_i X_ij dL/dZ_ic, and dL/dZ_ic errs by at most gamma * s_dZ_ic (`head_scales`,
    which carries the sum over k classes inside log-sum-exp and the error of Z from its sum
    over d features), so dW errs by at most gamma * (|X|.T @ s_dZ + n * FLUSH), FLUSH for
    each product that may flush to zero.  Shapes::  -> {"W": (d, k), "b": (k,)}
    """
    xp = array_namespace(X, Y)
    s_dZ, _ = head_scales(logits(params, X), _z_scale(params, X), Y, weight)  # (n, k)
    return {"W": xp.abs(X).T @ s_dZ + X.shape[0] * FLUSH, "b": xp.sum(s_dZ, axis=0)}


def loss_scale(params: Params, X: Any, Y: Any, weight: Any = None) -> Any:
    """1/n * sum_i (scale of lse_i + scale of Z_{i,Y_i}) (weighted mean): see `head_scales`."""
    xp = array_namespace(X, Y)
    _, loss_terms = head_scales(logits(params, X), _z_scale(params, X), Y)
    if weight is None:
        return xp.mean(loss_terms)
    return xp.sum(weight * loss_terms) / xp.sum(weight)


def rounding_terms(X: Any, params: Params, weight: Any = None) -> int:
    """The longest chain of roundings: d features in Z, k classes in lse, then n samples, n more with weights"""
    return int(X.shape[0] + X.shape[1] + params["W"].shape[1]) + (int(X.shape[0]) if weight is not None else 0)

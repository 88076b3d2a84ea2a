"""Layer normalisation, derived by hand: each row standardised over its own features (the last axis).

Unlike batch normalisation the statistics are per sample, a mean and a biased variance over the
d features of each row, so rows do not interact; then an affine scale gamma and shift beta (d,)
shared by every row. Leading axes beyond n (a sequence, say) work the same way. `xp` is the
array namespace of X, so NumPy arrays and torch tensors without autograd both work.
"""

from __future__ import annotations

from typing import Any

from array_api_compat import array_namespace

Params = dict[str, Any]
EPS = 1e-5  # added to the variance before the square root, as torch's default


def forward(params: Params, X: Any, eps: float = EPS) -> Any:
    """out = gamma * (X - mu) / sqrt(var + eps) + beta, mu and var of each row (last axis, biased).

    Shapes::  X (n, d), gamma (d,), beta (d,)  ->  out (n, d)      (or X (..., d) -> out (..., d))
    """
    xp = array_namespace(X)
    mu = xp.mean(X, axis=-1, keepdims=True)  # (n, 1)
    Xc = X - mu  # (n, d)
    var = xp.mean(Xc * Xc, axis=-1, keepdims=True)  # (n, 1)  biased: 1/d
    Xhat = Xc / xp.sqrt(var + eps)  # (n, d)
    return params["gamma"] * Xhat + params["beta"]  # (n, d)


def backward(params: Params, X: Any, dout: Any, eps: float = EPS) -> Params:
    """dL/dX, dL/dgamma and dL/dbeta for the upstream gradient dout = dL/dout, one step a line.

    Forward:: mu_i = 1/d sum_j X_ij ;  Xc = X - mu ;  var_i = 1/d sum_j Xc_ij^2 ;  inv_i = (var_i + eps)^(-1/2)
              Xhat = Xc * inv ;  out = gamma * Xhat + beta
    Chain::   dL/dbeta  = sum_i dout_i                            (dout/dbeta = 1; over every row)
              dL/dgamma = sum_i dout_i * Xhat_i                   (dout/dgamma = Xhat)
              dL/dXhat  = dout * gamma                            (dout/dXhat = gamma)
              dL/dinv_i = sum_j dL/dXhat_ij * Xc_ij               (dXhat/dinv = Xc; along the row)
              dL/dvar   = dL/dinv * (-1/2) * inv^3                (dinv/dvar = -1/2 (var + eps)^(-3/2))
              dL/dXc    = dL/dXhat * inv + dL/dvar * 2/d * Xc     (Xc reaches L by Xhat and by var; 1/d: biased)
              dL/dmu_i  = -sum_j dL/dXc_ij                        (dXc/dmu = -1)
              dL/dX     = dL/dXc + dL/dmu / d                     (dmu_i/dX_ij = 1/d: the mean term)
    Together:: dL/dX_i = inv_i/d * (d dL/dXhat_i - sum_j dL/dXhat_ij - Xhat_i * sum_j dL/dXhat_ij Xhat_ij)
    Shapes::  X (n, d), gamma (d,), beta (d,), dout (n, d)  ->  dX (n, d), dgamma (d,), dbeta (d,)
    """
    xp = array_namespace(X, dout)
    d = X.shape[-1]
    rows = tuple(range(X.ndim - 1))  # every axis but the features': the parameters are shared across them
    mu = xp.mean(X, axis=-1, keepdims=True)  # (n, 1)
    Xc = X - mu  # (n, d)
    var = xp.mean(Xc * Xc, axis=-1, keepdims=True)  # (n, 1)
    inv = 1.0 / xp.sqrt(var + eps)  # (n, 1)
    Xhat = Xc * inv  # (n, d)
    dbeta = xp.sum(dout, axis=rows)  # (d,)
    dgamma = xp.sum(dout * Xhat, axis=rows)  # (d,)
    dXhat = dout * params["gamma"]  # (n, d)
    dinv = xp.sum(dXhat * Xc, axis=-1, keepdims=True)  # (n, 1)
    dvar = dinv * (-0.5) * inv * inv * inv  # (n, 1)
    dXc = dXhat * inv + dvar * (2.0 / d) * Xc  # (n, d)
    dmu = -xp.sum(dXc, axis=-1, keepdims=True)  # (n, 1)
    dX = dXc + dmu / d  # (n, d)
    return {"X": dX, "gamma": dgamma, "beta": dbeta}

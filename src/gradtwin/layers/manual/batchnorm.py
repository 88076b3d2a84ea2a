"""Batch normalisation in training mode, derived by hand: each feature standardised by its batch statistics.

The statistics are the batch's own, with the biased variance (a mean over the n rows, as
torch.nn.functional.batch_norm uses in training), then an affine scale gamma and shift beta.
No running averages: this is the layer a training step differentiates. `xp` is the array
namespace of X, so NumPy arrays and torch tensors without autograd both work.
"""

from __future__ import annotations

from typing import Any

from array_api_compat import array_namespace

from gradtwin.layers.inputs import batch_rows

Params = dict[str, Any]
EPS = 1e-5  # added to the variance before the square root, as torch's default


def forward(params: Params, X: Any, eps: float = EPS) -> Any:
    """out = gamma * (X - mu) / sqrt(var + eps) + beta, mu and var over the batch (axis 0, biased).

    Shapes::  X (n, d), gamma (d,), beta (d,)  ->  out (n, d)
    """
    xp = array_namespace(X)
    batch_rows(X)
    mu = xp.mean(X, axis=0)  # (d,)
    Xc = X - mu  # (n, d)
    var = xp.mean(Xc * Xc, axis=0)  # (d,)  biased: 1/n
    Xhat = Xc / xp.sqrt(var + eps)  # (n, d)
    return params["gamma"] * Xhat + params["beta"]  # (n, d)


def backward(params: Params, X: Any, dout: Any, eps: float = EPS) -> Params:
    """dL/dX, dL/dgamma and dL/dbeta for the upstream gradient dout = dL/dout, one step a line.

    Forward:: mu = 1/n sum_i X_i ;  Xc = X - mu ;  var = 1/n sum_i Xc_i^2 ;  inv = (var + eps)^(-1/2)
              Xhat = Xc * inv ;  out = gamma * Xhat + beta
    Chain::   dL/dbeta  = sum_i dout_i                            (dout/dbeta = 1)
              dL/dgamma = sum_i dout_i * Xhat_i                   (dout/dgamma = Xhat)
              dL/dXhat  = dout * gamma                            (dout/dXhat = gamma)
              dL/dinv   = sum_i dL/dXhat_i * Xc_i                 (dXhat/dinv = Xc)
              dL/dvar   = dL/dinv * (-1/2) * inv^3                (dinv/dvar = -1/2 (var + eps)^(-3/2))
              dL/dXc    = dL/dXhat * inv + dL/dvar * 2/n * Xc     (Xc reaches L by Xhat and by var; 1/n: biased)
              dL/dmu    = -sum_i dL/dXc_i                         (dXc/dmu = -1)
              dL/dX     = dL/dXc + dL/dmu / n                     (dmu/dX_i = 1/n: the centring term)
    Together:: dL/dX = inv/n * (n dL/dXhat - sum_i dL/dXhat_i - Xhat * sum_i dL/dXhat_i Xhat_i)
    Shapes::  X (n, d), gamma (d,), beta (d,), dout (n, d)  ->  dX (n, d), dgamma (d,), dbeta (d,)
    """
    xp = array_namespace(X, dout)
    batch_rows(X)
    n = X.shape[0]
    mu = xp.mean(X, axis=0)  # (d,)
    Xc = X - mu  # (n, d)
    var = xp.mean(Xc * Xc, axis=0)  # (d,)
    inv = 1.0 / xp.sqrt(var + eps)  # (d,)
    Xhat = Xc * inv  # (n, d)
    dbeta = xp.sum(dout, axis=0)  # (d,)
    dgamma = xp.sum(dout * Xhat, axis=0)  # (d,)
    dXhat = dout * params["gamma"]  # (n, d)
    dinv = xp.sum(dXhat * Xc, axis=0)  # (d,)
    dvar = dinv * (-0.5) * inv * inv * inv  # (d,)
    dXc = dXhat * inv + dvar * (2.0 / n) * Xc  # (n, d)
    dmu = -xp.sum(dXc, axis=0)  # (d,)
    dX = dXc + dmu / n  # (n, d)
    return {"X": dX, "gamma": dgamma, "beta": dbeta}

"""Multivariate linear regression, pred = X @ w + b with mean squared error, derived by hand.

`xp` is the array namespace of the data (NumPy by default), so the same source also runs on
torch tensors without autograd. Every loss is a mean over the samples; with `weight`
(v (n,), >= 0, not all 0) it is the weighted mean sum_i v_i l_i / sum_i v_i instead, so an
integer weight counts a sample that many times and a zero weight drops it.
"""

from __future__ import annotations

from typing import Any

from array_api_compat import array_namespace, device

Params = dict[str, Any]


def predict(params: Params, X: Any) -> Any:
    """pred = X @ w + b.   Shapes::  X (n, d), w (d,), b ()  ->  pred (n,)"""
    return X @ params["w"] + params["b"]


def loss(params: Params, X: Any, Y: Any, weight: Any = None) -> Any:
    """Mean squared error.   Loss::  L = 1/n * sum_i (X_i . w + b - Y_i)^2   ->  ()

    Weighted::  L = sum_i v_i (X_i . w + b - Y_i)^2 / sum_i v_i
    """
    xp = array_namespace(X, Y)
    residual = predict(params, X) - Y  # (n,)
    if weight is None:
        return xp.mean(residual * residual)  # ()
    return xp.sum(weight * (residual * residual)) / xp.sum(weight)  # ()


def backward(params: Params, X: Any, Y: Any, weight: Any = None) -> Params:
    """The backward pass, one step a line: dL/dpred, then dL/dw and dL/db.

    Loss::    L = 1/n * sum_i (pred_i - Y_i)^2,   pred_i = sum_j X_ij w_j + b
    Chain::   dL/dpred_i = 2/n * (pred_i - Y_i)
              dL/dw = X.T @ dL/dpred      (dpred_i/dw_j = X_ij: dL/dw_j = sum_i dL/dpred_i * X_ij)
              dL/db = sum_i dL/dpred_i    (dpred_i/db = 1)
    Weighted::  dL/dpred_i = 2 * v_i / sum_k v_k * (pred_i - Y_i), the rest unchanged
    Shapes::  X (n, d), Y (n,), w (d,), b (), v (n,)  ->  dpred (n,), dw (d,), db ()
    """
    xp = array_namespace(X, Y)
    n = X.shape[0]
    residual = predict(params, X) - Y  # (n,)
    if weight is None:
        dpred = (2.0 / n) * residual  # (n,)
    else:
        dpred = (2.0 / xp.sum(weight)) * (weight * residual)  # (n,)
    dw = dpred @ X  # (d,)  = X.T @ dpred, summed over the n rows
    db = xp.sum(dpred)  # ()
    return {"pred": dpred, "w": dw, "b": db}


def gradients(params: Params, X: Any, Y: Any, weight: Any = None) -> Params:
    """Gradients of the mean squared error with respect to w and b: the parameters' part of `backward`.

    Shapes::  X (n, d), Y (n,), w (d,), b (), v (n,)  ->  dw (d,), db ()
    """
    steps = backward(params, X, Y, weight)
    return {name: steps[name] for name in ("w", "b")}


def hessian(X: Any, weight: Any = None) -> Any:
    """Hessian of the loss in (w, b); constant, since the loss is quadratic.

    With A = [X 1] (n, d + 1):  H = 2/n * A.T @ A      Shapes::  X (n, d) -> H (d + 1, d + 1)
    Weighted::  H = 2 * A.T @ diag(v) @ A / sum_i v_i
    Gradient descent is stable for lr < 2 / lambda_max(H).
    """
    xp = array_namespace(X)
    n = X.shape[0]
    A = xp.concat([X, xp.ones((n, 1), dtype=X.dtype, device=device(X))], axis=1)  # (n, d + 1)
    if weight is None:
        return (2.0 / n) * (A.T @ A)  # (d + 1, d + 1)
    return (2.0 / xp.sum(weight)) * (A.T @ (weight[:, None] * A))  # (d + 1, d + 1)

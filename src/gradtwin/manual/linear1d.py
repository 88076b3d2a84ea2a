"""The article's model, 1-D linear regression, with gradients derived by hand.

predict = X*w + b, loss = mean squared error. The article's code has three bugs in this
math that are corrected here (see the README): the MSE parenthesis, and the sign of both
gradients. `xp` is the array namespace of the data (NumPy by default), so the same source
also runs on torch tensors without autograd.
"""

from __future__ import annotations

from typing import Any

from array_api_compat import array_namespace, device

Params = dict[str, Any]


def predict(params: Params, X: Any) -> Any:
    """pred = X*w + b.   Shapes::  X (n,), w (), b ()  ->  pred (n,)"""
    return X * params["w"] + params["b"]


def loss(params: Params, X: Any, Y: Any) -> Any:
    """Mean squared error.   Loss::  L = 1/n * sum_i (X_i w + b - Y_i)^2   ->  ()"""
    xp = array_namespace(X, Y)
    residual = predict(params, X) - Y  # (n,)
    return xp.mean(residual * residual)  # ()


def backward(params: Params, X: Any, Y: Any) -> Params:
    """The backward pass, one step a line: dL/dpred, then dL/dw and dL/db.

    Loss::    L = 1/n * sum_i (pred_i - Y_i)^2,   pred_i = X_i w + b
    Chain::   dL/dpred_i = 2/n * (pred_i - Y_i)
              dL/dw = sum_i dL/dpred_i * X_i      (dpred_i/dw = X_i)
              dL/db = sum_i dL/dpred_i            (dpred_i/db = 1)
    Shapes::  X (n,), Y (n,), w (), b ()  ->  dpred (n,), dw (), db ()

    The article writes `-2 * ...(pred - Y)`: that is the derivative with respect to the
    residual Y - pred, and stepping along it climbs the loss. The sign here is +.
    """
    xp = array_namespace(X, Y)
    n = X.shape[0]
    residual = predict(params, X) - Y  # (n,)
    dpred = (2.0 / n) * residual  # (n,)
    dw = xp.sum(dpred * X)  # ()
    db = xp.sum(dpred)  # ()
    return {"pred": dpred, "w": dw, "b": db}


def gradients(params: Params, X: Any, Y: Any) -> Params:
    """Gradients of the mean squared error with respect to w and b: the parameters' part of `backward`.

    Shapes::  X (n,), Y (n,), w (), b ()  ->  dw (), db ()
    """
    steps = backward(params, X, Y)
    return {name: steps[name] for name in ("w", "b")}


def hessian(X: Any) -> Any:
    """Hessian of the loss in (w, b); constant, since the loss is quadratic.

    H = 2/n * [[sum X_i^2, sum X_i], [sum X_i, n]]       Shapes::  X (n,) -> H (2, 2)
    Gradient descent is stable for lr < 2 / lambda_max(H).
    """
    xp = array_namespace(X)
    n = X.shape[0]
    sx = xp.sum(X)
    sxx = xp.sum(X * X)
    return (2.0 / n) * xp.stack([xp.stack([sxx, sx]), xp.stack([sx, xp.asarray(n, dtype=X.dtype, device=device(X))])])

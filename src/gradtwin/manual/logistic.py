"""Binary logistic regression, mean cross-entropy from the logits, with gradients derived by hand.

Labels are integers 0 or 1. The loss of one sample is written through its signed logit
t = s*z with s = 1 - 2y (s = +1 for y = 0, -1 for y = 1):

    -y log sigma(z) - (1 - y) log(1 - sigma(z)) = softplus(s*z),   softplus(t) = log(1 + e^t)

and softplus is evaluated as logaddexp(0, t), which never overflows: a logit of 1e4 costs
1e4 and a logit of -1e4 costs 0, where log(sigmoid(z)) would give log(0) = -inf.

With `weight` (v (n,), >= 0, not all 0) the mean over samples becomes the weighted mean
sum_i v_i l_i / sum_i v_i: an integer weight counts a sample that many times, zero drops it.
"""

from __future__ import annotations

from typing import Any

from array_api_compat import array_namespace

from gradtwin.manual import linear

Params = dict[str, Any]


def logits(params: Params, X: Any) -> Any:
    """z = X @ w + b.   Shapes::  X (n, d), w (d,), b ()  ->  z (n,)"""
    return X @ params["w"] + params["b"]


def predict(params: Params, X: Any) -> Any:
    """Class labels: 1 where z > 0 (sigma(z) > 1/2), else 0.   Shapes::  X (n, d) -> (n,) int64"""
    xp = array_namespace(X)
    return xp.astype(logits(params, X) > 0, xp.int64)


def loss(params: Params, X: Any, Y: Any, weight: Any = None) -> Any:
    """Mean cross-entropy.   Loss::  L = 1/n * sum_i softplus(s_i * z_i),  s_i = 1 - 2 Y_i   ->  ()

    Weighted::  L = sum_i v_i softplus(s_i * z_i) / sum_i v_i
    """
    xp = array_namespace(X, Y)
    z = logits(params, X)  # (n,)
    s = 1.0 - 2.0 * xp.astype(Y, z.dtype)  # (n,) +1 or -1, exact
    terms = xp.logaddexp(xp.zeros_like(z), s * z)  # (n,)
    if weight is None:
        return xp.mean(terms)  # ()
    return xp.sum(weight * terms) / xp.sum(weight)  # ()


def backward(params: Params, X: Any, Y: Any, weight: Any = None) -> Params:
    """The backward pass, one step a line: dL/dz, then dL/dw and dL/db.

    Loss::    L = 1/n * sum_i softplus(t_i),   t_i = s_i z_i,   z_i = X_i w + b,   s_i = 1 - 2 Y_i
    Chain::   dL/dz_i = 1/n * s_i * sigma(s_i z_i)    (dsoftplus(t)/dt = sigma(t); = (sigma(z_i) - Y_i) / n)
              dL/dw = X.T @ dL/dz                     (dz_i/dw = X_i)
              dL/db = sum_i dL/dz_i                   (dz_i/db = 1)
    Weighted::  dL/dz_i = v_i / sum_k v_k * s_i * sigma(s_i z_i), the rest unchanged
    Shapes::  X (n, d), Y (n,) int, w (d,), b (), v (n,)  ->  dz (n,), dw (d,), db ()

    s*sigma(s*z) is sigma(z) - y without the cancellation of 1 - sigma(z) near z = 40, where
    sigma(z) rounds to 1 and the difference to 0.
    """
    xp = array_namespace(X, Y)
    n = X.shape[0]
    z = logits(params, X)  # (n,)
    s = 1.0 - 2.0 * xp.astype(Y, z.dtype)  # (n,)
    if weight is None:
        dz = (s * sigmoid(s * z)) / n  # (n,)
    else:
        dz = (s * sigmoid(s * z)) * (weight / xp.sum(weight))  # (n,)
    dw = X.T @ dz  # (d,)
    db = xp.sum(dz)  # ()
    return {"z": dz, "w": dw, "b": db}


def gradients(params: Params, X: Any, Y: Any, weight: Any = None) -> Params:
    """Gradients of the mean cross-entropy with respect to w and b: the parameters' part of `backward`.

    Shapes::  X (n, d), Y (n,) int, w (d,), b (), v (n,)  ->  dw (d,), db ()
    """
    steps = backward(params, X, Y, weight)
    return {name: steps[name] for name in ("w", "b")}


def sigmoid(t: Any) -> Any:
    """1 / (1 + e^-t) through e = exp(-|t|) <= 1, so no branch overflows.   Shapes::  (...) -> (...)"""
    xp = array_namespace(t)
    e = xp.exp(-xp.abs(t))  # (...) in (0, 1]
    return xp.where(t >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def hessian_bound(X: Any, weight: Any = None) -> Any:
    """A matrix the loss's Hessian in (w, b) never exceeds: sigma (1 - sigma) <= 1/4 in every term.

    H = 1/n * sum_i sigma_i (1 - sigma_i) a_i a_i.T  <=  1/4 * 1/n * A.T @ A  =  1/8 * H_linear,
    A = [X 1], H_linear = 2/n * A.T @ A the squared error's Hessian (`linear.hessian`).
    Shapes::  X (n, d) -> (d + 1, d + 1)      Weighted::  v_i / sum v in place of 1/n
    Gradient descent is stable for lr < 2 / lambda_max of this bound.
    """
    return 0.125 * linear.hessian(X, weight)  # (d + 1, d + 1)

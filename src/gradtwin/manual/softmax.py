"""Multinomial (k-class) logistic regression, mean cross-entropy, with gradients derived by hand.

Labels are integers 0..k-1. The cross-entropy of one sample is log-sum-exp of its logits
minus the logit of its class; log-sum-exp subtracts the row's largest logit before exp, so
logits of 1e4 give a finite loss instead of exp(1e4) = inf. The cross-entropy head
(`cross_entropy`, `cross_entropy_gradient`) is shared with the mlp.

With `weight` (v (n,), >= 0, not all 0) the mean over samples becomes the weighted mean
sum_i v_i l_i / sum_i v_i: an integer weight counts a sample that many times, zero drops it.
"""

from __future__ import annotations

from typing import Any

from array_api_compat import array_namespace, device

from gradtwin.manual import linear

Params = dict[str, Any]


def logits(params: Params, X: Any) -> Any:
    """Z = X @ W + b.   Shapes::  X (n, d), W (d, k), b (k,)  ->  Z (n, k)"""
    return X @ params["W"] + params["b"]


def predict(params: Params, X: Any) -> Any:
    """Class labels: the index of the largest logit.   Shapes::  X (n, d) -> (n,) int64"""
    xp = array_namespace(X)
    return xp.astype(xp.argmax(logits(params, X), axis=1), xp.int64)


def loss(params: Params, X: Any, Y: Any, weight: Any = None) -> Any:
    """Mean cross-entropy.   Loss::  L = 1/n * sum_i (logsumexp_c Z_ic - Z_{i,Y_i})   ->  ()"""
    return cross_entropy(logits(params, X), Y, weight)


def backward(params: Params, X: Any, Y: Any, weight: Any = None) -> Params:
    """The backward pass, one step a line: dL/dZ, then dL/dW and dL/db.

    Loss::    L = 1/n * sum_i (lse_i - Z_{i,Y_i}),   lse_i = log sum_c exp(Z_ic),   Z = X W + b
    Chain::   dL/dZ = (P - onehot(Y)) / n     (dlse_i/dZ_ic = exp(Z_ic - lse_i) = P_ic, the softmax)
              dL/dW = X.T @ dL/dZ             (dZ_ic/dW_jc = X_ij)
              dL/db = sum_i dL/dZ_i           (dZ_ic/db_c = 1)
    Weighted::  dL/dZ_i = (P_i - onehot(Y_i)) * v_i / sum_k v_k
    Shapes::  X (n, d), Y (n,) int, W (d, k), b (k,), v (n,)  ->  dZ (n, k), dW (d, k), db (k,)
    """
    xp = array_namespace(X, Y)
    Z = logits(params, X)  # (n, k)
    dZ = cross_entropy_gradient(Z, Y, weight)  # (n, k)
    dW = X.T @ dZ  # (d, k)
    db = xp.sum(dZ, axis=0)  # (k,)
    return {"Z": dZ, "W": dW, "b": db}


def gradients(params: Params, X: Any, Y: Any, weight: Any = None) -> Params:
    """Gradients of the mean cross-entropy with respect to W and b: the parameters' part of `backward`.

    Shapes::  X (n, d), Y (n,) int, W (d, k), b (k,), v (n,)  ->  dW (d, k), db (k,)
    """
    steps = backward(params, X, Y, weight)
    return {name: steps[name] for name in ("W", "b")}


def one_hot(Y: Any, Z: Any) -> Any:
    """onehot_ic = 1 if Y_i == c else 0, in Z's dtype.   Shapes::  Y (n,) int, Z (n, k) -> (n, k)"""
    xp = array_namespace(Z, Y)
    classes = xp.arange(Z.shape[1], device=device(Z))  # (k,)
    return xp.astype(Y[:, None] == classes, Z.dtype)


def log_sum_exp(Z: Any) -> Any:
    """lse_i = m_i + log sum_c exp(Z_ic - m_i), m_i = max_c Z_ic.   Shapes::  Z (n, k) -> (n,)"""
    xp = array_namespace(Z)
    m = xp.max(Z, axis=1, keepdims=True)  # (n, 1)
    return m[:, 0] + xp.log(xp.sum(xp.exp(Z - m), axis=1))  # (n,)


def cross_entropy(Z: Any, Y: Any, weight: Any = None) -> Any:
    """1/n * sum_i (lse_i - Z_{i,Y_i}), or sum_i v_i (...) / sum_i v_i.   Shapes::  Z (n, k), Y (n,) int -> ()"""
    xp = array_namespace(Z, Y)
    picked = xp.sum(one_hot(Y, Z) * Z, axis=1)  # (n,) Z_{i,Y_i}, exact
    if weight is None:
        return xp.mean(log_sum_exp(Z) - picked)
    return xp.sum(weight * (log_sum_exp(Z) - picked)) / xp.sum(weight)


def cross_entropy_gradient(Z: Any, Y: Any, weight: Any = None) -> Any:
    """dL/dZ = (softmax(Z) - onehot(Y)) / n, or times v_i / sum_k v_k.   Shapes::  Z (n, k), Y (n,) int -> (n, k)"""
    xp = array_namespace(Z, Y)
    P = softmax(Z)  # (n, k)
    if weight is None:
        return (P - one_hot(Y, Z)) / Z.shape[0]  # (n, k)
    return (P - one_hot(Y, Z)) * (weight / xp.sum(weight))[:, None]  # (n, k)


def softmax(Z: Any) -> Any:
    """P_ic = exp(Z_ic - lse_i), each in [0, 1].   Shapes::  Z (n, k) -> (n, k)"""
    xp = array_namespace(Z)
    return xp.exp(Z - log_sum_exp(Z)[:, None])


def hessian_bound(X: Any, weight: Any = None) -> Any:
    """A matrix whose largest eigenvalue bounds the loss's Hessian in (W, b) (Boehning 1992).

    H = 1/n * sum_i (diag(P_i) - P_i P_i.T) (x) a_i a_i.T, and diag(p) - p p.T <= 1/2 * I, so
    lambda_max(H) <= lambda_max(1/2 * 1/n * A.T @ A) = lambda_max(1/4 * H_linear),   A = [X 1],
    H_linear = 2/n * A.T @ A the squared error's Hessian (`linear.hessian`).
    Shapes::  X (n, d) -> (d + 1, d + 1)      Weighted::  v_i / sum v in place of 1/n
    """
    return 0.25 * linear.hessian(X, weight)  # (d + 1, d + 1)

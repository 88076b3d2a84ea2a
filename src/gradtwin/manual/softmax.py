"""Multinomial (k-class) logistic regression, mean cross-entropy, with gradients derived by hand.

Labels are integers 0..k-1. The cross-entropy of one sample is log-sum-exp of its logits
minus the logit of its class; log-sum-exp subtracts the row's largest logit before exp, so
logits of 1e4 give a finite loss instead of exp(1e4) = inf. The cross-entropy head
(`cross_entropy`, `cross_entropy_gradient`, `head_scales`) is shared with the mlp.

With `weight` (v (n,), >= 0, not all 0) the mean over samples becomes the weighted mean
sum_i v_i l_i / sum_i v_i: an integer weight counts a sample that many times, zero drops it.
"""

from __future__ import annotations

from typing import Any

from array_api_compat import array_namespace, device

from gradtwin.manual._scales import FLUSH

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


def gradients(params: Params, X: Any, Y: Any, weight: Any = None) -> Params:
    """Gradients of the mean cross-entropy with respect to W and b.

    Loss::    L = 1/n * sum_i (lse_i - Z_{i,Y_i}),   lse_i = log sum_c exp(Z_ic),   Z = X W + b
    Chain::   dlse_i/dZ_ic = exp(Z_ic - lse_i) = P_ic  (the softmax);  dZ_{i,Y_i}/dZ_ic = onehot_ic
              dL/dZ = (P - onehot(Y)) / n
              dL/dW = X.T @ dL/dZ ;   dL/db = sum_i dL/dZ_i
    Weighted::  dL/dZ_i = (P_i - onehot(Y_i)) * v_i / sum_k v_k
    Shapes::  X (n, d), Y (n,) int, W (d, k), b (k,), v (n,)  ->  dW (d, k), db (k,)
    """
    xp = array_namespace(X, Y)
    Z = logits(params, X)  # (n, k)
    dZ = cross_entropy_gradient(Z, Y, weight)  # (n, k)
    dW = X.T @ dZ  # (d, k)
    db = xp.sum(dZ, axis=0)  # (k,)
    return {"W": dW, "b": db}


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


def rounding_terms(X: Any, params: Params) -> int:
    """The longest chain of roundings: d features in Z, k classes in lse, then n samples."""
    return int(X.shape[0] + X.shape[1] + params["W"].shape[1])

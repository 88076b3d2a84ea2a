"""A network with one hidden layer and a softmax output, with its backward pass written by hand.

A = X W1 + b1, H = act(A) with act one of tanh, relu, sigmoid, Z = H W2 + b2, and the mean
cross-entropy of softmax(Z) against integer labels (the head of `manual.softmax`). Every
function takes the activation as a keyword, `activation="tanh"` by default; the registry
binds it once per registered model.
"""

from __future__ import annotations

from typing import Any

from array_api_compat import array_namespace

from gradtwin.manual._scales import FLUSH
from gradtwin.manual.logistic import sigmoid
from gradtwin.manual.softmax import cross_entropy, cross_entropy_gradient, head_scales

Params = dict[str, Any]
ACTIVATIONS = ("tanh", "relu", "sigmoid")


def forward(params: Params, X: Any, activation: str = "tanh") -> tuple[Any, Any, Any]:
    """A, H and Z.   Shapes::  X (n, d), W1 (d, h), b1 (h,), W2 (h, k), b2 (k,)  ->  (n, h), (n, h), (n, k)"""
    A = X @ params["W1"] + params["b1"]  # (n, h)
    H = activate(A, activation)  # (n, h)
    Z = H @ params["W2"] + params["b2"]  # (n, k)
    return A, H, Z


def predict(params: Params, X: Any, activation: str = "tanh") -> Any:
    """Class labels: the index of the largest logit.   Shapes::  X (n, d) -> (n,) int64"""
    xp = array_namespace(X)
    return xp.astype(xp.argmax(forward(params, X, activation)[2], axis=1), xp.int64)


def loss(params: Params, X: Any, Y: Any, activation: str = "tanh") -> Any:
    """Mean cross-entropy.   Loss::  L = 1/n * sum_i (logsumexp_c Z_ic - Z_{i,Y_i})   ->  ()"""
    return cross_entropy(forward(params, X, activation)[2], Y)


def gradients(params: Params, X: Any, Y: Any, activation: str = "tanh") -> Params:
    """Back-propagation, one local derivative per line.

    Forward:: A = X W1 + b1 ;  H = act(A) ;  Z = H W2 + b2 ;  L = 1/n sum_i (lse_i - Z_{i,Y_i})
    Chain::   dL/dZ  = (softmax(Z) - onehot(Y)) / n       (the softmax head)
              dL/dW2 = H.T @ dL/dZ          dL/db2 = sum_i dL/dZ_i
              dL/dH  = dL/dZ @ W2.T
              dL/dA  = dL/dH * act'(A)      (elementwise; act' from H where it can be)
              dL/dW1 = X.T @ dL/dA          dL/db1 = sum_i dL/dA_i
    Shapes::  X (n, d), Y (n,) int  ->  dW1 (d, h), db1 (h,), dW2 (h, k), db2 (k,)
    """
    xp = array_namespace(X, Y)
    A, H, Z = forward(params, X, activation)  # (n, h), (n, h), (n, k)
    dZ = cross_entropy_gradient(Z, Y)  # (n, k)  dL/dZ
    dW2 = H.T @ dZ  # (h, k)  dZ/dW2 = H
    db2 = xp.sum(dZ, axis=0)  # (k,)    dZ/db2 = 1
    dH = dZ @ params["W2"].T  # (n, h)  dZ/dH = W2
    dA = dH * activation_derivative(A, H, activation)  # (n, h)  dH/dA = act'(A)
    dW1 = X.T @ dA  # (d, h)  dA/dW1 = X
    db1 = xp.sum(dA, axis=0)  # (h,)    dA/db1 = 1
    return {"W1": dW1, "b1": db1, "W2": dW2, "b2": db2}


def activate(A: Any, activation: str) -> Any:
    """H = tanh(A), max(A, 0) or 1 / (1 + e^-A).   Shapes::  (n, h) -> (n, h)"""
    xp = array_namespace(A)
    if activation == "tanh":
        return xp.tanh(A)
    if activation == "relu":
        return xp.where(A > 0, A, xp.zeros_like(A))
    if activation == "sigmoid":
        return sigmoid(A)
    raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}; got {activation!r}")


def activation_derivative(A: Any, H: Any, activation: str) -> Any:
    """act'(A): 1 - H^2 for tanh, H (1 - H) for sigmoid, 1 where A > 0 else 0 for relu.

    relu has no derivative at A = 0; 0 is taken there, as torch does. Shapes::  (n, h) -> (n, h)
    """
    xp = array_namespace(A, H)
    if activation == "tanh":
        return 1.0 - H * H
    if activation == "sigmoid":
        return H * (1.0 - H)
    if activation == "relu":
        return xp.astype(A > 0, A.dtype)
    raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}; got {activation!r}")


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


def rounding_terms(X: Any, params: Params) -> int:
    """The longest chain of roundings: d in A, h in Z, k in lse, k in dH, then n samples."""
    return int(X.shape[0] + X.shape[1] + params["W1"].shape[1] + 2 * params["W2"].shape[1])

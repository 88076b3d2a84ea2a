"""A network with one hidden layer and a softmax output, with its backward pass written by hand.

A = X W1 + b1, H = act(A) with act one of tanh, relu, sigmoid, Z = H W2 + b2, and the mean
cross-entropy of softmax(Z) against integer labels (the head of `manual.softmax`). Every
function takes the activation as a keyword, `activation="tanh"` by default; the registry
binds it once per registered model.
"""

from __future__ import annotations

from typing import Any

from array_api_compat import array_namespace

from gradtwin.manual.logistic import sigmoid
from gradtwin.manual.softmax import cross_entropy, cross_entropy_gradient

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

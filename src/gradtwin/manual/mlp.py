"""A network with one hidden layer and a softmax output, with its backward pass written by hand.

Z1 = X W1 + b1, H = act(Z1) with act one of tanh, relu, sigmoid, Z2 = H W2 + b2, and the mean
cross-entropy of softmax(Z2) against integer labels (the head of `manual.softmax`). Every
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
    """Z1, H and Z2.   Shapes::  X (n, d), W1 (d, h), b1 (h,), W2 (h, k), b2 (k,)  ->  (n, h), (n, h), (n, k)"""
    Z1 = X @ params["W1"] + params["b1"]  # (n, h)
    H = activate(Z1, activation)  # (n, h)
    Z2 = H @ params["W2"] + params["b2"]  # (n, k)
    return Z1, H, Z2


def predict(params: Params, X: Any, activation: str = "tanh") -> Any:
    """Class labels: the index of the largest logit.   Shapes::  X (n, d) -> (n,) int64"""
    xp = array_namespace(X)
    return xp.astype(xp.argmax(forward(params, X, activation)[2], axis=1), xp.int64)


def loss(params: Params, X: Any, Y: Any, activation: str = "tanh") -> Any:
    """Mean cross-entropy.   Loss::  L = 1/n * sum_i (logsumexp_c Z2_ic - Z2_{i,Y_i})   ->  ()"""
    return cross_entropy(forward(params, X, activation)[2], Y)


def backward(params: Params, X: Any, Y: Any, activation: str = "tanh") -> Params:
    """Back-propagation, one local derivative per line: dL/dZ2, dL/dH, dL/dZ1, then the parameters.

    Forward:: Z1 = X W1 + b1 ;  H = act(Z1) ;  Z2 = H W2 + b2 ;  L = 1/n sum_i (lse_i - Z2_{i,Y_i})
    Chain::   dL/dZ2 = (softmax(Z2) - onehot(Y)) / n      (the softmax head)
              dL/dH  = dL/dZ2 @ W2.T                    (dZ2/dH = W2)
              dL/dZ1 = dL/dH * act'(Z1)                 (elementwise; act' from H where it can be)
              dL/dW2 = H.T @ dL/dZ2                     (dZ2/dW2 = H)
              dL/db2 = sum_i dL/dZ2_i                   (dZ2/db2 = 1)
              dL/dW1 = X.T @ dL/dZ1                     (dZ1/dW1 = X)
              dL/db1 = sum_i dL/dZ1_i                   (dZ1/db1 = 1)
    Shapes::  X (n, d), Y (n,) int  ->  dZ2 (n, k), dH (n, h), dZ1 (n, h), dW2 (h, k), db2 (k,), dW1 (d, h), db1 (h,)
    """
    xp = array_namespace(X, Y)
    Z1, H, Z2 = forward(params, X, activation)  # (n, h), (n, h), (n, k)
    dZ2 = cross_entropy_gradient(Z2, Y)  # (n, k)  the softmax head
    dH = dZ2 @ params["W2"].T  # (n, h)  dZ2/dH = W2
    dZ1 = dH * activation_derivative(Z1, H, activation)  # (n, h)  dH/dZ1 = act'(Z1)
    dW2 = H.T @ dZ2  # (h, k)  dZ2/dW2 = H
    db2 = xp.sum(dZ2, axis=0)  # (k,)    dZ2/db2 = 1
    dW1 = X.T @ dZ1  # (d, h)  dZ1/dW1 = X
    db1 = xp.sum(dZ1, axis=0)  # (h,)    dZ1/db1 = 1
    return {"Z2": dZ2, "H": dH, "Z1": dZ1, "W2": dW2, "b2": db2, "W1": dW1, "b1": db1}


def gradients(params: Params, X: Any, Y: Any, activation: str = "tanh") -> Params:
    """dL/dW1, dL/db1, dL/dW2, dL/db2: the parameters' part of `backward`.

    Shapes::  X (n, d), Y (n,) int  ->  dW1 (d, h), db1 (h,), dW2 (h, k), db2 (k,)
    """
    steps = backward(params, X, Y, activation)
    return {name: steps[name] for name in ("W1", "b1", "W2", "b2")}


def activate(Z1: Any, activation: str) -> Any:
    """H = tanh(Z1), max(Z1, 0) or 1 / (1 + e^-Z1).   Shapes::  (n, h) -> (n, h)"""
    xp = array_namespace(Z1)
    if activation == "tanh":
        return xp.tanh(Z1)
    if activation == "relu":
        return xp.where(Z1 > 0, Z1, xp.zeros_like(Z1))
    if activation == "sigmoid":
        return sigmoid(Z1)
    raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}; got {activation!r}")


def activation_derivative(Z1: Any, H: Any, activation: str) -> Any:
    """act'(Z1): 1 - H^2 for tanh, H (1 - H) for sigmoid, 1 where Z1 > 0 else 0 for relu.

    relu has no derivative at Z1 = 0; 0 is taken there, as torch does. Shapes::  (n, h) -> (n, h)
    """
    xp = array_namespace(Z1, H)
    if activation == "tanh":
        return 1.0 - H * H
    if activation == "sigmoid":
        return H * (1.0 - H)
    if activation == "relu":
        return xp.astype(Z1 > 0, Z1.dtype)
    raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}; got {activation!r}")

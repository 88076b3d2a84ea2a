"""A small convolutional network on square images, with its backward pass composed from the layers' hand twins.

Each row of X (n, d) is an image of side s = sqrt(d), read row by row. The network is
conv2d (C kernels K of kh x kw pixels, biases c, stride 1, zero padding kh // 2, so that an odd
square kernel keeps the image's size) -> relu -> max-pool (2 x 2, stride 2, floor mode) -> flatten
(channel, then row, then column: C order) -> linear (W, b) -> mean cross-entropy. The convolution
and the pool are `gradtwin.layers.manual.conv2d` and `.maxpool2d`, forward and backward; the head
is `manual.softmax`'s. The channels and the kernel's size are read from K, so the twins take no
options.
"""

from __future__ import annotations

from typing import Any

from array_api_compat import array_namespace

from gradtwin.layers.inputs import image_side, same_padding
from gradtwin.layers.manual import conv2d, maxpool2d
from gradtwin.manual.softmax import cross_entropy, cross_entropy_gradient

Params = dict[str, Any]
POOL = 2  # the pool's window and stride


def forward(params: Params, X: Any) -> tuple[Any, Any, Any, Any, Any]:
    """A, H, P, F and Z.

    Shapes::  X (n, s*s), K (C, 1, kh, kw), c (C,), W (C*h*w, k), b (k,)  ->  A (n, C, s', s'), H (n, C, s', s'),
              P (n, C, h, w), F (n, C*h*w), Z (n, k);   s' = s + 2*(kh // 2) - kh + 1, h = w = s' // 2
    """
    xp = array_namespace(X)
    A = conv2d.forward({"W": params["K"], "b": params["c"]}, images(X), 1, same_padding(params["K"]))  # (n, C, s', s')
    H = xp.where(A < 0, xp.zeros_like(A), A)  # (n, C, s', s')  relu; a NaN stays NaN, as in torch
    P = maxpool2d.forward({}, H, POOL, POOL)  # (n, C, h, w)
    F = xp.reshape(P, (P.shape[0], -1))  # (n, C*h*w)  flatten in C order: channel, row, column
    Z = F @ params["W"] + params["b"]  # (n, k)
    return A, H, P, F, Z


def predict(params: Params, X: Any) -> Any:
    """Class labels: the index of the largest logit.   Shapes::  X (n, d) -> (n,) int64"""
    xp = array_namespace(X)
    return xp.astype(xp.argmax(forward(params, X)[4], axis=1), xp.int64)


def loss(params: Params, X: Any, Y: Any) -> Any:
    """Mean cross-entropy.   Loss::  L = 1/n * sum_i (logsumexp_c Z_ic - Z_{i,Y_i})   ->  ()"""
    return cross_entropy(forward(params, X)[4], Y)


def backward(params: Params, X: Any, Y: Any) -> Params:
    """Back-propagation, one local derivative per line: dL/dZ, dL/dF, dL/dP, dL/dH, dL/dA, then the parameters.

    Forward:: A = conv2d(img(X); K, c) ;  H = max(A, 0) ;  P = maxpool2x2(H) ;  F = flatten(P) ;  Z = F W + b
    Chain::   dL/dZ = (softmax(Z) - onehot(Y)) / n        (the softmax head)
              dL/dF = dL/dZ @ W.T                       (dZ/dF = W)
              dL/dP = unflatten(dL/dF)                  (the same C order as the forward's flatten)
              dL/dH = maxpool2d.backward(H, dL/dP)      (each window's gradient to its first maximum only)
              dL/dA = dL/dH * [A > 0]                   (relu'(A); 0 at A = 0, as torch)
              dL/dW = F.T @ dL/dZ                       (dZ/dW = F)
              dL/db = sum_i dL/dZ_i                     (dZ/db = 1)
              dL/dK = conv2d.backward(img(X), dL/dA)["W"]   (sum over n and pixels of dL/dA times the patch)
              dL/dc = sum_{n, y, x} dL/dA_{n, :, y, x}      (dA/dc = 1)
    Shapes::  X (n, s*s), Y (n,) int  ->  dZ (n, k), dF (n, C*h*w), dP (n, C, h, w), dH (n, C, s', s'),
              dA (n, C, s', s'), dW (C*h*w, k), db (k,), dK (C, 1, kh, kw), dc (C,)
    """
    xp = array_namespace(X, Y)
    A, H, P, F, Z = forward(params, X)  # (n, C, s', s'), (n, C, s', s'), (n, C, h, w), (n, C*h*w), (n, k)
    dZ = cross_entropy_gradient(Z, Y)  # (n, k)  the softmax head
    dF = dZ @ params["W"].T  # (n, C*h*w)  dZ/dF = W
    dP = xp.reshape(dF, P.shape)  # (n, C, h, w)  dF/dP: the flatten undone, C order
    dH = maxpool2d.backward({}, H, dP, POOL, POOL)["X"]  # (n, C, s', s')  dP/dH routes to each window's max
    dA = dH * xp.astype(A > 0, A.dtype)  # (n, C, s', s')  dH/dA = relu'(A)
    dW = F.T @ dZ  # (C*h*w, k)  dZ/dW = F
    db = xp.sum(dZ, axis=0)  # (k,)  dZ/db = 1
    conv = conv2d.backward({"W": params["K"], "b": params["c"]}, images(X), dA, 1, same_padding(params["K"]))
    dK = conv["W"]  # (C, 1, kh, kw)  dA/dK: the image patch under each kernel offset
    dc = conv["b"]  # (C,)  dA/dc = 1
    return {"Z": dZ, "F": dF, "P": dP, "H": dH, "A": dA, "W": dW, "b": db, "K": dK, "c": dc}


def gradients(params: Params, X: Any, Y: Any) -> Params:
    """dL/dK, dL/dc, dL/dW, dL/db: the parameters' part of `backward`.

    Shapes::  X (n, s*s), Y (n,) int  ->  dK (C, 1, kh, kw), dc (C,), dW (C*h*w, k), db (k,)
    """
    steps = backward(params, X, Y)
    return {name: steps[name] for name in ("K", "c", "W", "b")}


def images(X: Any) -> Any:
    """Each row of X as a one-channel square image, read row by row.   Shapes::  X (n, s*s) -> (n, 1, s, s)"""
    xp = array_namespace(X)
    s = image_side(X)
    return xp.reshape(X, (X.shape[0], 1, s, s))

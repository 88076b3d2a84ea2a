"""A small convolutional network on square images, with gradients from gradtwin's own autodiff.

conv2d (K, c; stride 1, zero padding kh // 2) -> relu -> max-pool 2 x 2 -> flatten (C order) ->
linear (W, b) -> mean cross-entropy, as in the manual twin. The engine has no convolution or pool
op: both are written here in its smaller ops, so that backward derives them. The convolution is a
sum over the kh * kw kernel offsets, as in the layer's hand twin: offset (i, j) multiplies
K[:, :, i, j] with the padded image shifted by (i, j). The pool cuts each image into 2 x 2 windows
(reshape, transpose) and takes `ops.max` over each window's 4 pixels in row-major order: the whole
gradient goes to the first maximum, as F.max_pool2d sends it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gradtwin.autodiff import Tensor, ops, tap
from gradtwin.layers.inputs import conv2d_sizes, image_side, maxpool2d_sizes, same_padding
from gradtwin.tape.backward import loss_and_gradients
from gradtwin.tape.softmax import cross_entropy

Params = dict[str, Tensor]
POOL = 2  # the pool's window and stride


def forward(params: Params, X: Any) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """A, H, P, F and Z.

    Forward:: A[:, o] = c_o + sum_{i, j} K[o, :, i, j] @ Xp[:, :, i : i + s', j : j + s']   (Xp: img(X) zero-padded)
              H = relu(A) ;  P = the maximum of each 2 x 2 window of H ;  F = flatten(P) ;  Z = F W + b
    Shapes::  X (n, s*s), K (C, 1, kh, kw), c (C,), W (C*h*w, k), b (k,)  ->  A (n, C, s', s'), H (n, C, s', s'),
              P (n, C, h, w), F (n, C*h*w), Z (n, k)
    """
    K = params["K"]  # (C, 1, kh, kw)
    img = images(X)  # (n, 1, s, s)
    _, p, Ho, Wo = conv2d_sizes(K, img, 1, same_padding(K))
    n, (C, _, kh, kw) = img.shape[0], K.shape
    Xp = ops.pad(img, ((0, 0), (0, 0), (p, p), (p, p)))  # (n, 1, s + 2p, s + 2p)
    conv = ops.reshape(params["c"], (C, 1))  # (C, 1) each kernel's bias, at every pixel
    for i in range(kh):
        for j in range(kw):
            seen = Xp[:, :, i : i + Ho, j : j + Wo].reshape(n, -1, Ho * Wo)  # (n, 1, s'*s') under offset (i, j)
            conv = conv + K[:, :, i, j] @ seen  # (n, C, s'*s')
    A = tap("A", conv.reshape(n, C, Ho, Wo))  # (n, C, s', s')
    H = tap("H", ops.relu(A))  # (n, C, s', s')
    k, _, h, w = maxpool2d_sizes(H, POOL, POOL)
    tiled = H if (k * h, k * w) == H.shape[2:] else H[:, :, : k * h, : k * w]  # floor mode: the rest is dropped
    windows = ops.transpose(tiled.reshape(n, C, h, k, w, k), (0, 1, 2, 4, 3, 5))  # (n, C, h, w, k, k)
    P = tap("P", ops.max(windows.reshape(n, C, h, w, k * k), axis=-1))  # (n, C, h, w)  row-major: the first max
    F = tap("F", P.reshape(n, -1))  # (n, C*h*w)  C order: channel, row, column
    Z = tap("Z", F @ params["W"] + params["b"])  # (n, k)
    return A, H, P, F, Z


def predict(params: Params, X: Any) -> np.ndarray:
    """Class labels: the index of the largest logit.   Shapes::  X (n, d) -> (n,) int64"""
    return np.argmax(forward(params, X)[4].data, axis=1).astype(np.int64)


def loss(params: Params, X: Any, Y: Any) -> Tensor:
    """Mean cross-entropy.   Loss::  L = 1/n * sum_i (logsumexp_c Z_ic - Z_{i,Y_i})   ->  ()"""
    return cross_entropy(forward(params, X)[4], Y)


def gradients(params: dict[str, Any], X: Any, Y: Any) -> dict[str, Any]:
    """dL/dK, dL/dc, dL/dW, dL/db by `loss(...).backward()`."""
    return loss_and_gradients(loss, params, X, Y)[1]


def images(X: Any) -> Any:
    """Each row of X as a one-channel square image, read row by row.   Shapes::  X (n, s*s) -> (n, 1, s, s)"""
    s = image_side(X)
    return X.reshape(X.shape[0], 1, s, s)

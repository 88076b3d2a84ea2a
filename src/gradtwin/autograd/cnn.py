"""A small convolutional network on square images, with gradients from PyTorch autograd.

conv2d (K, c; stride 1, zero padding kh // 2) -> relu -> max-pool 2 x 2 -> flatten (C order) ->
linear (W, b) -> mean cross-entropy, as in the manual twin; the convolution and the pool are the
layers' autograd forwards (F.conv2d, F.max_pool2d).
"""

from __future__ import annotations

import torch

from gradtwin.autograd.backward import loss_and_gradients
from gradtwin.autograd.softmax import cross_entropy
from gradtwin.layers.autograd import conv2d, maxpool2d
from gradtwin.layers.inputs import image_side, same_padding
from gradtwin.steps.tap import tap

Params = dict[str, torch.Tensor]
POOL = 2  # the pool's window and stride


def forward(
    params: Params, X: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A, H, P, F and Z.

    Shapes::  X (n, s*s), K (C, 1, kh, kw), c (C,), W (C*h*w, k), b (k,)  ->  A (n, C, s', s'), H (n, C, s', s'),
              P (n, C, h, w), F (n, C*h*w), Z (n, k)
    """
    conv = {"W": params["K"], "b": params["c"]}  # the layer's names for the kernels and their biases
    A = tap("A", conv2d.forward(conv, images(X), 1, same_padding(params["K"])))  # (n, C, s', s')
    H = tap("H", torch.relu(A))  # (n, C, s', s')
    P = tap("P", maxpool2d.forward({}, H, POOL, POOL))  # (n, C, h, w)
    F = tap("F", P.reshape(P.shape[0], -1))  # (n, C*h*w)  C order: channel, row, column
    Z = tap("Z", torch.addmm(params["b"], F, params["W"]))  # (n, k)
    return A, H, P, F, Z


def predict(params: Params, X: torch.Tensor) -> torch.Tensor:
    """Class labels: the index of the largest logit.   Shapes::  X (n, d) -> (n,) int64"""
    return torch.argmax(forward(params, X)[4], dim=1)


def loss(params: Params, X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy.   Loss::  L = 1/n * sum_i (logsumexp_c Z_ic - Z_{i,Y_i})   ->  ()"""
    return cross_entropy(forward(params, X)[4], Y)


def gradients(params: Params, X: torch.Tensor, Y: torch.Tensor) -> Params:
    """dL/dK, dL/dc, dL/dW, dL/db by `loss(...).backward()`."""
    return loss_and_gradients(loss, params, X, Y)[1]


def images(X: torch.Tensor) -> torch.Tensor:
    """Each row of X as a one-channel square image, read row by row.   Shapes::  X (n, s*s) -> (n, 1, s, s)"""
    s = image_side(X)
    return X.reshape(X.shape[0], 1, s, s)

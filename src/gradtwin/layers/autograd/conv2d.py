"""2-D convolution with stride and zero padding, by PyTorch autograd: F.conv2d is the reference."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from gradtwin.layers.inputs import conv2d_sizes

Params = dict[str, torch.Tensor]


def forward(params: Params, X: torch.Tensor, stride: Any = 1, padding: Any = 0) -> torch.Tensor:
    """out = F.conv2d(X, W, b, stride, padding).
    Shapes::  X (N, C_in, H, W), W (C_out, C_in, kh, kw), b (C_out,)  ->  out (N, C_out, H_out, W_out)"""
    s, p, _, _ = conv2d_sizes(params["W"], X, stride, padding)
    return F.conv2d(X, params["W"], params["b"], stride=s, padding=p)


def backward(params: Params, X: torch.Tensor, dout: torch.Tensor, stride: Any = 1, padding: Any = 0) -> Params:
    """dL/dX, dL/dW, dL/db by autograd's vector-Jacobian product of forward with dout."""
    leaves = {"X": X.detach().requires_grad_(True), **{k: v.detach().requires_grad_(True) for k, v in params.items()}}
    out = forward({k: leaves[k] for k in params}, leaves["X"], stride, padding)
    grads = torch.autograd.grad(out, list(leaves.values()), dout)
    return dict(zip(leaves, grads, strict=True))

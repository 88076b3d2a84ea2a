"""2-D max-pooling by PyTorch autograd: F.max_pool2d is the reference, ties included."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from gradtwin.layers.inputs import maxpool2d_sizes

Params = dict[str, torch.Tensor]


def forward(params: Params, X: torch.Tensor, kernel: Any, stride: Any = None) -> torch.Tensor:
    """out = F.max_pool2d(X, k, s) (floor mode).   Shapes::  X (N, C, H, W)  ->  out (N, C, H_out, W_out)"""
    k, s, _, _ = maxpool2d_sizes(X, kernel, stride)
    return F.max_pool2d(X, k, s)


def backward(params: Params, X: torch.Tensor, dout: torch.Tensor, kernel: Any, stride: Any = None) -> Params:
    """dL/dX by autograd's vector-Jacobian product of forward with dout."""
    leaves = {"X": X.detach().requires_grad_(True), **{k: v.detach().requires_grad_(True) for k, v in params.items()}}
    out = forward({k: leaves[k] for k in params}, leaves["X"], kernel, stride)
    grads = torch.autograd.grad(out, list(leaves.values()), dout)
    return dict(zip(leaves, grads, strict=True))

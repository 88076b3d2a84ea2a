"""2-D max-pooling by PyTorch autograd: F.max_pool2d is the reference, ties included."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from gradtwin.errors import UsageError

Params = dict[str, torch.Tensor]


def _as_int(value: Any) -> int | None:
    """value as an int if it is a whole number (2, 2.0, a 0-d integer array), else None."""
    try:
        whole = int(value)
    except (TypeError, ValueError):
        return None
    return whole if whole == value else None


def _sizes(X: torch.Tensor, kernel: Any, stride: Any) -> tuple[int, int, int, int]:
    """(k, s, H_out, W_out), or one error naming the argument that does not fit (F.max_pool2d's own
    errors are several lines of C++)."""
    stride = kernel if stride is None else stride
    k, s = _as_int(kernel), _as_int(stride)
    if k is None or s is None or k < 1 or s < 1:
        raise UsageError(f"maxpool2d: kernel and stride must be integers >= 1; got kernel={kernel}, stride={stride}")
    if len(X.shape) != 4 or k > X.shape[2] or k > X.shape[3]:
        raise UsageError(f"maxpool2d: X must be 4-D (N, C, H, W) with H, W >= kernel = {k}; got shape {tuple(X.shape)}")
    return k, s, (X.shape[2] - k) // s + 1, (X.shape[3] - k) // s + 1


def forward(params: Params, X: torch.Tensor, kernel: Any, stride: Any = None) -> torch.Tensor:
    """out = F.max_pool2d(X, k, s) (floor mode).   Shapes::  X (N, C, H, W)  ->  out (N, C, H_out, W_out)"""
    k, s, _, _ = _sizes(X, kernel, stride)
    return F.max_pool2d(X, k, s)


def backward(params: Params, X: torch.Tensor, dout: torch.Tensor, kernel: Any, stride: Any = None) -> Params:
    """dL/dX by autograd's vector-Jacobian product of forward with dout."""
    leaves = {"X": X.detach().requires_grad_(True), **{k: v.detach().requires_grad_(True) for k, v in params.items()}}
    out = forward({k: leaves[k] for k in params}, leaves["X"], kernel, stride)
    grads = torch.autograd.grad(out, list(leaves.values()), dout)
    return dict(zip(leaves, grads, strict=True))

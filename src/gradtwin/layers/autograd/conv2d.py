"""2-D convolution with stride and zero padding, by PyTorch autograd: F.conv2d is the reference."""

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


def _sizes(W: torch.Tensor, X: torch.Tensor, stride: Any, padding: Any) -> tuple[int, int, int, int]:
    """(stride, padding, H_out, W_out), or one error naming the argument that does not fit (F.conv2d's
    own errors are several lines of C++)."""
    s, p = _as_int(stride), _as_int(padding)
    if s is None or p is None or s < 1 or p < 0:
        raise UsageError(
            f"conv2d: stride must be an integer >= 1 and padding >= 0; got stride={stride}, padding={padding}"
        )
    if len(X.shape) != 4 or X.shape[1] != W.shape[1]:
        raise UsageError(
            f"conv2d: X must be 4-D (N, C_in, H, W) with C_in = {W.shape[1]}, W's second axis; "
            f"got shape {tuple(X.shape)}"
        )
    Hp, Wp, kh, kw = X.shape[2] + 2 * p, X.shape[3] + 2 * p, W.shape[2], W.shape[3]
    if kh > Hp or kw > Wp:
        raise UsageError(
            f"conv2d: the kernel (kh, kw) must fit in the padded input (H + 2*padding, W + 2*padding); got kernel "
            f"({kh}, {kw}) and padded input ({Hp}, {Wp})"
        )
    return s, p, (Hp - kh) // s + 1, (Wp - kw) // s + 1


def forward(params: Params, X: torch.Tensor, stride: Any = 1, padding: Any = 0) -> torch.Tensor:
    """out = F.conv2d(X, W, b, stride, padding).
    Shapes::  X (N, C_in, H, W), W (C_out, C_in, kh, kw), b (C_out,)  ->  out (N, C_out, H_out, W_out)"""
    s, p, _, _ = _sizes(params["W"], X, stride, padding)
    return F.conv2d(X, params["W"], params["b"], stride=s, padding=p)


def backward(params: Params, X: torch.Tensor, dout: torch.Tensor, stride: Any = 1, padding: Any = 0) -> Params:
    """dL/dX, dL/dW, dL/db by autograd's vector-Jacobian product of forward with dout."""
    leaves = {"X": X.detach().requires_grad_(True), **{k: v.detach().requires_grad_(True) for k, v in params.items()}}
    out = forward({k: leaves[k] for k in params}, leaves["X"], stride, padding)
    grads = torch.autograd.grad(out, list(leaves.values()), dout)
    return dict(zip(leaves, grads, strict=True))

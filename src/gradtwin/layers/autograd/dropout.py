"""Dropout with inverted scaling by PyTorch autograd, on the mask it is given (it draws none).

F.dropout draws its own mask, which the manual twin could not share, so the forward is the
explicit formula that F.dropout computes, X * keep / (1 - p), on the mask passed in as data.
"""

from __future__ import annotations

from typing import Any

import torch

from gradtwin.layers.inputs import dropout_probability

Params = dict[str, torch.Tensor]


def forward(params: Params, X: torch.Tensor, keep: torch.Tensor, p: float) -> torch.Tensor:
    """out = X * keep / (1 - p).   Shapes::  X (n, d), keep (n, d) of 0 and 1, p ()  ->  out (n, d)"""
    keep = torch.as_tensor(keep)
    scale = 1.0 / (1.0 - dropout_probability(p, X, keep))
    return X * keep.to(X.dtype) * scale


def backward(params: Params, X: torch.Tensor, dout: torch.Tensor, keep: torch.Tensor, p: float) -> dict[str, Any]:
    """dL/dX: autograd's vector-Jacobian product of `forward` with dout."""
    leaves = {k: torch.as_tensor(v).detach().requires_grad_(True) for k, v in {**params, "X": X}.items()}
    out = forward({k: leaves[k] for k in params}, leaves["X"], keep, p)
    grads = torch.autograd.grad(out, list(leaves.values()), torch.as_tensor(dout, dtype=out.dtype))
    return dict(zip(leaves, grads, strict=True))

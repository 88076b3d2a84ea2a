"""Dropout with inverted scaling by PyTorch autograd, on the mask it is given (it draws none).

F.dropout draws its own mask, which the manual twin could not share, so the forward is the
explicit formula that F.dropout computes, X * keep / (1 - p), on the mask passed in as data.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from gradtwin.errors import UsageError

Params = dict[str, torch.Tensor]


def forward(params: Params, X: torch.Tensor, keep: torch.Tensor, p: float) -> torch.Tensor:
    """out = X * keep / (1 - p).   Shapes::  X (n, d), keep (n, d) of 0 and 1, p ()  ->  out (n, d)"""
    keep = torch.as_tensor(keep)
    scale = 1.0 / (1.0 - _probability(p, X, keep))
    return X * keep.to(X.dtype) * scale


def backward(params: Params, X: torch.Tensor, dout: torch.Tensor, keep: torch.Tensor, p: float) -> dict[str, Any]:
    """dL/dX: autograd's vector-Jacobian product of `forward` with dout."""
    leaves = {k: torch.as_tensor(v).detach().requires_grad_(True) for k, v in {**params, "X": X}.items()}
    out = forward({k: leaves[k] for k in params}, leaves["X"], keep, p)
    grads = torch.autograd.grad(out, list(leaves.values()), torch.as_tensor(dout, dtype=out.dtype))
    return dict(zip(leaves, grads, strict=True))


def _probability(p: Any, X: Any = None, keep: Any = None) -> float:
    """p as a float if it is a number in [0, 1) (0-d arrays and tensors too); keep, if given, of X's shape and 0/1."""
    try:
        raw = p.detach() if isinstance(p, torch.Tensor) else p  # the checker's p may carry a graph
        value = math.nan if isinstance(raw, (str, bytes, bool)) or getattr(raw, "ndim", 0) != 0 else float(raw)
    except (TypeError, ValueError):
        value = math.nan
    if not 0.0 <= value < 1.0:
        raise UsageError(f"dropout: p must be the probability of dropping an element, in [0, 1); got {p!r}")
    if X is not None and keep is not None:
        if tuple(keep.shape) != tuple(X.shape):
            raise UsageError(f"dropout: keep (the mask) must have X's shape {tuple(X.shape)}; got {tuple(keep.shape)}")
        other = int(((keep != 0) & (keep != 1)).sum())
        if other:
            raise UsageError(
                f"dropout: keep (the mask) must hold only 0 (drop) and 1 (keep); got {other} other value(s)"
            )
    return value

"""Embedding lookup, out = W[X], by PyTorch autograd: F.embedding is the reference."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from gradtwin.errors import DataError, DataTypeError

Params = dict[str, torch.Tensor]


def _check_indices(X: torch.Tensor, V: int) -> None:
    """X must hold integers in [0, V): one error naming the first bad index and V (F.embedding's own
    error is an IndexError without either)."""
    x = np.asarray(X.cpu() if hasattr(X, "cpu") else X)
    if x.dtype.kind not in "iu":
        raise DataTypeError(f"embedding: X must hold integer indices; got dtype {x.dtype}")
    bad = np.argwhere((x < 0) | (x >= V))
    if bad.size:
        at = tuple(int(i) for i in bad[0])
        raise DataError(
            f"embedding: X must hold indices in [0, V) with V = {V}, the rows of W; got {int(x[at])} at {at}"
        )


def forward(params: Params, X: torch.Tensor) -> torch.Tensor:
    """out = W[X].   Shapes::  W (V, d), X (...) integers in [0, V)  ->  out (..., d)"""
    W = params["W"]
    _check_indices(X, W.shape[0])
    return F.embedding(torch.as_tensor(X, device=W.device), W)


def backward(params: Params, X: torch.Tensor, dout: torch.Tensor) -> Params:
    """dL/dW by autograd's vector-Jacobian product of forward with dout.   Shapes::  -> dW (V, d)"""
    leaves = {k: v.detach().requires_grad_(True) for k, v in params.items()}
    out = forward(leaves, X)
    grads = torch.autograd.grad(out, list(leaves.values()), dout)
    return dict(zip(leaves, grads, strict=True))

"""Batch normalisation in training mode by PyTorch: F.batch_norm with batch statistics, gradients by autograd.

No running averages (training=True, running_mean=None): the batch's own mean and biased
variance, then the affine scale gamma and shift beta, as in the manual twin.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from gradtwin.layers.inputs import batch_rows

Params = dict[str, torch.Tensor]
EPS = 1e-5  # added to the variance before the square root, as torch's default


def forward(params: Params, X: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """out = F.batch_norm(X, training=True) with weight gamma and bias beta.

    Shapes::  X (n, d), gamma (d,), beta (d,)  ->  out (n, d)
    """
    batch_rows(X)
    return F.batch_norm(X, None, None, weight=params["gamma"], bias=params["beta"], training=True, eps=float(eps))


def backward(params: Params, X: torch.Tensor, dout: torch.Tensor, eps: float = EPS) -> dict[str, Any]:
    """dL/dX, dL/dgamma, dL/dbeta: autograd's vector-Jacobian product of `forward` with dout."""
    leaves = {k: torch.as_tensor(v).detach().requires_grad_(True) for k, v in {**params, "X": X}.items()}
    out = forward({k: leaves[k] for k in params}, leaves["X"], eps)
    grads = torch.autograd.grad(out, list(leaves.values()), torch.as_tensor(dout, dtype=out.dtype))
    return dict(zip(leaves, grads, strict=True))

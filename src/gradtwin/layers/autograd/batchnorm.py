"""Batch normalisation in training mode by PyTorch: F.batch_norm with batch statistics, gradients by autograd.

No running averages (training=True, running_mean=None): the batch's own mean and biased
variance, then the affine scale gamma and shift beta, as in the manual twin.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from gradtwin.errors import DataError

Params = dict[str, torch.Tensor]
EPS = 1e-5  # added to the variance before the square root, as torch's default


def forward(params: Params, X: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """out = F.batch_norm(X, training=True) with weight gamma and bias beta.

    Shapes::  X (n, d), gamma (d,), beta (d,)  ->  out (n, d)
    """
    _batch(X)
    return F.batch_norm(X, None, None, weight=params["gamma"], bias=params["beta"], training=True, eps=float(eps))


def backward(params: Params, X: torch.Tensor, dout: torch.Tensor, eps: float = EPS) -> dict[str, Any]:
    """dL/dX, dL/dgamma, dL/dbeta: autograd's vector-Jacobian product of `forward` with dout."""
    leaves = {k: torch.as_tensor(v).detach().requires_grad_(True) for k, v in {**params, "X": X}.items()}
    out = forward({k: leaves[k] for k in params}, leaves["X"], eps)
    grads = torch.autograd.grad(out, list(leaves.values()), torch.as_tensor(dout, dtype=out.dtype))
    return dict(zip(leaves, grads, strict=True))


def _batch(X: Any) -> None:
    """Refuse what has no batch statistics: X must be (n, d) with n >= 2, as torch requires in training."""
    if len(X.shape) != 2 or X.shape[0] < 2:
        raise DataError(
            f"batchnorm: X must be 2-D (n, d) with n >= 2 rows (one row's batch statistics normalise it to 0); "
            f"got shape {tuple(X.shape)}"
        )

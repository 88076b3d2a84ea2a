"""Layer normalisation by PyTorch: F.layer_norm over the last axis, gradients by autograd."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

Params = dict[str, torch.Tensor]
EPS = 1e-5  # added to the variance before the square root, as torch's default


def forward(params: Params, X: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """out = F.layer_norm(X, (d,)) with weight gamma and bias beta.

    Shapes::  X (n, d), gamma (d,), beta (d,)  ->  out (n, d)      (or X (..., d) -> out (..., d))
    """
    return F.layer_norm(X, X.shape[-1:], weight=params["gamma"], bias=params["beta"], eps=float(eps))


def backward(params: Params, X: torch.Tensor, dout: torch.Tensor, eps: float = EPS) -> dict[str, Any]:
    """dL/dX, dL/dgamma, dL/dbeta: autograd's vector-Jacobian product of `forward` with dout."""
    leaves = {k: torch.as_tensor(v).detach().requires_grad_(True) for k, v in {**params, "X": X}.items()}
    out = forward({k: leaves[k] for k in params}, leaves["X"], eps)
    grads = torch.autograd.grad(out, list(leaves.values()), torch.as_tensor(dout, dtype=out.dtype))
    return dict(zip(leaves, grads, strict=True))

"""The mean cross-entropy of logits X (n, k) against integer labels Y (n,) by PyTorch: F.cross_entropy.

Params: none ({}). The backward is autograd's vector-Jacobian product of forward.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from gradtwin.layers.inputs import cross_entropy_inputs

Params = dict[str, torch.Tensor]


def forward(params: Params, X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """L = 1/n * sum_i (logsumexp(X_i) - X_i,Y_i).   Shapes::  X (n, k), Y (n,) integers in [0, k)  ->  L ()"""
    cross_entropy_inputs(X, Y)
    return F.cross_entropy(X, Y.long())  # ()


def backward(params: Params, X: torch.Tensor, dout: torch.Tensor, Y: torch.Tensor) -> Params:
    """dL/dX for dout = dL/d(loss), a scalar: autograd's vector-Jacobian product of forward."""
    leaves = {k: torch.as_tensor(v).detach().requires_grad_(True) for k, v in {**params, "X": X}.items()}
    out = forward({k: leaves[k] for k in params}, leaves["X"], torch.as_tensor(Y))
    grads = torch.autograd.grad(out, list(leaves.values()), torch.as_tensor(dout, dtype=out.dtype))
    return dict(zip(leaves, grads, strict=True))

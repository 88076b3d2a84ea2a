"""The mean cross-entropy of logits X (n, k) against integer labels Y (n,) by PyTorch: F.cross_entropy.

Params: none ({}). The backward is autograd's vector-Jacobian product of forward.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from gradtwin.errors import DataError, DataTypeError

Params = dict[str, torch.Tensor]


def forward(params: Params, X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """L = 1/n * sum_i (logsumexp(X_i) - X_i,Y_i).   Shapes::  X (n, k), Y (n,) integers in [0, k)  ->  L ()"""
    _check(X, Y)
    return F.cross_entropy(X, Y.long())  # ()


def backward(params: Params, X: torch.Tensor, dout: torch.Tensor, Y: torch.Tensor) -> Params:
    """dL/dX for dout = dL/d(loss), a scalar: autograd's vector-Jacobian product of forward."""
    leaves = {k: torch.as_tensor(v).detach().requires_grad_(True) for k, v in {**params, "X": X}.items()}
    out = forward({k: leaves[k] for k in params}, leaves["X"], torch.as_tensor(Y))
    grads = torch.autograd.grad(out, list(leaves.values()), torch.as_tensor(dout, dtype=out.dtype))
    return dict(zip(leaves, grads, strict=True))


def _check(X: torch.Tensor, Y: torch.Tensor) -> None:
    """One error naming the input when the logits and labels do not fit together (the manual twin's words)."""
    if X.ndim != 2 or Y.ndim != 1 or X.shape[0] != Y.shape[0] or min(X.shape) < 1:
        raise DataError(
            f"cross_entropy: X (the logits) must be 2-D (n, k) with n, k >= 1 and Y 1-D (n,); got X "
            f"{tuple(X.shape)}, Y {tuple(Y.shape)}"
        )
    if Y.dtype.is_floating_point or Y.dtype.is_complex or Y.dtype == torch.bool:
        kind = str(Y.dtype).removeprefix("torch.")  # float64 from NumPy and torch alike
        raise DataTypeError(f"cross_entropy: Y must hold integer class indices; got dtype {kind}")
    k = X.shape[1]
    bad = torch.nonzero((Y < 0) | (Y >= k))[:, 0]  # (m,)
    if bad.shape[0]:
        i = int(bad[0])
        raise DataError(
            f"cross_entropy: Y must hold class indices in [0, k) with k = {k}, the columns of X; got {int(Y[i])} "
            f"at row {i}"
        )

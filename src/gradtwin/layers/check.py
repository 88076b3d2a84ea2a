"""Parity of a layer's two twins: the hand backward against autograd, for a random upstream gradient."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np
import torch

from gradtwin.parity.gradcheck import GradientReport, check_gradients


def check_layer(
    manual: ModuleType,
    autograd: ModuleType,
    params: dict[str, Any],
    X: Any,
    *extra: Any,
    dtype: str = "float64",
    x_grad: bool = True,
    seed: int = 0,
    **options: Any,
) -> GradientReport:
    """`manual.backward` against autograd's vector-Jacobian product of `autograd.forward`, refereed by
    finite differences in float64, with the checker's derived tolerances.

    The loss is L = sum(forward(params, X) * R) for a random upstream gradient R (never
    sum(forward(...)): the sum of a normalised output does not depend on its input), so
    dL/d(out) = R and the check sees every direction. With `x_grad`, X is checked as a parameter
    too (key "X"); integer X (indices) never is. `extra` (a mask, a stride...) goes to both twins;
    `options` to check_gradients.
    """
    X64 = np.asarray(X)
    differentiable = x_grad and not np.issubdtype(X64.dtype, np.integer)
    out = np.asarray(manual.forward(params, X64, *extra))
    R = np.random.default_rng(seed).standard_normal(out.shape)  # the upstream gradient dL/d(out)
    names = list(params)
    checked = {**params, "X": X64} if differentiable else dict(params)

    def hand(p: dict[str, Any], R: Any, X: Any, *extra: Any) -> dict[str, Any]:
        grads = manual.backward({k: p[k] for k in names}, p["X"] if differentiable else X, R, *extra)
        return {k: grads[k] for k in checked}

    def loss(p: dict[str, torch.Tensor], R: torch.Tensor, X: torch.Tensor, *extra: Any) -> torch.Tensor:
        out = autograd.forward({k: p[k] for k in names}, p["X"] if differentiable else X, *extra)
        return torch.sum(out * R)

    return check_gradients(hand, loss, checked, (R, X64, *extra), dtype=dtype, **options)

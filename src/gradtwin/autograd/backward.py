"""The one way every autograd twin obtains its gradients: `loss(...).backward()`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

Params = dict[str, torch.Tensor]


def loss_and_gradients(
    loss: Callable[[Params, Any, Any], torch.Tensor], params: Params, X: Any, Y: Any
) -> tuple[torch.Tensor, Params]:
    """Run `loss` on fresh leaf copies of `params` and back-propagate through it.

    Fresh leaves (`detach().requires_grad_()`) play the part of `zero_grad()`: no gradient
    of an earlier call can leak into this one. Returns the detached loss and each `.grad`.
    """
    leaves = {name: p.detach().requires_grad_(True) for name, p in params.items()}
    value = loss(leaves, X, Y)
    value.backward()
    grads = {name: leaf.grad for name, leaf in leaves.items()}
    assert all(g is not None for g in grads.values()), "every parameter must reach the loss"
    return value.detach(), grads  # type: ignore[return-value]

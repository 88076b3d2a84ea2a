"""The one way every tape twin obtains its gradients: `loss(...).backward()` on gradtwin's own engine."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from gradtwin.autodiff import Tensor

Params = dict[str, Tensor]


def loss_and_gradients(
    loss: Callable[[Params, Any, Any], Tensor], params: dict[str, Any], X: Any, Y: Any
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Run `loss` on fresh leaf copies of `params` and back-propagate through it.

    Fresh leaves (`Tensor(p, requires_grad=True)`) play the part of `zero_grad()`: no gradient
    of an earlier call can leak into this one. Returns the loss and each `.grad` as NumPy arrays.
    """
    leaves = {name: Tensor(p, requires_grad=True) for name, p in params.items()}
    value = loss(leaves, X, Y)
    value.backward()
    grads = {name: leaf.grad for name, leaf in leaves.items()}
    assert all(g is not None for g in grads.values()), "every parameter must reach the loss"
    return value.data, grads  # type: ignore[return-value]

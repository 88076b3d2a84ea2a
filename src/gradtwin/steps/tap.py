"""`tap(name, tensor)`: mark an intermediate of a torch loss so that autograd's dL/d(tensor) can be compared.

    def torch_loss(p, X, Y):
        Z = gradtwin.tap("Z", X @ p["W1"] + p["b1"])   # (n, h)
        H = gradtwin.tap("H", torch.tanh(Z))           # (n, h)
        return ((H @ p["W2"] - Y) ** 2).mean()

Outside `recording()` a tap returns its tensor untouched: no graph node, no copy, no cost, so the
same loss serves training and checking. Inside, the tensor is kept on the innermost Tape under its
name, in forward order; torch.autograd.grad(loss, tape.tensors) then gives each dL/d(name) without
a `retain_grad()` anywhere.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator

import torch

from gradtwin.errors import UsageError

_ACTIVE: contextvars.ContextVar[tuple[Tape, ...]] = contextvars.ContextVar("gradtwin_tapes", default=())


class Tape:
    """The tensors tapped during one forward pass: name -> tensor, in forward order."""

    def __init__(self, perturb: Callable[[str, torch.Tensor], torch.Tensor] | None = None) -> None:
        self._tensors: dict[str, torch.Tensor] = {}
        self._perturb = perturb

    def add(self, name: str, tensor: torch.Tensor) -> torch.Tensor:
        """Keep `tensor` under `name` and return what the loss goes on with (the tensor itself, unless the
        tape perturbs it); a name used twice or a tensor off the autograd graph is refused."""
        if name in self._tensors:
            raise UsageError(f"gradtwin.tap: the name {name!r} is tapped twice; each tapped tensor needs its own name")
        if not tensor.requires_grad:
            raise UsageError(
                f"gradtwin.tap({name!r}, ...): the tensor does not require grad (it does not depend on the "
                "parameters, or was detached); tap a tensor computed from the parameters"
            )
        if self._perturb is not None:
            tensor = self._perturb(name, tensor)
        self._tensors[name] = tensor
        return tensor

    def names(self) -> list[str]:
        """The tapped names in forward order (the graph order, from the loss back, is its reverse)."""
        return list(self._tensors)

    @property
    def tensors(self) -> list[torch.Tensor]:
        """The tapped tensors in forward order."""
        return list(self._tensors.values())

    def __getitem__(self, name: str) -> torch.Tensor:
        return self._tensors[name]

    def __contains__(self, name: object) -> bool:
        return name in self._tensors

    def __len__(self) -> int:
        return len(self._tensors)

    def __iter__(self) -> Iterator[str]:
        return iter(self._tensors)

    def __repr__(self) -> str:
        shapes = ", ".join(f"{k}: {tuple(v.shape)}" for k, v in self._tensors.items())
        return f"Tape({shapes})"


def tap(name: str, tensor: torch.Tensor) -> torch.Tensor:
    """Identity. Inside `recording()`, registers `tensor` under `name` (forward order) so that
    autograd's dL/d(tensor) can be compared; outside it, returns `tensor` untouched (no graph node, no cost)."""
    tapes = _ACTIVE.get()
    if not tapes:
        return tensor
    if not isinstance(name, str) or not name:
        raise UsageError(f"gradtwin.tap: the name must be a non-empty string; got {name!r}")
    if not isinstance(tensor, torch.Tensor):
        raise UsageError(f"gradtwin.tap({name!r}, ...) takes a torch tensor; got {type(tensor).__name__}")
    return tapes[-1].add(name, tensor)


@contextlib.contextmanager
def recording(perturb: Callable[[str, torch.Tensor], torch.Tensor] | None = None) -> Iterator[Tape]:
    """Record every `tap` made inside the block on a fresh Tape (the innermost block wins when nested).

    perturb(name, tensor) -> tensor: what each tap hands on instead of its tensor (the rounding scales'
    sketch moves every tapped value a little); None, the default, hands on the tensor itself."""
    tape = Tape(perturb)
    token = _ACTIVE.set((*_ACTIVE.get(), tape))
    try:
        yield tape
    finally:
        _ACTIVE.reset(token)

"""Engines: how one twin's arrays live (NumPy or torch, which device) and how it steps.

An engine moves data and parameters to its backend once, then gives the training loop the
loss and gradients at the current parameters and applies the update `p -= lr * g` in place.
Both engines compute the update with the same arithmetic, so their histories can be
compared step by step.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import torch

from gradtwin.autograd._backward import loss_and_gradients
from gradtwin.devices import numpy_dtype, resolve_device, torch_dtype
from gradtwin.errors import UsageError
from gradtwin.models import Model

ENGINES = ("manual", "autograd", "exact")
TWINS = ("manual", "autograd")  # the two engines every model has


class Stepper(Protocol):
    """What the training loop drives: one fused loss-and-update per call, no host sync.

    `step(lr)` returns the loss at the current parameters (a backend scalar, left where it
    lives) and then updates the parameters in place; `loss()` evaluates without stepping.
    """

    def step(self, lr: float) -> Any: ...

    def loss(self) -> Any: ...


class _SeparateStepper:
    """Any engine's loss, gradients and update, called one after the other."""

    def __init__(self, engine: Engine, params: dict[str, Any], X: Any, Y: Any) -> None:
        self.engine, self.params, self.X, self.Y = engine, params, X, Y

    def step(self, lr: float) -> Any:
        value, grads = self.engine.loss_and_gradients(self.params, self.X, self.Y)
        self.engine.update(self.params, grads, lr)
        return value

    def loss(self) -> Any:
        return self.engine.loss(self.params, self.X, self.Y)


class _AutogradStepper:
    """The autograd twin's fast path: persistent leaves, `torch.autograd.grad`, fused updates.

    The same arithmetic as `AutogradEngine.loss_and_gradients` followed by `Engine.update`
    (the loss's graph, then p -= lr * g with the product rounded first), minus the per-step
    dictionaries and fresh leaves; `_foreach` applies the update to every parameter in one call.
    """

    def __init__(self, loss_fn: Any, params: dict[str, torch.Tensor], X: torch.Tensor, Y: torch.Tensor) -> None:
        self.loss_fn, self.params, self.X, self.Y = loss_fn, params, X, Y
        self.leaves = [p.requires_grad_(True) for p in params.values()]

    def step(self, lr: float) -> torch.Tensor:
        value = self.loss_fn(self.params, self.X, self.Y)
        grads = torch.autograd.grad(value, self.leaves)
        with torch.no_grad():
            torch._foreach_mul_(grads, lr)
            torch._foreach_sub_(self.leaves, grads)
        return value.detach()

    def loss(self) -> torch.Tensor:
        with torch.no_grad():
            return self.loss_fn(self.params, self.X, self.Y)


class Engine:
    """Common part: dtype, device and conversions between NumPy and the backend."""

    name = "engine"

    def __init__(self, model: Model, dtype: str = "float64", device: str = "cpu") -> None:
        self.model = model
        self.dtype = dtype
        self.device = resolve_device(device, dtype)

    def asarray(self, values: np.ndarray) -> Any:
        raise NotImplementedError  # each engine says where its arrays live

    def to_numpy(self, values: Any) -> np.ndarray:
        if isinstance(values, torch.Tensor):
            return values.detach().cpu().numpy()
        return np.asarray(values)

    def take(self, values: Any, rows: np.ndarray) -> Any:
        """values[rows]: the rows of one mini-batch, in this engine's arrays."""
        if isinstance(values, torch.Tensor):
            return values[torch.as_tensor(rows, device=values.device)]
        return values[rows]

    def params(self, params: dict[str, np.ndarray]) -> dict[str, Any]:
        """Fresh backend copies of `params`, cast to this engine's dtype."""
        return {name: self.asarray(np.array(p, dtype=np.float64)) for name, p in params.items()}

    def loss_and_gradients(self, params: dict[str, Any], X: Any, Y: Any) -> tuple[Any, dict[str, Any]]:
        raise NotImplementedError  # each engine says how it differentiates

    def loss(self, params: dict[str, Any], X: Any, Y: Any) -> Any:
        raise NotImplementedError

    def predict(self, params: dict[str, Any], X: Any) -> Any:
        raise NotImplementedError  # the twin's own predictions (class labels for classifiers)

    @staticmethod
    def update(params: dict[str, Any], grads: dict[str, Any], lr: float) -> None:
        """Gradient-descent step in place: p -= lr * g (the same two roundings everywhere)."""
        for name, p in params.items():
            p -= lr * grads[name]

    def stepper(self, params: dict[str, Any], X: Any, Y: Any) -> Stepper:
        """The fastest way this engine has to evaluate the loss and step `params` in place."""
        return _SeparateStepper(self, params, X, Y)

    @staticmethod
    def copy_params(params: dict[str, Any]) -> dict[str, Any]:
        """A snapshot of `params`, to roll a run back to."""
        return {k: p.detach().clone() if isinstance(p, torch.Tensor) else p.copy() for k, p in params.items()}

    @staticmethod
    def restore(params: dict[str, Any], snapshot: dict[str, Any]) -> None:
        """Put `snapshot` back into `params` in place (the arrays a stepper holds stay valid)."""
        with torch.no_grad():
            for k, p in params.items():
                p[...] = snapshot[k]


class ManualEngine(Engine):
    """The hand-derived twin. NumPy on the CPU; torch tensors (no autograd) elsewhere.

    `array='torch'` forces torch tensors on the CPU too, which runs the same array-API
    source that runs on a GPU.
    """

    name = "manual"

    def __init__(self, model: Model, dtype: str = "float64", device: str = "cpu", array: str = "auto") -> None:
        super().__init__(model, dtype, device)
        if array not in ("auto", "numpy", "torch"):
            raise UsageError(f"array must be 'auto', 'numpy' or 'torch'; got {array!r}")
        if array == "numpy" and self.device.type != "cpu":
            raise UsageError(f"NumPy arrays live on the cpu; got device {str(self.device)!r}")
        self.use_torch = array == "torch" or self.device.type != "cpu"

    def asarray(self, values: np.ndarray) -> Any:
        if self.use_torch:
            return torch.as_tensor(values, dtype=_torch_dtype_for(values, self.dtype), device=self.device)
        return np.asarray(values, dtype=np.int64 if _is_labels(values) else numpy_dtype(self.dtype))

    def loss(self, params: dict[str, Any], X: Any, Y: Any) -> Any:
        return self.model.manual.loss(params, X, Y)

    def loss_and_gradients(self, params: dict[str, Any], X: Any, Y: Any) -> tuple[Any, dict[str, Any]]:
        return self.loss(params, X, Y), self.model.manual.gradients(params, X, Y)

    def predict(self, params: dict[str, Any], X: Any) -> Any:
        return self.model.manual.predict(params, X)

    def stepper(self, params: dict[str, Any], X: Any, Y: Any) -> Stepper:
        """The model's `Fused` NumPy path where it has one, else `gradients` then `update`."""
        fused = getattr(self.model.manual, "Fused", None)
        if fused is not None and not self.use_torch:
            return fused(params, X, Y)
        return super().stepper(params, X, Y)


class AutogradEngine(Engine):
    """The autograd twin: torch tensors on any device, gradients by `loss.backward()`."""

    name = "autograd"

    def asarray(self, values: np.ndarray) -> Any:
        return torch.as_tensor(values, dtype=_torch_dtype_for(values, self.dtype), device=self.device)

    def loss(self, params: dict[str, Any], X: Any, Y: Any) -> Any:
        with torch.no_grad():
            return self.model.autograd.loss(params, X, Y)

    def loss_and_gradients(self, params: dict[str, Any], X: Any, Y: Any) -> tuple[Any, dict[str, Any]]:
        return loss_and_gradients(self.model.autograd.loss, params, X, Y)

    def predict(self, params: dict[str, Any], X: Any) -> Any:
        with torch.no_grad():
            return self.model.autograd.predict(params, X)

    @staticmethod
    def update(params: dict[str, Any], grads: dict[str, Any], lr: float) -> None:
        with torch.no_grad():
            Engine.update(params, grads, lr)

    def stepper(self, params: dict[str, Any], X: Any, Y: Any) -> Stepper:
        return _AutogradStepper(self.model.autograd.loss, params, X, Y)


def _is_labels(values: Any) -> bool:
    """Integer arrays are class labels: they stay int64 (to index with), never cast to float."""
    return np.issubdtype(np.asarray(values).dtype, np.integer)


def _torch_dtype_for(values: Any, dtype: str) -> torch.dtype:
    return torch.int64 if _is_labels(values) else torch_dtype(dtype)


def make_engine(name: str, model: Model, dtype: str = "float64", device: str = "cpu", array: str = "auto") -> Engine:
    """The engine called `name` ('manual', 'autograd' or 'exact') for `model`.

    `array` says where the manual twin's arrays live ('auto', 'numpy' or 'torch'); the
    other engines always use torch tensors and accept only 'auto' or 'torch'.
    """
    if name == "manual":
        return ManualEngine(model, dtype, device, array)
    if array == "numpy":
        raise UsageError(f"array 'numpy' is for the manual engine only; engine {name!r} uses torch tensors")
    if name == "autograd":
        return AutogradEngine(model, dtype, device)
    if name == "exact":
        from gradtwin.exact import ExactEngine

        return ExactEngine(model, dtype, device)
    raise UsageError(f"engine must be one of {', '.join(ENGINES)}; got {name!r}")

"""Engines: where one twin's arrays live (NumPy or torch, which device) and how it gets gradients.

An engine moves data and parameters to its backend once, then gives the training loop the
loss and gradients at the current parameters. Every engine, the distributed one included,
steps with the one `update` below, so all histories are made with the same arithmetic and
can be compared step by step.
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from typing import Any, Protocol

import numpy as np
import torch

from gradtwin.autodiff import Tensor, no_grad
from gradtwin.autograd.backward import loss_and_gradients
from gradtwin.devices import numpy_dtype, resolve_device, torch_dtype
from gradtwin.errors import UsageError
from gradtwin.models import MODELS, Model
from gradtwin.tape.backward import loss_and_gradients as tape_loss_and_gradients
from gradtwin.training.fused import fused

Arrays = dict[str, Any]


def update(params: Arrays, grads: Arrays, lr: float) -> None:
    """The gradient-descent step, in place: p -= lr * g (two roundings: the product, the difference).

    NumPy arrays step one by one. torch tensors step under `no_grad` (a leaf that requires grad may not
    change in place otherwise), all at once: `_foreach_mul` then `_foreach_sub_` are the same two
    roundings in two calls instead of two per parameter (at n = 30 each call is a sizeable part of a step).
    """
    if isinstance(next(iter(params.values()), None), np.ndarray):
        for name, p in params.items():
            p -= lr * grads[name]
        return
    with torch.no_grad():
        torch._foreach_sub_(list(params.values()), torch._foreach_mul([grads[k] for k in params], lr))


class Gradients(Protocol):
    """The full batch's loss and gradients at the parameters as they are now, bound once to the data."""

    def loss_and_gradients(self) -> tuple[Any, Arrays]: ...

    def loss(self) -> Any: ...


class _Bound:
    """Any engine's `loss_and_gradients` on the whole data."""

    def __init__(self, engine: Engine, params: Arrays, X: Any, Y: Any, weight: Any) -> None:
        self.engine, self.params, self.X, self.Y, self.weight = engine, params, X, Y, weight

    def loss_and_gradients(self) -> tuple[Any, Arrays]:
        return self.engine.loss_and_gradients(self.params, self.X, self.Y, self.weight)

    def loss(self) -> Any:
        return self.engine.loss(self.params, self.X, self.Y, self.weight)


class _Leaves:
    """The autograd twin with persistent leaves and `torch.autograd.grad`: no fresh leaves per step."""

    def __init__(self, engine: AutogradEngine, params: Arrays, X: Any, Y: Any, weight: Any) -> None:
        self.engine, self.params, self.X, self.Y, self.weight = engine, params, X, Y, weight
        self.names = list(params)
        self.leaves = [params[k].requires_grad_(True) for k in self.names]
        self.twin_loss = functools.partial(engine.model.autograd.loss, **_weighted(weight))  # bound once

    def loss_and_gradients(self) -> tuple[Any, Arrays]:
        """One forward pass and one backward pass (`torch.autograd.grad`: no .grad to accumulate or zero)."""
        value = self.twin_loss(self.params, self.X, self.Y)
        grads = torch.autograd.grad(value, self.leaves)
        return value.detach(), dict(zip(self.names, grads, strict=True))

    def loss(self) -> Any:
        return self.engine.loss(self.params, self.X, self.Y, self.weight)


def _weighted(weight: Any) -> dict[str, Any]:
    """The twins' keyword for sample weights, only where there are weights."""
    return {} if weight is None else {"weight": weight}


class Engine(ABC):
    """What every twin's engine shares: dtype, device and conversions between NumPy and the backend."""

    name = "engine"

    def __init__(self, model: Model, dtype: str = "float64", device: str = "cpu") -> None:
        self.model = model
        self.dtype = dtype
        self.device = resolve_device(device, dtype)
        self.use_torch = True

    def asarray(self, values: np.ndarray) -> Any:
        """`values` in this engine's arrays; integer class labels stay int64."""
        if self.use_torch:
            return torch.as_tensor(values, dtype=_torch_dtype_for(values, self.dtype), device=self.device)
        return np.asarray(values, dtype=np.int64 if _is_labels(values) else numpy_dtype(self.dtype))

    def to_numpy(self, values: Any) -> np.ndarray:
        if isinstance(values, torch.Tensor):
            return values.detach().cpu().numpy()
        return np.asarray(values)

    def take(self, values: Any, rows: np.ndarray) -> Any:
        """values[rows]: the rows of one mini-batch, in this engine's arrays (None stays None)."""
        if values is None:
            return None
        if isinstance(values, torch.Tensor):
            return values[torch.as_tensor(rows, device=values.device)]
        return values[rows]

    def params(self, params: dict[str, np.ndarray]) -> Arrays:
        """Fresh backend copies of `params`, cast to this engine's dtype."""
        return {name: self.asarray(np.array(p, dtype=np.float64)) for name, p in params.items()}

    @abstractmethod
    def loss(self, params: Arrays, X: Any, Y: Any, weight: Any = None) -> Any:
        """The loss at `params` on X, Y (and the weights), a backend scalar."""

    @abstractmethod
    def loss_and_gradients(self, params: Arrays, X: Any, Y: Any, weight: Any = None) -> tuple[Any, Arrays]:
        """The loss and each parameter's gradient at `params`: how this twin differentiates."""

    @abstractmethod
    def predict(self, params: Arrays, X: Any) -> Any:
        """The twin's own predictions (class labels for classifiers)."""

    def bind(self, params: Arrays, X: Any, Y: Any, weight: Any = None) -> Gradients:
        """The fastest way this engine has to get the full batch's loss and gradients at `params`."""
        return _Bound(self, params, X, Y, weight)

    @staticmethod
    def copy_params(params: Arrays) -> Arrays:
        """A snapshot of `params`, to roll a run back to."""
        return {k: p.detach().clone() if isinstance(p, torch.Tensor) else p.copy() for k, p in params.items()}

    @staticmethod
    def restore(params: Arrays, snapshot: Arrays) -> None:
        """Put `snapshot` back into `params` in place (the arrays a bound computation holds stay valid)."""
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

    def loss(self, params: Arrays, X: Any, Y: Any, weight: Any = None) -> Any:
        return self.model.manual.loss(params, X, Y, **_weighted(weight))

    def loss_and_gradients(self, params: Arrays, X: Any, Y: Any, weight: Any = None) -> tuple[Any, Arrays]:
        return self.loss(params, X, Y, weight), self.model.manual.gradients(params, X, Y, **_weighted(weight))

    def predict(self, params: Arrays, X: Any) -> Any:
        return self.model.manual.predict(params, X)

    def bind(self, params: Arrays, X: Any, Y: Any, weight: Any = None) -> Gradients:
        """The model's one-pass NumPy path (`training.fused`) where it has one, else the twin's functions."""
        one_pass = None if self.use_torch else fused(self.model, params, X, Y, weight)
        return one_pass if one_pass is not None else super().bind(params, X, Y, weight)


class AutogradEngine(Engine):
    """The autograd twin: torch tensors on any device, gradients by `loss.backward()`."""

    name = "autograd"

    def params(self, params: dict[str, np.ndarray]) -> Arrays:
        """Fresh torch copies of `params`; on the cpu the model's `right_factors` with fewer columns than rows
        are laid out column-major (strides (1, rows)): the same values, in another order in memory.

        autograd forms dL/dW of A @ W in W's own layout (torch's `mm_mat2_backward`): as (G.T @ A).T for a
        column-major W, as A.T @ G otherwise. At 1,000,000 rows the first is 5 to 9 times faster for a
        (16, 4) or (32, 4) W in float32 and 2.5 to 3 times in float64; with more columns than rows it is
        slower (measured: comparisons/README.md).
        """
        out = super().params(params)
        if self.device.type != "cpu":
            return out
        for name in self.model.right_factors:
            p = out.get(name)
            if p is not None and p.ndim == 2 and p.shape[1] < p.shape[0]:
                out[name] = torch.empty_strided(p.shape, (1, p.shape[0]), dtype=p.dtype, device=p.device).copy_(p)
        return out

    def loss(self, params: Arrays, X: Any, Y: Any, weight: Any = None) -> Any:
        with torch.no_grad():
            return self.model.autograd.loss(params, X, Y, **_weighted(weight))

    def loss_and_gradients(self, params: Arrays, X: Any, Y: Any, weight: Any = None) -> tuple[Any, Arrays]:
        return loss_and_gradients(lambda p, x, y: self.model.autograd.loss(p, x, y, **_weighted(weight)), params, X, Y)

    def predict(self, params: Arrays, X: Any) -> Any:
        with torch.no_grad():
            return self.model.autograd.predict(params, X)

    def bind(self, params: Arrays, X: Any, Y: Any, weight: Any = None) -> Gradients:
        return _Leaves(self, params, X, Y, weight)


class TapeEngine(Engine):
    """The third twin: NumPy arrays on the cpu, gradients by gradtwin's own reverse mode (`gradtwin.autodiff`)."""

    name = "tape"

    def __init__(self, model: Model, dtype: str = "float64", device: str = "cpu") -> None:
        super().__init__(model, dtype, device)
        if model.tape is None:
            have = ", ".join(m.name for m in MODELS.values() if m.tape is not None)
            raise UsageError(f"engine 'tape' runs the models with a tape twin ({have}); got model {model.name!r}")
        if self.device.type != "cpu":
            raise UsageError(f"engine 'tape' computes with NumPy on the cpu; got device {str(self.device)!r}")
        self.use_torch = False
        self.tape = model.tape

    def loss(self, params: Arrays, X: Any, Y: Any, weight: Any = None) -> Any:
        with no_grad():
            return self.tape.loss({k: Tensor(v) for k, v in params.items()}, X, Y, **_weighted(weight)).data

    def loss_and_gradients(self, params: Arrays, X: Any, Y: Any, weight: Any = None) -> tuple[Any, Arrays]:
        return tape_loss_and_gradients(functools.partial(self.tape.loss, **_weighted(weight)), params, X, Y)

    def predict(self, params: Arrays, X: Any) -> Any:
        with no_grad():
            out = self.tape.predict({k: Tensor(v) for k, v in params.items()}, X)
        return out.data if isinstance(out, Tensor) else np.asarray(out)


def _is_labels(values: Any) -> bool:
    """Integer arrays are class labels: they stay int64 (to index with), never cast to float."""
    return np.issubdtype(np.asarray(values).dtype, np.integer)


def _torch_dtype_for(values: Any, dtype: str) -> torch.dtype:
    return torch.int64 if _is_labels(values) else torch_dtype(dtype)

"""Sample weights for a model: Y carries them, and the twins minimize sum_i v_i l_i / sum_i v_i.

The training loop and the engines pass (X, Y) and cut mini-batches by rows, and a weight must
follow its sample into every batch; so a weighted model reads Y (n, 2) = [target, weight] and
hands column 1 to its twins' `weight` argument. Class labels ride in column 0 as floats (exact
below 2^24, far more classes than a softmax can hold) and turn back into int64 before they
index. Nothing below the twins changes: the same `train` and engines drive a weighted model.
"""

from __future__ import annotations

import inspect
from types import ModuleType
from typing import Any

import numpy as np
import torch
from array_api_compat import array_namespace

from gradtwin.data import Dataset
from gradtwin.errors import UsageError
from gradtwin.models import Model

WEIGHTED = ("linear", "logistic", "softmax")  # the models whose twins take `weight`
SUFFIX = "-weighted"


def with_weights(data: Dataset, weight: np.ndarray) -> Dataset:
    """`data` with Y (n, 2) = [target or class label, weight], as a weighted model reads it."""
    Y = np.column_stack([np.asarray(data.Y, dtype=np.float64), np.asarray(weight, dtype=np.float64)])  # (n, 2)
    return Dataset(data.X, Y, name=data.name, x_name=data.x_name, y_name=data.y_name, test=data.test)


def targets(data: Dataset, labels: bool) -> Dataset:
    """A weighted model's data with Y back to its targets (int64 class labels where `labels`)."""
    Y = data.Y[:, 0].astype(np.int64) if labels else data.Y[:, 0]
    return Dataset(data.X, Y, name=data.name)


def weighted(model: Model, weight: np.ndarray | None = None) -> Model:
    """`model` reading its weights from Y's second column.

    `weight` (the whole data's, (n,)) gives a model with a constant Hessian the weighted one,
    H = 2 A.T diag(v) A / sum v, for its stable learning rate and drift bounds; without it a
    weighted model has no `hessian`, since the Hessian depends on weights that X alone lacks.
    """
    if model.name not in WEIGHTED:
        raise UsageError(f"sample weights are supported for {', '.join(WEIGHTED)}; got model {model.name!r}")
    labels = model.task == "classification"
    return Model(
        name=model.name + SUFFIX,
        manual=_manual_twin(model.manual, labels, weight),
        autograd=_autograd_twin(model.autograd, labels),
        description=f"{model.description}, weighted mean over the samples",
        param_shapes=lambda data: model.param_shapes(targets(data, labels)),
        default_data=lambda: _unit_weights(model.default_data()),
        random_data=lambda rng: _random_weights(model.random_data(rng), rng),
        task=model.task,
        x_ndim=model.x_ndim,
        y_ndim=2,
        default_lr=model.default_lr,
        default_iterations=model.default_iterations,
    )


def _unit_weights(data: Dataset) -> Dataset:
    return with_weights(data, np.ones(data.n))


def _random_weights(data: Dataset, rng: np.random.Generator) -> Dataset:
    """Integer weights 0..3 (zeros drop samples) or real ones over six orders of magnitude; never all 0."""
    if rng.random() < 0.5:
        weight = rng.integers(0, 4, size=data.n).astype(np.float64)  # (n,)
    else:
        weight = 10.0 ** rng.uniform(-3, 3, size=data.n)  # (n,)
    weight[rng.integers(data.n)] = 1.0
    return with_weights(data, weight)


def _manual_split(Y: Any, labels: bool) -> tuple[Any, Any]:
    """(targets (n,), weights (n,)) of Y (n, 2), in Y's namespace."""
    xp = array_namespace(Y)
    target = Y[:, 0]  # (n,)
    return (xp.astype(target, xp.int64) if labels else target), Y[:, 1]


def _manual_twin(base: ModuleType, labels: bool, weight: np.ndarray | None) -> ModuleType:
    twin = ModuleType(base.__name__ + SUFFIX, base.__doc__)

    def loss(params: dict[str, Any], X: Any, Y: Any) -> Any:
        target, v = _manual_split(Y, labels)
        return base.loss(params, X, target, weight=v)

    def gradients(params: dict[str, Any], X: Any, Y: Any) -> dict[str, Any]:
        target, v = _manual_split(Y, labels)
        return base.gradients(params, X, target, weight=v)

    def gradient_scale(params: dict[str, Any], X: Any, Y: Any) -> dict[str, Any]:
        target, v = _manual_split(Y, labels)
        return base.gradient_scale(params, X, target, weight=v)

    def loss_scale(params: dict[str, Any], X: Any, Y: Any) -> Any:
        target, v = _manual_split(Y, labels)
        return base.loss_scale(params, X, target, weight=v)

    twin.predict = base.predict  # type: ignore[attr-defined]
    twin.loss = loss  # type: ignore[attr-defined]
    twin.gradients = gradients  # type: ignore[attr-defined]
    twin.gradient_scale = gradient_scale  # type: ignore[attr-defined]
    twin.loss_scale = loss_scale  # type: ignore[attr-defined]
    twin.rounding_terms = _rounding_terms(base)  # type: ignore[attr-defined]
    if weight is not None and hasattr(base, "hessian"):
        twin.hessian = _bound_hessian(base, np.asarray(weight, dtype=np.float64))  # type: ignore[attr-defined]
    return twin


def _rounding_terms(base: ModuleType) -> Any:
    """The base chain plus n: each term is scaled by v_i / sum v, a sum of n more roundings.

    Keeps the base's signature, which says whether the chain needs the parameters.
    """
    terms = getattr(base, "rounding_terms", None)
    if terms is None:
        return lambda X: 2 * int(X.shape[0])
    if "params" in inspect.signature(terms).parameters:
        return lambda X, params: int(terms(X, params)) + int(X.shape[0])
    return lambda X: int(terms(X)) + int(X.shape[0])


def _bound_hessian(base: ModuleType, weight: np.ndarray) -> Any:
    def hessian(X: Any) -> Any:
        if X.shape[0] != weight.shape[0]:
            raise ValueError(f"the weighted Hessian is bound to {weight.shape[0]} rows; got X of {X.shape[0]}")
        return base.hessian(X, weight=weight)

    return hessian


def _autograd_twin(base: ModuleType, labels: bool) -> ModuleType:
    twin = ModuleType(base.__name__ + SUFFIX, base.__doc__)

    def split(Y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return (Y[:, 0].to(torch.int64) if labels else Y[:, 0]), Y[:, 1]

    def loss(params: dict[str, torch.Tensor], X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
        target, v = split(Y)
        return base.loss(params, X, target, weight=v)

    def gradients(params: dict[str, torch.Tensor], X: torch.Tensor, Y: torch.Tensor) -> dict[str, torch.Tensor]:
        target, v = split(Y)
        return base.gradients(params, X, target, weight=v)

    twin.predict = base.predict  # type: ignore[attr-defined]
    twin.loss = loss  # type: ignore[attr-defined]
    twin.gradients = gradients  # type: ignore[attr-defined]
    return twin

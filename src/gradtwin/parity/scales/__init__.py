"""Each model's rounding scales: sum|terms| behind its loss and each gradient, and its longest sum.

A twin's computed gradient lies within gamma(K + ops) * gradient_scale of the exact one, K its
`rounding_terms` (`parity.rounding.tolerance`). The modules here mirror `manual/<family>.py`
and evaluate the same expressions with every value replaced by a bound on its magnitude.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from gradtwin.models import Model, bind
from gradtwin.parity.scales import derived, linear, linear1d, logistic, mlp, softmax

SCALES: dict[str, ModuleType] = {
    "linear1d": linear1d,
    "linear": linear,
    "logistic": logistic,
    "softmax": softmax,
    "mlp": mlp,
}


def scales_for(model: Model) -> ModuleType:
    """The scale functions of `model`'s family, with its options (the mlp's activation) bound; derived
    from its autograd twin's loss (`scales.derived`) for a model whose `scales` is "autograd"."""
    if model.scales == "autograd":
        return bind(derived, loss=model.autograd.loss)
    return bind(SCALES[model.family], **model.options)


def _weighted(weight: Any) -> dict[str, Any]:
    return {} if weight is None else {"weight": weight}


def gradient_scale(model: Model, params: dict[str, Any], X: Any, Y: Any, weight: Any = None) -> dict[str, Any]:
    """sum|terms| of each gradient element, keyed like `params`."""
    return scales_for(model).gradient_scale(params, X, Y, **_weighted(weight))


def loss_scale(model: Model, params: dict[str, Any], X: Any, Y: Any, weight: Any = None) -> Any:
    """sum|terms| of the loss, ()."""
    return scales_for(model).loss_scale(params, X, Y, **_weighted(weight))


def rounding_terms(model: Model, X: Any, params: dict[str, Any], weight: Any = None) -> int:
    """K: how many roundings the longest chain in the loss and its gradients passes through."""
    return int(scales_for(model).rounding_terms(X, params, weight))

"""make_engine: the one place that turns an engine's name into an engine."""

from __future__ import annotations

from gradtwin.errors import UsageError
from gradtwin.models import Model
from gradtwin.training.engines import AutogradEngine, Engine, ManualEngine
from gradtwin.training.exact import ExactEngine

ENGINES = ("manual", "autograd", "exact")
TWINS = ("manual", "autograd")  # the two engines every model has


def make_twin(name: str, model: Model, dtype: str = "float64", device: str = "cpu", array: str = "auto") -> Engine:
    """The engine of one twin, 'manual' or 'autograd' (see `make_engine`)."""
    if name == "manual":
        return ManualEngine(model, dtype, device, array)
    if array == "numpy":
        raise UsageError(f"array 'numpy' is for the manual engine only; engine {name!r} uses torch tensors")
    if name == "autograd":
        return AutogradEngine(model, dtype, device)
    raise UsageError(f"engine must be one of {', '.join(TWINS)}; got {name!r}")


def make_engine(
    name: str, model: Model, dtype: str = "float64", device: str = "cpu", array: str = "auto"
) -> Engine | ExactEngine:
    """The engine called `name` ('manual', 'autograd' or 'exact') for `model`.

    `array` says where the manual twin's arrays live ('auto', 'numpy' or 'torch'); the
    other engines always use torch tensors and accept only 'auto' or 'torch'.
    """
    if name in TWINS:
        return make_twin(name, model, dtype, device, array)
    if name == "exact":
        if array == "numpy":
            raise UsageError(f"array 'numpy' is for the manual engine only; engine {name!r} uses torch tensors")
        return ExactEngine(model, dtype, device)
    raise UsageError(f"engine must be one of {', '.join(ENGINES)}; got {name!r}")

"""make_engine: the one place that turns an engine's name into an engine."""

from __future__ import annotations

from gradtwin.errors import UsageError
from gradtwin.models import Model
from gradtwin.training.engines import AutogradEngine, Engine, ManualEngine, TapeEngine
from gradtwin.training.exact import ExactEngine

ENGINES = ("manual", "autograd", "tape", "exact")
TWINS = ("manual", "autograd")  # the two engines every model has
THREE = ("manual", "tape", "autograd")  # with the third twin, on gradtwin's own autodiff, where a model has one


def make_twin(name: str, model: Model, dtype: str = "float64", device: str = "cpu", array: str = "auto") -> Engine:
    """The engine of one twin, 'manual', 'autograd' or 'tape' (see `make_engine`)."""
    if name == "manual":
        return ManualEngine(model, dtype, device, array)
    if name == "tape":
        if array == "torch":
            raise UsageError("array 'torch' is for the manual engine only; engine 'tape' uses NumPy arrays")
        return TapeEngine(model, dtype, device)
    if array == "numpy":
        raise UsageError(f"array 'numpy' is for the manual engine only; engine {name!r} uses torch tensors")
    if name == "autograd":
        return AutogradEngine(model, dtype, device)
    raise UsageError(f"engine must be one of {', '.join(THREE)}; got {name!r}")


def make_engine(
    name: str, model: Model, dtype: str = "float64", device: str = "cpu", array: str = "auto"
) -> Engine | ExactEngine:
    """The engine called `name` ('manual', 'autograd', 'tape' or 'exact') for `model`.

    `array` says where the manual twin's arrays live ('auto', 'numpy' or 'torch'); the
    other engines always use torch tensors and accept only 'auto' or 'torch'.
    """
    if name in THREE:
        return make_twin(name, model, dtype, device, array)
    if name == "exact":
        if array == "numpy":
            raise UsageError(f"array 'numpy' is for the manual engine only; engine {name!r} uses torch tensors")
        return ExactEngine(model, dtype, device)
    raise UsageError(f"engine must be one of {', '.join(ENGINES)}; got {name!r}")

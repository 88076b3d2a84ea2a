"""Shared test settings: the axes (models x dtypes x devices) defined once, the one parity helper,
the one way to plant a bug, one torch thread, and hypothesis settings that keep the suite quick.

Every parametrized case whose parameters name a CUDA device gets the `cuda` marker, and is
skipped where there is no GPU, so `pytest -m cuda` on a GPU machine runs every CUDA case.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, settings

# scikit-learn's conformance suite checks estimators under array-API dispatch, which needs SciPy's
# array-API mode; SciPy reads this when it is first imported, so it is set before anything can.
os.environ.setdefault("SCIPY_ARRAY_API", "1")

from gradtwin.data import Dataset
from gradtwin.models import MODELS, Model
from gradtwin.parity.compare import ParamCheck
from gradtwin.parity.model_check import check_point

settings.register_profile("default", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("default")

# ---- the axes ---------------------------------------------------------------------------------

DTYPES = ["float64", "float32"]
DEVICES = ["cpu", "cuda"]  # "cuda" cases get the cuda marker and skip without a GPU (see below)
MODEL_NAMES = list(MODELS)
# the models on tables of numbers (X (n, d) of any d), whose rounding scales are written out by hand; the models
# made of layers read images or character windows of their own shapes, and tests/test_model_<name>.py hold
# them to what the tests over TABULAR hold these to
TABULAR = [name for name, m in MODELS.items() if m.scales == "hand"]
LAYERED = [name for name, m in MODELS.items() if m.scales != "hand"]
REGRESSORS = [name for name in TABULAR if MODELS[name].task == "regression"]
CLASSIFIERS = [name for name in TABULAR if MODELS[name].task == "classification"]
WEIGHTED = [name for name, m in MODELS.items() if m.weights]
CUDA = torch.cuda.is_available()


def _names_cuda(value: Any) -> bool:
    if isinstance(value, str):
        return value == "cuda" or value.startswith("cuda:")
    if isinstance(value, torch.device):
        return value.type == "cuda"
    return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every case with a cuda parameter `cuda`, and skip the marked ones without a GPU."""
    skip = pytest.mark.skip(reason="no CUDA GPU here")
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and any(_names_cuda(v) for v in callspec.params.values()):
            item.add_marker(pytest.mark.cuda)
        if item.get_closest_marker("cuda") is not None and not CUDA:
            item.add_marker(skip)


@pytest.fixture(params=DEVICES)
def device(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """One intra-op thread per test process: under `pytest -n 2` on two cores, two threads per
    worker spin against each other and make small torch ops 10-50x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---- the one parity helper --------------------------------------------------------------------


def failures(checks: Sequence[ParamCheck]) -> list[str]:
    """The message of every comparison that failed (empty when all agree)."""
    return [c.message() for c in checks if not c.ok]


def assert_parity(
    model: Model,
    params: dict[str, np.ndarray],
    data: Dataset,
    dtype: str = "float64",
    device: str = "cpu",
    manual_module: Any = None,
    point: int = 0,
) -> list[ParamCheck]:
    """Forward first, then each parameter: manual vs autograd, the float64 reference, finite differences.

    All within the derived tolerances (`parity.model_check.check_point`); fails naming each
    comparison that did not agree, its worst element, both values and the tolerance.
    """
    checks = check_point(model, params, data, dtype, device, point, manual_module)
    failed = failures(checks)
    assert not failed, "\n".join(failed)
    return checks


def caught(
    model: Model,
    params: dict[str, np.ndarray],
    data: Dataset,
    planted: Any,
    dtype: str = "float64",
    device: str = "cpu",
) -> set[tuple[str, str]]:
    """(comparison, parameter) of every failing check of a planted twin, after the real twin passed."""
    assert_parity(model, params, data, dtype, device)
    return {(c.comparison, c.name) for c in check_point(model, params, data, dtype, device, manual_module=planted)
            if not c.ok}  # fmt: skip


# ---- the one way to plant a bug ---------------------------------------------------------------


def plant(model: Model, **replaced: Any) -> SimpleNamespace:
    """`model`'s manual twin with the functions in `replaced` swapped for buggy ones.

    Every other function is the real twin's, so a check of the result fails only where a
    replacement is wrong.
    """
    twin = {name: value for name, value in vars(model.manual).items() if not name.startswith("__")}
    unknown = set(replaced) - set(twin)
    assert not unknown, f"{model.name}'s manual twin has no {sorted(unknown)}"
    return SimpleNamespace(**{**twin, **replaced})


def plant_in_gradients(model: Model, bug: Any) -> SimpleNamespace:
    """The manual twin whose `gradients` returns bug(grads, X): a bug written into the result."""
    correct = model.manual.gradients

    def gradients(params: dict[str, Any], X: Any, Y: Any, **weight: Any) -> dict[str, Any]:
        return bug(dict(correct(params, X, Y, **weight)), X)

    return plant(model, gradients=gradients)


def twin_values(
    model: Model, params: dict[str, np.ndarray], data: Dataset, dtype: str = "float64", device: str = "cpu"
) -> list[tuple[float, dict[str, np.ndarray]]]:
    """(loss, gradients as float64 NumPy) of the manual and the autograd engine at one point."""
    from gradtwin.training import AutogradEngine, ManualEngine

    out = []
    for engine in (ManualEngine(model, dtype, device), AutogradEngine(model, dtype, device)):
        V = None if data.weight is None else engine.asarray(data.weight)
        loss, grads = engine.loss_and_gradients(
            engine.params(params), engine.asarray(data.X), engine.asarray(data.Y), V
        )
        out.append((float(loss), {k: engine.to_numpy(v).astype(np.float64) for k, v in grads.items()}))
    return out

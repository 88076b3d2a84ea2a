"""Shared test settings: the device axis, one torch thread, hypothesis settings that keep the suite quick."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import torch
from hypothesis import HealthCheck, settings

# scikit-learn's conformance suite checks estimators under array-API dispatch, which needs SciPy's
# array-API mode; SciPy reads this when it is first imported, so it is set before anything can.
os.environ.setdefault("SCIPY_ARRAY_API", "1")

settings.register_profile("default", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("default")

DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU here")),
]
DTYPES = ["float64", "float32"]


@pytest.fixture(params=DEVICES)
def device(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """One intra-op thread per test process: under `pytest -n 2` on two cores, two threads per
    worker spin against each other and make small torch ops 10-50x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

"""Gradient parity of a model's twins at given or random points, refereed by finite differences."""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np

from gradtwin.data import Dataset
from gradtwin.gradcheck import check_gradients
from gradtwin.models import Model
from gradtwin.parity import ParamCheck


def rounding_terms(model: Model, data: Dataset, params: dict[str, np.ndarray] | None = None) -> int:
    """How many roundings the longest chain in the model's loss and gradients passes through.

    The manual twin's `rounding_terms(X)`, or `rounding_terms(X, params)` where the chain
    also runs through sums whose length only the parameters' shapes tell (classes, units).
    """
    terms = getattr(model.manual, "rounding_terms", None)
    if terms is None:
        return int(data.X.shape[0])
    if "params" in inspect.signature(terms).parameters:
        if params is None:
            raise ValueError(f"{model.name}: rounding_terms needs the parameters")
        return int(terms(data.X, params))
    return int(terms(data.X))


def check_point(
    model: Model,
    params: dict[str, np.ndarray],
    data: Dataset,
    dtype: str = "float64",
    device: str = "cpu",
    point: int = 0,
    manual_module: Any = None,
) -> list[ParamCheck]:
    """Compare the twins' loss and gradients at one point, forward first, then each parameter.

    The built-in model is one more user of `gradcheck.check_gradients`, with the model's own
    `gradient_scale` and `loss_scale` (sum|terms|, exact for its sums) and K = its longest sum:
    - manual vs autograd in `dtype`: each within gamma(K) * scale of the exact value, so
      they may differ by twice that;
    - in float32, each twin against autograd in float64 (the float32 bound plus the float64 one);
    - the manual twin and autograd in float64 against central finite differences in float64.
    `manual_module` replaces the model's manual twin (to plant a bug and see it caught).
    """
    manual_twin = manual_module if manual_module is not None else model.manual
    report = check_gradients(
        manual_twin.gradients,
        model.autograd.loss,
        params,
        (data.X, data.Y),
        dtype=dtype,
        device=device,
        manual_loss=manual_twin.loss,
        scale=model.manual.gradient_scale,
        loss_scale=model.manual.loss_scale,
        n_terms=rounding_terms(model, data, params),
        manual_array="numpy" if device == "cpu" else "torch",
        label="manual",
    )
    checks = report.checks()
    for c in checks:
        c.point = point
    return checks


def check_model(
    model: Model,
    points: int = 100,
    dtype: str = "float64",
    device: str = "cpu",
    seed: int = 0,
    manual_module: Any = None,
) -> list[ParamCheck]:
    """`check_point` at `points` random data sets and parameters drawn by `model.random_problem`."""
    rng = np.random.default_rng(seed)
    checks: list[ParamCheck] = []
    for point in range(points):
        params, data = model.random_problem(rng)
        checks += check_point(model, params, data, dtype, device, point, manual_module)
    return checks

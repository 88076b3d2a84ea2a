"""Gradient parity of a model's twins at given or random points, refereed by finite differences."""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np

from gradtwin.data import Dataset
from gradtwin.engines import AutogradEngine, ManualEngine
from gradtwin.models import Model
from gradtwin.parity import ParamCheck, compare, finite_differences, tolerance


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

    - manual vs autograd in `dtype`: each within gamma(K) * scale of the exact value, so
      they may differ by twice that;
    - in float32, each twin against the manual twin in float64 on the same float64 data
      (tolerance: the float32 bound plus the float64 one);
    - the manual twin in float64 against central finite differences in float64.
    `manual_module` replaces the model's manual twin (to plant a bug and see it caught).
    """
    manual_twin = manual_module if manual_module is not None else model.manual
    K = rounding_terms(model, data, params)
    p64 = {k: np.asarray(v, dtype=np.float64) for k, v in params.items()}
    X64, Y64 = data.X, data.Y
    grad_scale = model.manual.gradient_scale(p64, X64, Y64)
    loss_scale = model.manual.loss_scale(p64, X64, Y64)

    manual = ManualEngine(model, dtype)
    autograd = AutogradEngine(model, dtype, device)
    Xm, Ym, pm = manual.asarray(X64), manual.asarray(Y64), manual.params(p64)
    Xa, Ya, pa = autograd.asarray(X64), autograd.asarray(Y64), autograd.params(p64)
    loss_m = manual_twin.loss(pm, Xm, Ym)
    grads_m = manual_twin.gradients(pm, Xm, Ym)
    loss_a, grads_a = autograd.loss_and_gradients(pa, Xa, Ya)

    checks = [
        compare(
            "manual vs autograd", "loss", loss_m, autograd.to_numpy(loss_a), 2 * tolerance(dtype, K, loss_scale), point
        )
    ]
    checks += [
        compare(
            "manual vs autograd",
            name,
            grads_m[name],
            autograd.to_numpy(grads_a[name]),
            2 * tolerance(dtype, K, grad_scale[name]),
            point,
        )
        for name in p64
    ]
    ref_loss = manual_twin.loss(p64, X64, Y64)
    ref_grads = manual_twin.gradients(p64, X64, Y64)
    if np.dtype(dtype) != np.float64:
        for label, loss_v, grads in (("manual", loss_m, grads_m), ("autograd", loss_a, grads_a)):
            comparison = f"{label} {dtype} vs float64"
            tol_loss = tolerance(dtype, K, loss_scale) + tolerance(np.float64, K, loss_scale)
            checks.append(compare(comparison, "loss", autograd.to_numpy(loss_v), ref_loss, tol_loss, point))
            for name in p64:
                tol = tolerance(dtype, K, grad_scale[name]) + tolerance(np.float64, K, grad_scale[name])
                checks.append(compare(comparison, name, autograd.to_numpy(grads[name]), ref_grads[name], tol, point))

    loss_error = float(tolerance(np.float64, K, loss_scale))
    fd, fd_bound = finite_differences(lambda p: float(model.manual.loss(p, X64, Y64)), p64, loss_error)
    checks += [
        compare(
            "manual float64 vs finite diff",
            name,
            ref_grads[name],
            fd[name],
            fd_bound[name] + tolerance(np.float64, K, grad_scale[name]),
            point,
        )
        for name in p64
    ]
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

"""The model registry: each model's two twins, its parameter shapes and its default data."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType

import numpy as np

from gradtwin.autograd import linear as autograd_linear
from gradtwin.autograd import linear1d as autograd_linear1d
from gradtwin.data import Dataset, load_diabetes_all, load_diabetes_bmi, standardize
from gradtwin.errors import UsageError
from gradtwin.manual import linear as manual_linear
from gradtwin.manual import linear1d as manual_linear1d

Params = dict[str, np.ndarray]


@dataclass(frozen=True)
class Model:
    """One model: its manual and autograd twins and what a run of it needs to start."""

    name: str
    manual: ModuleType
    autograd: ModuleType
    description: str
    param_shapes: Callable[[Dataset], dict[str, tuple[int, ...]]]
    default_data: Callable[[], Dataset]
    random_data: Callable[[np.random.Generator], Dataset]
    task: str = "regression"
    x_ndim: int = 1  # 1: X (n,); 2: X (n, d)

    def init_params(self, data: Dataset, seed: int | None = None) -> Params:
        """Zeros, as in the article, or seeded standard-normal values (float64)."""
        shapes = self.param_shapes(data)
        if seed is None:
            return {name: np.zeros(shape) for name, shape in shapes.items()}
        rng = np.random.default_rng(seed)
        return {name: np.asarray(rng.standard_normal(shape)) for name, shape in shapes.items()}

    def random_problem(self, rng: np.random.Generator) -> tuple[Params, Dataset]:
        """A random data set and parameters at random scales, for parity checks."""
        data = self.random_data(rng)
        scale = 10.0 ** rng.uniform(-2, 2)
        params = {k: scale * v for k, v in self.init_params(data, int(rng.integers(2**31))).items()}
        return params, data

    def stable_lr(self, X: np.ndarray) -> float | None:
        """2 / lambda_max of the loss's Hessian where it is constant, else None.

        Above this learning rate full-batch gradient descent on a quadratic loss diverges.
        """
        hessian = getattr(self.manual, "hessian", None)
        if hessian is None:
            return None
        lam_max = float(np.linalg.eigvalsh(np.asarray(hessian(np.asarray(X, dtype=np.float64))))[-1])
        return 2.0 / lam_max if lam_max > 0 else float("inf")


def _default_linear1d() -> Dataset:
    return standardize(load_diabetes_bmi())


def _random_linear1d(rng: np.random.Generator) -> Dataset:
    """n in [1, 300]; X and Y at independent random scales from 1e-2 to 1e2."""
    n = int(rng.integers(1, 301))
    X = rng.standard_normal(n) * 10.0 ** rng.uniform(-2, 2) + rng.standard_normal() * 10.0 ** rng.uniform(-2, 2)
    Y = rng.standard_normal(n) * 10.0 ** rng.uniform(-2, 2) + 3.0 * X
    return Dataset(X, Y, name="random")


def _default_linear() -> Dataset:
    return standardize(load_diabetes_all())


def _random_linear(rng: np.random.Generator) -> Dataset:
    """n in [1, 300], d in [1, 8]; columns mixed so they correlate, each at its own scale and offset."""
    n = int(rng.integers(1, 301))
    d = int(rng.integers(1, 9))
    mix = rng.standard_normal((d, d))  # (d, d)
    scales = 10.0 ** rng.uniform(-2, 2, d)  # (d,)
    offsets = rng.standard_normal(d) * 10.0 ** rng.uniform(-2, 2, d)  # (d,)
    X = rng.standard_normal((n, d)) @ mix * scales + offsets  # (n, d)
    Y = X @ rng.standard_normal(d) + rng.standard_normal(n) * 10.0 ** rng.uniform(-2, 2)  # (n,)
    return Dataset(X, Y, name="random")


MODELS: dict[str, Model] = {
    "linear1d": Model(
        name="linear1d",
        manual=manual_linear1d,
        autograd=autograd_linear1d,
        description="the article's model: pred = X*w + b, mean squared error",
        param_shapes=lambda data: {"w": (), "b": ()},
        default_data=_default_linear1d,
        random_data=_random_linear1d,
    ),
    "linear": Model(
        name="linear",
        manual=manual_linear,
        autograd=autograd_linear,
        description="multivariate linear regression: pred = X @ w + b, mean squared error",
        param_shapes=lambda data: {"w": (int(data.X.shape[1]),), "b": ()},
        default_data=_default_linear,
        random_data=_random_linear,
        x_ndim=2,
    ),
}


def get_model(name: str) -> Model:
    """The registered model called `name`, or a UsageError listing the known ones."""
    if name not in MODELS:
        raise UsageError(f"model must be one of {', '.join(MODELS)}; got {name!r}")
    return MODELS[name]

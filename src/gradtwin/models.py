"""The model registry: each model's two twins, its parameter shapes and its default data."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType

import numpy as np

from gradtwin.autograd import linear1d as autograd_linear1d
from gradtwin.data import Dataset, load_diabetes_bmi, standardize
from gradtwin.errors import DataError, UsageError
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
    x_ndim: int | None = None  # 1: X is (n,), one feature; 2: X is (n, d); None: either
    y_ndim: int | None = None  # 1: Y is (n,); None: whatever the Dataset allows

    def check_data(self, data: Dataset) -> None:
        """Refuse data of a shape this model cannot read, before it broadcasts into nonsense."""
        forms = {1: "1-D (n,)", 2: "2-D (n, d)"}
        for label, arr, ndim in (("X", data.X, self.x_ndim), ("Y", data.Y, self.y_ndim)):
            if ndim is not None and arr.ndim != ndim:
                raise DataError(f"{self.name} needs {label} {forms[ndim]}; got shape {arr.shape} from {data.name}")

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
        """2 / lambda_max of the loss's Hessian where it is constant and finite, else None.

        Above this learning rate full-batch gradient descent on a quadratic loss diverges.
        """
        hessian = getattr(self.manual, "hessian", None)
        if hessian is None:
            return None
        with np.errstate(over="ignore", invalid="ignore"):
            H = np.asarray(hessian(np.asarray(X, dtype=np.float64)))
        if not np.all(np.isfinite(H)):  # data near float64's limit: no bound can be computed
            return None
        lam_max = float(np.linalg.eigvalsh(H)[-1])
        return 2.0 / lam_max if lam_max > 0 else float("inf")


def _default_linear1d() -> Dataset:
    return standardize(load_diabetes_bmi())


def _random_linear1d(rng: np.random.Generator) -> Dataset:
    """n in [1, 300]; X and Y at independent random scales from 1e-2 to 1e2."""
    n = int(rng.integers(1, 301))
    X = rng.standard_normal(n) * 10.0 ** rng.uniform(-2, 2) + rng.standard_normal() * 10.0 ** rng.uniform(-2, 2)
    Y = rng.standard_normal(n) * 10.0 ** rng.uniform(-2, 2) + 3.0 * X
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
        x_ndim=1,
        y_ndim=1,
    ),
}


def get_model(name: str) -> Model:
    """The registered model called `name`, or a UsageError listing the known ones."""
    if name not in MODELS:
        raise UsageError(f"model must be one of {', '.join(MODELS)}; got {name!r}")
    return MODELS[name]

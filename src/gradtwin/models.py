"""The model registry: each model's two twins, its parameter shapes and its default data."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Protocol

import numpy as np

from gradtwin import validate
from gradtwin.autograd import linear as autograd_linear
from gradtwin.autograd import linear1d as autograd_linear1d
from gradtwin.autograd import logistic as autograd_logistic
from gradtwin.autograd import mlp as autograd_mlp
from gradtwin.autograd import softmax as autograd_softmax
from gradtwin.data import (
    Dataset,
    check_weight,
    load_breast_cancer,
    load_diabetes_all,
    load_diabetes_bmi,
    load_digits,
    load_wine,
    standardize,
    synthetic_classes,
)
from gradtwin.errors import DataError, UsageError
from gradtwin.manual import linear as manual_linear
from gradtwin.manual import linear1d as manual_linear1d
from gradtwin.manual import logistic as manual_logistic
from gradtwin.manual import mlp as manual_mlp
from gradtwin.manual import softmax as manual_softmax

Params = dict[str, np.ndarray]


class DataLoader(Protocol):
    """A model's default data: standardized (the default) or in the data's own units."""

    def __call__(self, standardized: bool = True) -> Dataset: ...


@dataclass(frozen=True)
class Model:
    """One model: its manual and autograd twins and what a run of it needs to start.

    `family` names the twin modules (`manual/<family>.py`, `autograd/<family>.py`); the mlp's
    variants share one. `default_data(standardized)` loads its data, standardized or in its
    own units. `weights` says whether the twins take sample weights.
    """

    name: str
    family: str
    manual: ModuleType
    autograd: ModuleType
    description: str
    param_shapes: Callable[[Dataset], dict[str, tuple[int, ...]]]
    default_data: DataLoader
    random_data: Callable[[np.random.Generator], Dataset]
    task: str = "regression"
    weights: bool = False
    x_ndim: int | None = None  # 1: X is (n,), one feature; 2: X is (n, d); None: either
    loss_name: str = "mean squared error"  # what `loss` computes, as the plots name it

    default_lr: float = 0.1
    default_iterations: int = 300
    # a model-specific start (the mlp: zeros would keep its hidden units identical forever)
    init: Callable[[dict[str, tuple[int, ...]], np.random.Generator], Params] | None = None
    synthetic: Callable[[int, int], Dataset] | None = None  # (n, seed) -> data of this model's kind
    options: dict[str, Any] = field(default_factory=dict)  # hyper-parameters, shown by `gradtwin list`
    # the weight and bias of the first layer, affine in X (X @ W + b): they map back to the data's own units
    first_layer: tuple[str, str] | None = None

    def in_data_units(self, params: Params, data: Dataset) -> Params | None:
        """`params` for X in the data's own units, or None where no first layer is affine in X.

        Data prepared as X' = (X - mean) / scale (`data.x_mean`, `data.x_scale`) give
        X' @ W + b = X @ W_raw + b_raw with::

            W_raw = W / scale        (each input row of W by its feature's scale)
            b_raw = b - mean @ W_raw
            Shapes: mean, scale () or (d,); W () or (d,) or (d, k); b () or (k,)

        Every other parameter is unchanged. Data in their own units give `params` as they are.
        """
        if self.first_layer is None:
            return None
        raw = {k: np.asarray(v, dtype=np.float64) for k, v in params.items()}
        if data.x_mean is None or data.x_scale is None:
            return raw
        w, b = self.first_layer
        mean, scale = np.asarray(data.x_mean), np.asarray(data.x_scale)  # () or (d,)
        W = raw[w]  # () or (d,) or (d, k)
        W_raw = W / scale.reshape(scale.shape + (1,) * (W.ndim - scale.ndim))  # W's shape
        raw[w] = W_raw
        raw[b] = raw[b] - np.tensordot(mean, W_raw, axes=mean.ndim)  # b's shape
        return raw

    def check_data(self, data: Dataset) -> None:
        """Refuse data of a shape this model cannot read, before it broadcasts into nonsense."""
        forms = {1: "1-D (n,)", 2: "2-D (n, d)"}
        if self.x_ndim is not None and data.X.ndim != self.x_ndim:
            raise DataError(f"{self.name} needs X {forms[self.x_ndim]}; got shape {data.X.shape} from {data.name}")
        if data.weight is not None and not self.weights:
            takes = ", ".join(m.name for m in MODELS.values() if m.weights)
            raise UsageError(f"sample weights are supported for {takes}; got model {self.name!r}")

    def init_params(self, data: Dataset, seed: int | None = None) -> Params:
        """Zeros, as in the article, or seeded standard-normal values (float64).

        A model with its own `init` draws from it, seeded by `seed` (0 when None).
        """
        shapes = self.param_shapes(data)
        if self.init is not None:
            return self.init(shapes, np.random.default_rng(0 if seed is None else seed))
        if seed is None:
            return {name: np.zeros(shape) for name, shape in shapes.items()}
        rng = np.random.default_rng(seed)
        return {name: np.asarray(rng.standard_normal(shape)) for name, shape in shapes.items()}

    def curvature(self, X: np.ndarray, weight: np.ndarray | None = None) -> float | None:
        """L, the largest eigenvalue of the loss's Hessian (quadratic losses) or a bound on it, or None.

        The twin's `hessian` where the loss is quadratic, else its `hessian_bound` (a matrix the
        Hessian never exceeds); None where the twin has neither or the data overflow float64.
        """
        hessian = getattr(self.manual, "hessian", None) or getattr(self.manual, "hessian_bound", None)
        if hessian is None:
            return None
        X64 = np.asarray(X, dtype=np.float64)
        if weight is not None:
            weight = check_weight(weight, X64.shape[0], self.name)
        with np.errstate(over="ignore", invalid="ignore"):
            H = np.asarray(hessian(X64) if weight is None else hessian(X64, weight=weight))
        if not np.all(np.isfinite(H)):  # data near float64's limit: no bound can be computed
            return None
        return float(np.linalg.eigvalsh(H)[-1])

    def stable_lr(self, X: np.ndarray, weight: np.ndarray | None = None) -> float | None:
        """2 / lambda_max of the loss's Hessian where it is constant and finite, else None.

        Above this learning rate full-batch gradient descent on a quadratic loss diverges.
        """
        if getattr(self.manual, "hessian", None) is None:
            return None
        lam_max = self.curvature(X, weight)
        if lam_max is None:
            return None
        return 2.0 / lam_max if lam_max > 0 else float("inf")


def _default_linear1d(standardized: bool = True) -> Dataset:
    data = load_diabetes_bmi()
    return standardize(data) if standardized else data


def _default_breast_cancer(standardized: bool = True) -> Dataset:
    return load_breast_cancer(standardized=standardized)


def _default_wine(standardized: bool = True) -> Dataset:
    return load_wine(standardized=standardized)


def _default_digits(standardized: bool = True) -> Dataset:
    return load_digits()  # pixels in [0, 1], never standardized


def _random_linear1d(rng: np.random.Generator) -> Dataset:
    """n in [1, 300]; X and Y at independent random scales from 1e-2 to 1e2."""
    n = int(rng.integers(1, 301))
    X = rng.standard_normal(n) * 10.0 ** rng.uniform(-2, 2) + rng.standard_normal() * 10.0 ** rng.uniform(-2, 2)
    Y = rng.standard_normal(n) * 10.0 ** rng.uniform(-2, 2) + 3.0 * X
    return Dataset(X, Y, name="random")


def _default_linear(standardized: bool = True) -> Dataset:
    data = load_diabetes_all()
    return standardize(data) if standardized else data


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


def _random_features(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    """(n, d) features at a random scale and offset; one draw in four at 1e2..1e4, so that
    together with parameters up to 1e2 the logits reach 1e3..1e7 (extreme, yet finite)."""
    scale = 10.0 ** (rng.uniform(2, 4) if rng.random() < 0.25 else rng.uniform(-1, 1))
    return scale * (rng.standard_normal((n, d)) + rng.standard_normal(d))


def _random_labelled(rng: np.random.Generator, n_max: int, d_max: int, k_max: int) -> Dataset:
    n, d, k = int(rng.integers(1, n_max + 1)), int(rng.integers(1, d_max + 1)), int(rng.integers(2, k_max + 1))
    labels = rng.integers(0, k, size=n).astype(np.int64)  # (n,)
    labels[0] = k - 1  # so the data name all k classes (the parameter shapes are read from it)
    return Dataset(_random_features(rng, n, d), labels, name="random", y_name="class")


def n_classes(data: Dataset, most: int | None = None) -> int:
    """Classes k of integer labels 0..k-1 (the largest label + 1); refuses data that are not labelled.

    `most` caps k (2 for the binary model).
    """
    if data.X.ndim != 2 or not np.issubdtype(data.Y.dtype, np.integer) or np.min(data.Y) < 0:
        raise DataError(
            f"{data.name}: a classifier needs X of shape (n, d) and integer class labels 0, 1, ...; "
            f"got X of shape {data.X.shape} and Y of dtype {data.Y.dtype}"
            + (f" from {np.min(data.Y)}" if np.issubdtype(data.Y.dtype, np.integer) else "")
        )
    # a shard of a data set (`distributed.Shard`) may lack some classes: it carries the whole set's count
    k = max(int(np.max(data.Y)) + 1, getattr(data, "classes", 0))
    if most is not None and k > most:
        raise DataError(f"{data.name}: labels must be 0..{most - 1} for this model; got labels up to {k - 1}")
    return k


def _logistic_shapes(data: Dataset) -> dict[str, tuple[int, ...]]:
    n_classes(data, most=2)
    return {"w": (data.X.shape[1],), "b": ()}


def _softmax_shapes(data: Dataset) -> dict[str, tuple[int, ...]]:
    k = n_classes(data)
    return {"W": (data.X.shape[1], k), "b": (k,)}


def _mlp_shapes(data: Dataset, hidden: int) -> dict[str, tuple[int, ...]]:
    k = n_classes(data)
    return {"W1": (data.X.shape[1], hidden), "b1": (hidden,), "W2": (hidden, k), "b2": (k,)}


def _glorot(shapes: dict[str, tuple[int, ...]], rng: np.random.Generator) -> Params:
    """Weights ~ N(0, 1/fan_in) (so hidden units start unsaturated and different), biases 0."""
    return {
        name: rng.standard_normal(shape) / np.sqrt(shape[0]) if len(shape) == 2 else np.zeros(shape)
        for name, shape in shapes.items()
    }


def bind(module: ModuleType, **options: Any) -> ModuleType:
    """A module-like copy of a twin whose functions get `options` as keywords where they take them."""
    bound = ModuleType(f"{module.__name__}[{', '.join(f'{k}={v}' for k, v in options.items())}]", module.__doc__)
    for name, value in vars(module).items():
        if name.startswith("__"):
            continue
        if inspect.isfunction(value):
            accepted = {k: v for k, v in options.items() if k in inspect.signature(value).parameters}
            value = functools.wraps(value)(functools.partial(value, **accepted)) if accepted else value
        setattr(bound, name, value)
    return bound


def mlp(hidden: int = 32, activation: str = "tanh") -> Model:
    """The one-hidden-layer network with `hidden` units and the given activation."""
    validate.whole(hidden, "hidden")
    if activation not in manual_mlp.ACTIVATIONS:
        raise UsageError(f"activation must be one of {', '.join(manual_mlp.ACTIVATIONS)}; got {activation!r}")
    h = int(hidden)
    return Model(
        name="mlp" if activation == "tanh" else f"mlp-{activation}",
        family="mlp",
        manual=bind(manual_mlp, activation=activation),
        autograd=bind(autograd_mlp, activation=activation),
        description=f"one hidden layer of {h} {activation} units, softmax output, mean cross-entropy",
        param_shapes=functools.partial(_mlp_shapes, hidden=h),
        default_data=_default_digits,
        # hidden width drawn per problem, not `h`: parity must hold at any width
        random_data=_random_labelled_mlp,
        task="classification",
        loss_name="mean cross-entropy",
        default_lr={"tanh": 1.0, "relu": 1.0, "sigmoid": 4.0}[activation],  # sigmoid' <= 1/4
        default_iterations=200,
        init=_glorot,
        synthetic=lambda n, seed: synthetic_classes(n, d=4, k=3, seed=seed, scale=3.0),
        options={"hidden": h, "activation": activation},
        first_layer=("W1", "b1"),
    )


def _random_labelled_mlp(rng: np.random.Generator) -> Dataset:
    return _random_labelled(rng, n_max=40, d_max=5, k_max=4)


def configure(model: Model, hidden: int | None = None, activation: str | None = None) -> Model:
    """`model` with another hidden width or activation; only the mlp models have them."""
    if hidden is None and activation is None:
        return model
    if "activation" not in model.options:
        raise UsageError(f"--hidden and --activation apply to the mlp models; got --model {model.name}")
    return mlp(
        hidden=model.options["hidden"] if hidden is None else hidden,
        activation=model.options["activation"] if activation is None else activation,
    )


MODELS: dict[str, Model] = {
    "linear1d": Model(
        name="linear1d",
        family="linear1d",
        manual=manual_linear1d,
        autograd=autograd_linear1d,
        description="the article's model: pred = X*w + b, mean squared error",
        param_shapes=lambda data: {"w": (), "b": ()},
        default_data=_default_linear1d,
        random_data=_random_linear1d,
        x_ndim=1,
        first_layer=("w", "b"),
    ),
    "linear": Model(
        name="linear",
        family="linear",
        manual=manual_linear,
        autograd=autograd_linear,
        description="multivariate linear regression: pred = X @ w + b, mean squared error",
        param_shapes=lambda data: {"w": (int(data.X.shape[1]),), "b": ()},
        default_data=_default_linear,
        random_data=_random_linear,
        weights=True,
        x_ndim=2,
        first_layer=("w", "b"),
    ),
    "logistic": Model(
        name="logistic",
        family="logistic",
        manual=manual_logistic,
        autograd=autograd_logistic,
        description="binary logistic regression: z = X @ w + b, mean cross-entropy from the logits",
        param_shapes=_logistic_shapes,
        default_data=_default_breast_cancer,
        random_data=lambda rng: _random_labelled(rng, n_max=60, d_max=6, k_max=2),
        task="classification",
        loss_name="mean cross-entropy",
        weights=True,
        default_lr=1.0,
        default_iterations=500,
        synthetic=lambda n, seed: synthetic_classes(n, d=2, k=2, seed=seed, scale=2.0),
        first_layer=("w", "b"),
    ),
    "softmax": Model(
        name="softmax",
        family="softmax",
        manual=manual_softmax,
        autograd=autograd_softmax,
        description="multinomial logistic regression: Z = X @ W + b, mean cross-entropy by log-sum-exp",
        param_shapes=_softmax_shapes,
        default_data=_default_wine,
        random_data=lambda rng: _random_labelled(rng, n_max=60, d_max=5, k_max=5),
        task="classification",
        loss_name="mean cross-entropy",
        weights=True,
        default_lr=1.0,
        default_iterations=500,
        synthetic=lambda n, seed: synthetic_classes(n, d=3, k=3, seed=seed, scale=2.0),
        first_layer=("W", "b"),
    ),
    "mlp": mlp(activation="tanh"),
    "mlp-relu": mlp(activation="relu"),
    "mlp-sigmoid": mlp(activation="sigmoid"),
}


def register(model: Model) -> Model:
    """Add `model` to MODELS under `model.name`, so that `train`, every command and `gradtwin list` see it.

    A name already taken (a built-in model's, or one registered before) is refused, never
    replaced. Returns `model`. E.g. `register(gradtwin.model_from_file("my_model.py", name="poisson"))`.
    """
    if not isinstance(model, Model):
        raise TypeError(f"register takes a gradtwin Model (gradtwin.model_from_file(path)); got {type(model).__name__}")
    if not isinstance(model.name, str) or not model.name.strip() or model.name == "all":
        raise UsageError(f"a model's name must be a non-empty string other than 'all'; got {model.name!r}")
    if model.name in MODELS:
        raise UsageError(f"a model called {model.name!r} is registered already; give yours another name")
    MODELS[model.name] = model
    return model


def get_model(name: str) -> Model:
    """The registered model called `name`, or a UsageError listing the known ones."""
    if name not in MODELS:
        raise UsageError(f"model must be one of {', '.join(MODELS)}; got {name!r}")
    return MODELS[name]

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
from gradtwin.autograd import charmlp as autograd_charmlp
from gradtwin.autograd import cnn as autograd_cnn
from gradtwin.autograd import linear as autograd_linear
from gradtwin.autograd import linear1d as autograd_linear1d
from gradtwin.autograd import logistic as autograd_logistic
from gradtwin.autograd import mlp as autograd_mlp
from gradtwin.autograd import softmax as autograd_softmax
from gradtwin.autograd import transformer as autograd_transformer
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
from gradtwin.manual import charmlp as manual_charmlp
from gradtwin.manual import cnn as manual_cnn
from gradtwin.manual import linear as manual_linear
from gradtwin.manual import linear1d as manual_linear1d
from gradtwin.manual import logistic as manual_logistic
from gradtwin.manual import mlp as manual_mlp
from gradtwin.manual import softmax as manual_softmax
from gradtwin.manual import transformer as manual_transformer
from gradtwin.tape import charmlp as tape_charmlp
from gradtwin.tape import cnn as tape_cnn
from gradtwin.tape import linear as tape_linear
from gradtwin.tape import linear1d as tape_linear1d
from gradtwin.tape import logistic as tape_logistic
from gradtwin.tape import mlp as tape_mlp
from gradtwin.tape import softmax as tape_softmax
from gradtwin.tape import transformer as tape_transformer

Params = dict[str, np.ndarray]
CHECK_POINTS = 200  # check --model: random points per model
LAYERED_CHECK_POINTS = 20  # ...for the models made of layers, whose rounding scales autograd derives


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
    # the third twin, on gradtwin's own reverse-mode autodiff (gradtwin.autodiff), where there is one
    tape: ModuleType | None = None
    # how `check` bounds rounding: "hand" (sum|terms| written out in parity/scales/<family>.py) or
    # "autograd" (derived for the autograd twin's loss by parity.autograd_scales, as for users' code)
    scales: str = "hand"
    # the loss is a mean of one term per row; False where batch norm's statistics couple the rows
    rows_independent: bool = True
    # random points `check --model` draws by default: fewer where autograd derives the scales (a Jacobian a point)
    check_points: int = CHECK_POINTS
    # `check` redraws a random problem until this holds (finite differences valid: no kink within reach)
    admissible: Callable[[Params, Dataset], bool] | None = None
    # weights W that enter the autograd twin only as the right factor of a product A @ W (addmm's mat2):
    # the autograd engine may lay them out column-major, a layout for speed that changes no value
    right_factors: tuple[str, ...] = ()

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
        tape=bind(tape_mlp, activation=activation),
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
        right_factors=("W1", "W2"),
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


_CHARMLP_RANDOM = "random windows"  # the data `check` draws: the model then takes tiny widths (e 2, h 3)


def _charmlp_vocabulary(data: Dataset) -> int:
    """V: the named characters where the data name them, else enough for every index in X and label in Y."""
    k = n_classes(data)
    if data.class_names is not None:
        return len(data.class_names)
    return max(k, int(np.max(data.X)) + 1)


def _charmlp_shapes(data: Dataset, embed: int, hidden: int) -> dict[str, tuple[int, ...]]:
    """C (V, e), W1 (t*e, h), gamma, beta (h,), W2 (h, V), b2 (V,) with t = the columns of X."""
    V, t = _charmlp_vocabulary(data), int(data.X.shape[1])
    e, h = (2, 3) if data.name == _CHARMLP_RANDOM else (embed, hidden)
    return {"C": (V, e), "W1": (t * e, h), "gamma": (h,), "beta": (h,), "W2": (h, V), "b2": (V,)}


def _charmlp_init(shapes: dict[str, tuple[int, ...]], rng: np.random.Generator) -> Params:
    """C ~ N(0, 1); W1 ~ N(0, (5/3)^2 / fan_in) (tanh's gain); gamma 1, beta 0; W2 ~ N(0, 0.01^2), b2 0.

    A small W2 starts the logits near 0, so the first loss is near log V rather than far above it.
    """
    (V, e), (te, h) = shapes["C"], shapes["W1"]
    return {
        "C": rng.standard_normal((V, e)),
        "W1": rng.standard_normal((te, h)) * (5.0 / 3.0) / np.sqrt(te),
        "gamma": np.ones(h),
        "beta": np.zeros(h),
        "W2": rng.standard_normal(shapes["W2"]) * 0.01,
        "b2": np.zeros(shapes["b2"]),
    }


def _random_windows(rng: np.random.Generator) -> Dataset:
    """3 to 8 windows of 2 indices over V in [2, 5]. At least 3 rows: batch norm of one row is degenerate, and
    of two it gives +-1 up to eps, whose backward reaches its tiny gradient by a cancellation of the two rows
    that no rounding scale of the inputs or the tapped values sees (as layer norm of 2 features, in its tests)."""
    from gradtwin.data.names import ALPHABET

    n, V = int(rng.integers(3, 9)), int(rng.integers(2, 6))
    X = rng.integers(0, V, size=(n, 2)).astype(np.float64)  # (n, 2)
    Y = rng.integers(0, V, size=n).astype(np.int64)  # (n,)
    return Dataset(X, Y, _CHARMLP_RANDOM, "previous 2 characters", "next character", class_names=ALPHABET[:V])


def _charmlp_admissible(params: Params, data: Dataset) -> bool:
    """Every position of the windows holds at least two characters across the rows.

    Batch norm removes from Z1 whatever all rows share, so its dL/dZ1 sums to 0 over the rows; a
    position with one character in every row then has dL/dW1 exactly 0 (its rows of W1 see the same
    input everywhere) whatever the parameters, and the twins' rounding noise there has no scale to
    be judged against. Real windows never have such a position.
    """
    return bool(np.all(np.ptp(data.X, axis=0) > 0))


def _default_names(standardized: bool = True, context: int = 3) -> Dataset:
    """The first-names corpus (character indices: never standardized), a fifth of the names held out."""
    from gradtwin.data.names import load_names

    return load_names(context=context)


def charmlp(context: int = 3, embed: int = 10, hidden: int = 64) -> Model:
    """The makemore MLP: `context` characters, each embedded in `embed` numbers, `hidden` batch-normed tanh units."""
    from gradtwin.data.names import synthetic_names

    for value, label in ((context, "context"), (embed, "embed"), (hidden, "hidden")):
        validate.whole(value, label)
    t, e, h = int(context), int(embed), int(hidden)
    return Model(
        name="charmlp",
        family="charmlp",
        manual=bind(manual_charmlp),
        autograd=bind(autograd_charmlp),
        tape=bind(tape_charmlp),
        description=(
            f"character model: {t} characters embedded in {e} each, linear to {h}, batch norm, tanh, "
            "softmax over the next character"
        ),
        param_shapes=functools.partial(_charmlp_shapes, embed=e, hidden=h),
        default_data=functools.partial(_default_names, context=t),
        random_data=_random_windows,
        task="classification",
        loss_name="mean cross-entropy",
        default_lr=3.0,  # full batch, batch norm: held-out 2.20 nats after 100 steps (log 27 = 3.30 at the start)
        default_iterations=100,
        init=_charmlp_init,
        synthetic=lambda n, seed: synthetic_names(n, context=t, seed=seed),
        options={"context": t, "embed": e, "hidden": h},
        first_layer=None,
        x_ndim=2,
        scales="autograd",
        check_points=LAYERED_CHECK_POINTS,
        rows_independent=False,  # batch norm's statistics couple the rows
        admissible=_charmlp_admissible,
    )


def _image_side(data: Dataset) -> int:
    """s with X's width d = s * s (each row a square image, read row by row), or a DataError naming the width."""
    d = int(data.X.shape[1])
    s = round(d**0.5)
    if s * s != d:
        raise DataError(f"{data.name}: cnn needs X of width s*s, each row a square image of s*s pixels; got width {d}")
    return s


def _cnn_shapes(data: Dataset, channels: int, kernel: int) -> dict[str, tuple[int, ...]]:
    """K (C, 1, kh, kw), c (C,), W (C*h*w, k), b (k,): h = w the pooled side, k the classes."""
    k = n_classes(data)
    s = _image_side(data)
    conv = s + 2 * (kernel // 2) - kernel + 1  # the convolution's output side (padding kernel // 2, stride 1)
    if conv < 2:
        raise DataError(
            f"{data.name}: cnn needs images whose convolution ({kernel}x{kernel} kernel, padding {kernel // 2}) "
            f"leaves at least 2x2 pixels for the 2x2 pool; got images of {s}x{s}"
        )
    h = conv // 2  # the pool's output side (floor mode)
    return {"K": (channels, 1, kernel, kernel), "c": (channels,), "W": (channels * h * h, k), "b": (k,)}


def _cnn_init(shapes: dict[str, tuple[int, ...]], rng: np.random.Generator) -> Params:
    """K ~ N(0, 2/fan_in) (relu's gain, fan_in = kh*kw), W ~ N(0, 1/fan_in) (fan_in = C*h*w), biases 0."""
    K, W = shapes["K"], shapes["W"]
    return {
        "K": rng.standard_normal(K) * np.sqrt(2.0 / (K[2] * K[3])),
        "c": np.zeros(shapes["c"]),
        "W": rng.standard_normal(W) / np.sqrt(W[0]),
        "b": np.zeros(shapes["b"]),
    }


def _random_images(rng: np.random.Generator) -> Dataset:
    """1 to 6 images of 4x4 or 5x5 pixels (5: the pool drops the last row and column), k in [2, 3] classes;
    pixels uniform in [0, scale), scale from 0.1 to 10."""
    n, s, k = int(rng.integers(1, 7)), int(rng.integers(4, 6)), int(rng.integers(2, 4))
    X = rng.random((n, s * s)) * 10.0 ** rng.uniform(-1, 1)  # (n, s*s)
    labels = rng.integers(0, k, size=n).astype(np.int64)  # (n,)
    labels[0] = k - 1  # so the data name all k classes (the parameter shapes are read from it)
    return Dataset(X, labels, name="random images", y_name="class")


def _uncertain(Z: np.ndarray, Y: np.ndarray, most: float = 0.99) -> bool:
    """No row's own class has softmax probability >= `most`.

    There dL/dZ_y = (P_y - 1)/n and the loss term lse - Z_y are tiny differences of numbers near 1
    and |lse|, which keep an absolute rounding of about u (u |lse|) that the scales derived from
    autograd (sensitivities to the inputs, `parity.autograd_scales`) do not see; the hand-written
    softmax scales do (`parity.scales.softmax.head_scales`).
    """
    Zs = Z - np.max(Z, axis=1, keepdims=True)  # (n, k)
    own = np.exp(Zs[np.arange(Y.shape[0]), Y]) / np.sum(np.exp(Zs), axis=1)  # (n,)
    return bool(np.all(own < most))


def _cnn_admissible(params: Params, data: Dataset) -> bool:
    """Finite differences are valid here: no pre-activation within reach of relu's kink at 0, and no pool
    window whose largest positive value is within reach of its runner-up (a max that could move).

    A central difference moves K and c by up to 2 steps u^(1/3) * max(1, |p|) (float64), which moves
    A by (|img| conv 2 step(K)) + 2 step(c); a float32 A may lie gamma(terms) * (|img| conv |K| + |c|)
    from the exact one. Twice the larger reach must stay clear of the kink and of the runner-up.
    """
    step = (np.finfo(np.float64).eps / 2) ** (1.0 / 3.0)
    X, K, c = np.abs(data.X), params["K"], params["c"]
    zero_head = {"W": np.zeros_like(params["W"]), "b": np.zeros_like(params["b"])}
    A = manual_cnn.forward(params, data.X)[0]  # (n, C, s', s')
    moved = {"K": 2 * step * np.maximum(1.0, np.abs(K)), "c": 2 * step * np.maximum(1.0, np.abs(c)), **zero_head}
    terms = K[0].size + data.n + params["W"].size
    u32 = np.finfo(np.float32).eps / 2
    rounded = {"K": np.abs(K) * terms * u32 / (1 - terms * u32), "c": np.abs(c) * terms * u32 / (1 - terms * u32)}
    reach = 2.0 * np.maximum(manual_cnn.forward(moved, X)[0], manual_cnn.forward({**rounded, **zero_head}, X)[0])
    if not np.all(np.abs(A) > reach) or not _uncertain(manual_cnn.forward(params, data.X)[-1], data.Y):
        return False
    H = np.maximum(A, 0.0)  # (n, C, s', s')
    h = H.shape[2] // 2
    windows = H[:, :, : 2 * h, : 2 * h].reshape(H.shape[0], H.shape[1], h, 2, h, 2)  # (n, C, h, 2, w, 2)
    windows = np.moveaxis(windows, 3, 4).reshape(H.shape[0], H.shape[1], h, h, 4)  # (n, C, h, w, 4)
    width = np.max(reach[:, :, : 2 * h, : 2 * h])
    top2 = np.sort(windows, axis=-1)[..., -2:]  # (n, C, h, w, 2) the runner-up and the largest
    return bool(np.all((top2[..., 1] == 0.0) | (top2[..., 1] - top2[..., 0] > 2.0 * width)))


def _bars(n: int, seed: int) -> Dataset:
    """n images of 6x6 pixels: a horizontal bar (class 0), a vertical bar (1) or a wrapped diagonal (2) at a
    random place, over uniform noise in [0, 0.3); a quarter held out."""
    if n < 4:
        raise DataError(f"synthetic data needs n >= 4 (a quarter is held out); got {n}")
    rng = np.random.default_rng(seed)
    s = 6
    Y = rng.permutation(np.arange(n) % 3).astype(np.int64)  # (n,) every class, when n >= 3
    at = rng.integers(0, s, size=n)[:, None, None]  # (n, 1, 1) the bar's row, column or diagonal
    row, col = np.arange(s)[None, :, None], np.arange(s)[None, None, :]  # (1, s, 1), (1, 1, s)
    bar = np.where(Y[:, None, None] == 0, row == at, np.where(Y[:, None, None] == 1, col == at, (col - row) % s == at))
    X = np.maximum(rng.random((n, s, s)) * 0.3, bar).reshape(n, s * s)  # (n, 36)
    test = rng.permutation(n)[: max(1, round(n / 4))]
    held = np.zeros(n, dtype=bool)
    held[test] = True
    name = f"synthetic bars(n={n}, seed={seed})"
    held_out = Dataset(X[held], Y[held], name=f"{name} (held out)", y_name="class")
    return Dataset(X[~held], Y[~held], name=name, y_name="class", test=held_out)


def cnn(channels: int = 8, kernel: int = 3) -> Model:
    """conv2d with `channels` kernels of `kernel` x `kernel` pixels, relu, 2x2 max-pool, linear, softmax."""
    validate.whole(channels, "channels")
    validate.whole(kernel, "kernel")
    C, kh = int(channels), int(kernel)
    return Model(
        name="cnn",
        family="cnn",
        manual=bind(manual_cnn),
        autograd=bind(autograd_cnn),
        tape=bind(tape_cnn),
        description=(
            f"convolutional network: {C} kernels of {kh}x{kh} (padding {kh // 2}), relu, 2x2 max-pool, "
            "linear, softmax output, mean cross-entropy"
        ),
        param_shapes=functools.partial(_cnn_shapes, channels=C, kernel=kh),
        default_data=_default_digits,
        random_data=_random_images,
        task="classification",
        loss_name="mean cross-entropy",
        default_lr=0.5,  # 1.0 spikes once (loss 0.12 -> 0.42 near step 150) before it settles; 2.0 diverges
        default_iterations=150,
        init=_cnn_init,
        synthetic=_bars,
        options={"channels": C, "kernel": kh},
        first_layer=None,
        x_ndim=2,
        scales="autograd",
        check_points=LAYERED_CHECK_POINTS,
        admissible=_cnn_admissible,
    )


# the data `check` draws: the block then takes width 4 (at 2, layer norm gives +-1 up to eps, and its backward
# reaches its tiny gradient by a cancellation the derived step tolerances do not see, as the layer's tests note)
_TRANSFORMER_RANDOM = "random sequences"


def _transformer_shapes(data: Dataset, width: int, final_norm: bool) -> dict[str, tuple[int, ...]]:
    """Etok (V, d), Epos (T, d), the block's (d,), (d, d), (d, 4d), (4d, d) weights, Wout (d, V); T: X's columns."""
    V, T = _charmlp_vocabulary(data), int(data.X.shape[1])
    d = 4 if data.name == _TRANSFORMER_RANDOM else width
    norm = {"gammaf": (d,), "betaf": (d,)} if final_norm else {}
    return {
        "Etok": (V, d), "Epos": (T, d), "gamma1": (d,), "beta1": (d,),
        "Wq": (d, d), "Wk": (d, d), "Wv": (d, d), "Wo": (d, d), "gamma2": (d,), "beta2": (d,),
        "W1": (d, 4 * d), "b1": (4 * d,), "W2": (4 * d, d), "b2": (d,), **norm, "Wout": (d, V), "bout": (V,),
    }  # fmt: skip


def _transformer_init(shapes: dict[str, tuple[int, ...]], rng: np.random.Generator) -> Params:
    """Etok, Epos ~ N(0, 1); every weight matrix ~ N(0, 1/fan_in), Wout a tenth of that; gammas 1; betas, biases 0.

    A small Wout starts the logits near 0 (the first loss near log V), which plain gradient descent at lr 1
    takes to a lower held-out loss in the same steps (2.39 against 2.47 at the last position of the names).
    """
    out: Params = {}
    for name, shape in shapes.items():
        if name in ("Etok", "Epos"):
            out[name] = rng.standard_normal(shape)
        elif name == "Wout":
            out[name] = 0.1 * rng.standard_normal(shape) / np.sqrt(shape[0])
        elif len(shape) == 2:
            out[name] = rng.standard_normal(shape) / np.sqrt(shape[0])
        else:
            out[name] = np.ones(shape) if name.startswith("gamma") else np.zeros(shape)
    return out


def _random_sequences(rng: np.random.Generator) -> Dataset:
    """2 to 4 windows of 3 indices over V in [2, 5]: the block then has d = 4, at most 293 weights."""
    n, V = int(rng.integers(2, 5)), int(rng.integers(2, 6))
    X = rng.integers(0, V, size=(n, 3)).astype(np.float64)  # (n, 3)
    Y = rng.integers(0, V, size=n).astype(np.int64)  # (n,)
    Y[0] = V - 1  # so the data name all V characters (the parameter shapes are read from them)
    return Dataset(X, Y, _TRANSFORMER_RANDOM, "previous 3 characters", "next character")


def _transformer_admissible(params: Params, data: Dataset) -> bool:
    """Finite differences are valid here: no relu pre-activation U within reach of the kink at 0.

    A central difference moves one parameter element by up to 2 steps u^(1/3) * max(1, |p|) (float64); its
    reach on U is measured by moving each element so, one at a time; a float32 U may lie gamma(terms) *
    (|N2| @ |W1| + |b1|) from the exact one. Twice the larger reach must stay clear of 0.
    """
    step = (np.finfo(np.float64).eps / 2) ** (1.0 / 3.0)
    fw = manual_transformer.forward(params, data.X)  # every intermediate
    reach = np.zeros_like(fw["U"])
    for name, p in params.items():
        for idx in np.ndindex(p.shape):
            moved = {**params, name: p.copy()}
            moved[name][idx] += 2 * step * max(1.0, abs(float(p[idx])))
            reach = np.maximum(reach, np.abs(manual_transformer.forward(moved, data.X)["U"] - fw["U"]))
    terms = data.n * data.X.shape[1] + params["W1"].size
    u32 = np.finfo(np.float32).eps / 2
    rounded = terms * u32 / (1 - terms * u32) * (np.abs(fw["N2"]) @ np.abs(params["W1"]) + np.abs(params["b1"]))
    return bool(np.all(np.abs(fw["U"]) > 2.0 * np.maximum(reach, rounded)))


def _repeats(n: int, seed: int, context: int = 8, vocabulary: int = 6, period: int = 3) -> Dataset:
    """n windows of `context` characters that repeat their first `period` (drawn from 1..V-1) over and over;
    Y the next one. From position period - 1 on, the character to come is the one `period` - 1 back: a
    look-up the causal attention must learn. A quarter of the windows held out."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 4:
        raise DataError(f"synthetic data needs n >= 4 windows (a quarter is held out); got {n!r}")
    rng = np.random.default_rng(seed)
    head = rng.integers(1, vocabulary, size=(n, period))  # (n, period)
    seq = np.tile(head, (1, context // period + 2))[:, : context + 1]  # (n, context + 1)
    X, Y = seq[:, :context].astype(np.float64), seq[:, context].astype(np.int64)  # (n, context), (n,)
    names = tuple("." + "abcdefghijklmnopqrstuvwxyz"[: vocabulary - 1])
    held = np.zeros(n, dtype=bool)
    held[rng.permutation(n)[: max(1, round(n / 4))]] = True
    label = f"synthetic repeats(n={n}, seed={seed})"
    x_name = f"previous {context} characters"
    test = Dataset(X[held], Y[held], f"{label} (held out)", x_name, "next character", class_names=names)
    return Dataset(X[~held], Y[~held], label, x_name, "next character", test=test, class_names=names)


def _transformer_names(standardized: bool = True, context: int = 8, names: int = 400) -> Dataset:
    """The first-names corpus as windows of `context` characters (never standardized): the windows of the first
    `names` training names (full-batch steps stay quick on one core), the whole held-out fifth as the test."""
    data = _default_names(standardized, context=context)
    ends = np.flatnonzero(data.Y == 0)  # (names,) the row of each name's last window: its end marker is next
    kept = min(names, ends.size)
    rows = int(ends[kept - 1]) + 1
    return Dataset(data.X[:rows], data.Y[:rows], f"names (first {kept} of {ends.size})", data.x_name, data.y_name,
                   test=data.test, class_names=data.class_names)  # fmt: skip


def transformer(context: int = 8, width: int = 16, final_norm: bool = True) -> Model:
    """One pre-LN transformer block over windows of `context` characters, `width` numbers a position."""
    validate.whole(context, "context")
    validate.whole(width, "width")
    t, d, f = int(context), int(width), bool(final_norm)
    return Model(
        name="transformer",
        family="transformer",
        manual=bind(manual_transformer),
        autograd=bind(autograd_transformer),
        tape=bind(tape_transformer),
        description=(
            f"one pre-LN transformer block: {t} characters embedded in {d} with positions, causal self-attention, "
            f"MLP of {4 * d} relu units, {'final layer norm, ' if f else ''}next-character softmax at every position"
        ),
        param_shapes=functools.partial(_transformer_shapes, width=d, final_norm=f),
        default_data=functools.partial(_transformer_names, context=t),
        random_data=_random_sequences,
        task="classification",
        loss_name="mean cross-entropy",
        default_lr=1.0,
        default_iterations=200,
        init=_transformer_init,
        synthetic=functools.partial(_repeats, context=t),
        options={"context": t, "width": d, "final_norm": f},
        first_layer=None,
        x_ndim=2,
        scales="autograd",
        admissible=_transformer_admissible,
        check_points=LAYERED_CHECK_POINTS,
    )


MODELS: dict[str, Model] = {
    "linear1d": Model(
        name="linear1d",
        family="linear1d",
        manual=manual_linear1d,
        autograd=autograd_linear1d,
        tape=tape_linear1d,
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
        tape=tape_linear,
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
        tape=tape_logistic,
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
        tape=tape_softmax,
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
        right_factors=("W",),
    ),
    "mlp": mlp(activation="tanh"),
    "mlp-relu": mlp(activation="relu"),
    "mlp-sigmoid": mlp(activation="sigmoid"),
    "cnn": cnn(),
    "charmlp": charmlp(),
    "transformer": transformer(),
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

"""Gradient parity of a built-in model's twins at given or random points, refereed by finite differences."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import numpy as np

from gradtwin.autodiff import Tensor, no_grad
from gradtwin.data import Dataset
from gradtwin.errors import UsageError
from gradtwin.manual.mlp import forward
from gradtwin.models import Model
from gradtwin.parity.compare import ParamCheck
from gradtwin.parity.finite_diff import fd_step
from gradtwin.parity.gradcheck import check_gradients
from gradtwin.parity.rounding import ROUNDING_OPS, gamma
from gradtwin.parity.scales import SCALES, rounding_terms, scales_for

Params = dict[str, np.ndarray]


# the parameters' scale for the models whose rounding scales autograd derives: from 0.3 to 2, where no tanh or
# softmax saturates. There 1 - H^2 and P - 1 round to tiny differences of numbers near 1, whose rounding the
# sensitivities to the inputs (`parity.autograd_scales`) do not see; the hand-written scales do.
DERIVED_SCALES = (-0.5, 0.3)


def random_problem(model: Model, rng: np.random.Generator) -> tuple[Params, Dataset]:
    """A random data set of `model`'s kind and standard-normal parameters at a random scale.

    The scale is 10^U(-2, 2), or `DERIVED_SCALES` for a model whose scales autograd derives.
    Redrawn (at most 1,000 times) until finite differences are valid there: for the relu mlp,
    no pre-activation within reach of the kink; for another model, its own `admissible` test.
    """
    admissible = _away_from_relu_kink if model.options.get("activation") == "relu" else model.admissible
    for _ in range(1000):
        data = model.random_data(rng)
        scale = 10.0 ** (rng.uniform(-2, 2) if model.scales == "hand" else rng.uniform(*DERIVED_SCALES))
        shapes = model.param_shapes(data)
        params = {k: scale * np.asarray(rng.standard_normal(shape)) for k, shape in shapes.items()}
        if admissible is None or admissible(params, data):
            return params, data
    raise RuntimeError(f"{model.name}: no admissible random problem in 1,000 draws")


def _away_from_relu_kink(params: Params, data: Dataset) -> bool:
    """No pre-activation A_ij within reach of relu's kink at 0, so finite differences are valid.

    A central difference moves W1_lj by up to 2 steps (its Richardson estimate uses D(2h)),
    which moves A_ij by |X_il| times that, and b1_j moves A_ij by its own 2 steps; a float32
    A_ij may also lie gamma(K) * (|X| @ |W1| + |b1|)_ij from the exact one. Twice the larger
    reach must stay clear, so neither a step nor rounding can cross the kink.
    """
    X, W1, b1 = data.X, params["W1"], params["b1"]
    A = forward(params, X)[0]  # (n, h) the pre-activations
    step_reach = np.max(np.abs(X)[:, :, None] * (2.0 * fd_step(W1))[None], axis=1)  # (n, h)
    step_reach = np.maximum(step_reach, 2.0 * fd_step(b1))  # (n, h)
    terms = data.n + X.shape[1] + W1.shape[1] + 2 * params["W2"].shape[1]
    round_reach = gamma(terms + ROUNDING_OPS, np.float32) * (np.abs(X) @ np.abs(W1) + np.abs(b1))  # (n, h)
    return bool(np.all(np.abs(A) > 2.0 * np.maximum(step_reach, round_reach)))


def _weighted(fn: Any) -> Any:
    """`fn(params, X, Y, weight=V)` called as fn(params, X, Y, V): the checker passes data positionally."""
    return lambda params, X, Y, V: fn(params, X, Y, weight=V)


def check_point(
    model: Model,
    params: dict[str, np.ndarray],
    data: Dataset,
    dtype: str = "float64",
    device: str = "cpu",
    point: int = 0,
    manual_module: Any = None,
    label: str = "manual",
) -> list[ParamCheck]:
    """Compare the twins' loss and gradients at one point, forward first, then each parameter.

    The built-in model is one more user of `gradcheck.check_gradients`, with the model's own
    rounding scales (`parity.scales`: sum|terms|, exact for its sums) and K its longest sum:
    - manual vs autograd in `dtype`: each within gamma(K) * scale of the exact value, so
      they may differ by twice that;
    - in float32, each twin against autograd in float64 (the float32 bound plus the float64 one);
    - the manual twin and autograd in float64 against central finite differences in float64.
    `manual_module` replaces the model's manual twin (to plant a bug and see it caught, or to check
    the tape twin, `tape_as_hand`), and `label` names it in the report.
    Sample weights (`data.weight`) go to every function as a fourth data array.
    """
    twin = manual_module if manual_module is not None else model.manual
    if model.family not in SCALES and model.scales == "hand":  # a registered model of your own: see check --file
        raise UsageError(f"check --model checks the built-in models' twins; check {model.name} with check --file")
    scales = scales_for(model)
    functions = (twin.gradients, model.autograd.loss, twin.loss, scales.gradient_scale, scales.loss_scale)
    arrays: tuple[np.ndarray, ...] = (data.X, data.Y)
    if data.weight is not None:
        functions = tuple(_weighted(f) for f in functions)
        arrays = (data.X, data.Y, data.weight)
    gradients, torch_loss, manual_loss, scale, loss_scale = functions
    report = check_gradients(
        gradients,
        torch_loss,
        params,
        arrays,
        dtype=dtype,
        device=device,
        manual_loss=manual_loss,
        scale=scale,
        loss_scale=loss_scale,
        n_terms=rounding_terms(model, data.X, params, data.weight),
        manual_array="numpy" if device == "cpu" else "torch",
        label=label,
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
    weighted: bool = False,
    label: str = "manual",
    progress: Callable[[int], None] | None = None,
) -> list[ParamCheck]:
    """`check_point` at `points` random problems (`random_problem`); with `weighted`, random weights too.

    `progress(1)` is called after each point.
    """
    rng = np.random.default_rng(seed)
    checks: list[ParamCheck] = []
    for point in range(points):
        params, data = random_problem(model, rng)
        if weighted:
            data = random_weights(data, rng)
        checks += check_point(model, params, data, dtype, device, point, manual_module, label)
        if progress is not None:
            progress(1)
    return checks


def tape_as_hand(model: Model) -> SimpleNamespace:
    """`model`'s tape twin as the checker calls a hand twin: NumPy arrays in, NumPy arrays out."""
    tape = model.tape
    if tape is None:
        raise UsageError(f"{model.name} has no tape twin; the models with one: see `gradtwin list`")

    def loss(params: Params, X: Any, Y: Any, **weight: Any) -> np.ndarray:
        with no_grad():
            return np.asarray(tape.loss({k: Tensor(v) for k, v in params.items()}, X, Y, **weight).data)

    return SimpleNamespace(gradients=tape.gradients, loss=loss)


def random_weights(data: Dataset, rng: np.random.Generator) -> Dataset:
    """`data` with integer weights 0..3 (zeros drop samples) or real ones over six orders of magnitude."""
    if rng.random() < 0.5:
        weight = rng.integers(0, 4, size=data.n).astype(np.float64)  # (n,)
    else:
        weight = 10.0 ** rng.uniform(-3, 3, size=data.n)  # (n,)
    weight[rng.integers(data.n)] = 1.0  # never all zero
    return Dataset(data.X, data.Y, data.name, data.x_name, data.y_name, weight)

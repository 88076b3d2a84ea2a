"""Each model's rounding scale bounded from below and from above by a brute-force sum of |terms|.

A gradient g_j = sum_i c_i dL_i/dtheta_j (c_i = 1/n, or v_i / sum v with weights) is a sum of
per-row terms, and `parity.scales.gradient_scale` must cover them: scale >= sum_i c_i |dL_i/dtheta_j|
(else the tolerance could miss real rounding). It must not be loose either: a scale n times too
large (a lost 1/n) would pass an n times larger error. The brute force here loops over the rows
with autograd in float64, independent of the hand-written scales.

At "sign-aligned" points (X, w, b >= 0 and Y <= 0) no residual can cancel, so for the linear
models the scale *is* the sum of |terms|. The classifiers' scales also carry the error of their
logits and of exp, so they sit a model-specific factor above it; the caps below are the measured
worst factors (scripts in the commit message: linear 1.0, logistic 1.27, softmax 4.6 elementwise;
the mlp's summed factor 53 for tanh and relu, 228 for sigmoid) with headroom, each far below the
factor n = 200 a lost 1/n would add.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import TABULAR
from gradtwin.data import Dataset
from gradtwin.models import MODELS, Model
from gradtwin.parity.scales import derived, gradient_scale, loss_scale

N = 200
# (elementwise cap, summed cap) on scale / brute force; None: that form is not bounded for the model
CAPS: dict[str, tuple[float | None, float]] = {
    "linear1d": (1.0 + 1e-12, 1.0 + 1e-12),
    "linear": (1.0 + 1e-12, 1.0 + 1e-12),
    "logistic": (2.0, 2.0),
    "softmax": (8.0, 8.0),
    # inside dH = dZ @ W2.T the per-row terms cancel (each row of dZ sums to 0), so single elements of
    # the brute force can be tiny; the mlp is bounded in sum over each parameter's elements
    "mlp": (None, 120.0),
    "mlp-relu": (None, 120.0),
    "mlp-sigmoid": (None, 500.0),
}


def _aligned(model: Model, rng: np.random.Generator, weighted: bool) -> tuple[dict[str, np.ndarray], Dataset]:
    """n = 200 rows of 3 features in [0.5, 1], parameters in [0.05, 0.1], targets <= 0; signed mlp output layer."""
    X = rng.uniform(0.5, 1.0, (N, 3))  # (n, d)
    if model.x_ndim == 1:
        X = X[:, 0]
    if model.task == "regression":
        Y = -rng.uniform(0.5, 1.0, N)
    else:
        k = 2 if model.name == "logistic" else 3
        Y = rng.integers(0, k, N).astype(np.int64)
        Y[0] = k - 1
    data = Dataset(X, Y, "aligned", weight=rng.uniform(0.5, 2.0, N) if weighted else None)
    params = {name: 0.1 * rng.uniform(0.5, 1.0, shape) for name, shape in model.param_shapes(data).items()}
    if model.family == "mlp":  # an output layer of one sign would make every hidden gradient cancel
        params["W2"] = rng.standard_normal(params["W2"].shape)
        params["b2"] = rng.standard_normal(params["b2"].shape)
    return params, data


def _brute_force(model: Model, params: dict[str, np.ndarray], data: Dataset) -> tuple[dict[str, np.ndarray], float]:
    """(sum_i c_i |dL_i/dtheta| for each parameter, sum_i c_i |L_i|), one row at a time in float64."""
    c = np.full(data.n, 1.0 / data.n) if data.weight is None else data.weight / np.sum(data.weight)  # (n,)
    grads = {k: np.zeros(np.shape(v)) for k, v in params.items()}
    loss = 0.0
    for i in range(data.n):
        p = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in params.items()}
        value = model.autograd.loss(p, torch.tensor(data.X[i : i + 1]), torch.tensor(data.Y[i : i + 1]))
        for (k, _), g in zip(p.items(), torch.autograd.grad(value, list(p.values())), strict=True):
            grads[k] += c[i] * np.abs(g.numpy())
        loss += c[i] * abs(float(value.detach()))
    return grads, loss


CASES = [(name, weighted) for name in TABULAR for weighted in (False, True) if MODELS[name].weights or not weighted]


@pytest.mark.parametrize(("name", "weighted"), CASES, ids=[f"{n}-{'weighted' if w else 'plain'}" for n, w in CASES])
def test_the_scale_covers_the_terms_and_is_not_loose(name: str, weighted: bool) -> None:
    model = MODELS[name]
    element_cap, sum_cap = CAPS[name]
    rng = np.random.default_rng(4)
    for _ in range(2):
        params, data = _aligned(model, rng, weighted)
        brute, brute_loss = _brute_force(model, params, data)
        scale = gradient_scale(model, params, data.X, data.Y, data.weight)
        for k in params:
            ratio = np.asarray(scale[k], dtype=np.float64) / brute[k]
            assert np.all(ratio >= 1.0 - 1e-12), f"{name}: scale of {k} below the sum of its terms ({ratio.min():.3g})"
            if element_cap is not None:
                assert np.all(ratio <= element_cap), f"{name}: scale of {k} {ratio.max():.3g} x the terms"
            summed = float(np.sum(scale[k]) / np.sum(brute[k]))
            assert summed <= sum_cap, f"{name}: summed scale of {k} {summed:.3g} x the terms"
            # the caps would see a lost 1/n: the smallest bounded ratio times n is above its cap
            assert data.n * summed > sum_cap
            assert element_cap is None or data.n * float(ratio.min()) > element_cap
        loss_ratio = float(loss_scale(model, params, data.X, data.Y, data.weight)) / brute_loss
        assert 1.0 - 1e-12 <= loss_ratio <= max(sum_cap, 20.0), f"{name}: loss scale {loss_ratio:.3g} x its terms"


@pytest.mark.parametrize("name", TABULAR)
def test_the_scale_derived_from_autograd_covers_the_terms(name: str) -> None:
    """The scales the layered models get (`scales.derived`: the Jacobian over the inputs and every tapped value,
    plus the terms of the sum over rows), applied to the models whose terms are known, cover them, and sit
    within DERIVED_CAP of the hand-written scale (summed over each parameter): measured 0.34 (softmax) to 4.5
    (linear) and up to 54 for the mlp (its b2), whose sensitivities count every hidden unit's rounding at
    full weight; below the factor n = 200 a lost 1/n would add."""
    model = MODELS[name]
    rng = np.random.default_rng(5)
    params, data = _aligned(model, rng, weighted=False)
    brute, _ = _brute_force(model, params, data)
    scale = derived.gradient_scale(params, data.X, data.Y, loss=model.autograd.loss)
    hand = gradient_scale(model, params, data.X, data.Y)
    for k in params:
        ratio = np.asarray(scale[k]) / brute[k]
        assert np.all(ratio >= 1.0 - 1e-12), (
            f"{name}: derived scale of {k} below the sum of its terms ({ratio.min():.3g})"
        )
        summed = float(np.sum(scale[k]) / np.sum(hand[k]))
        assert summed < DERIVED_CAP, f"{name}: derived scale of {k} {summed:.3g} x the hand-written one"


DERIVED_CAP = 100.0

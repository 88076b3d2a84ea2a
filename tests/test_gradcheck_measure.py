"""The checker measured: no false failure on correct gradients, every planted bug caught.

Hypothesis draws the model, the sizes, the scales of data and parameters (10^-3 to 10^3) and
whether the point is the optimum (gradients at rounding level). CI runs GRADTWIN_EXAMPLES
examples per property (default 150); comparisons/gradcheck_measure.py runs 10,000 per dtype
and commits the counts.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import gradcheck_cases as cases
from conftest import DTYPES
from gradtwin.parity.autograd_scales import autograd_scales
from gradtwin.parity.gradcheck import autograd_gradients, check_gradients
from gradtwin.parity.rounding import tolerance
from gradtwin.parity.sketch import sketch_scales

EXAMPLES = int(os.environ.get("GRADTWIN_EXAMPLES", "150"))
METHODS = ("exhaustive", "sampled")  # every drawn case is small: "auto" would pick exhaustive


SETTINGS = settings(
    max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck), derandomize=True
)

correct_problems = st.fixed_dictionaries(
    {
        "model": st.sampled_from(sorted(cases.MODELS)),
        "seed": st.integers(0, 2**31 - 1),
        "n": st.integers(1, 64),
        "d": st.integers(1, 4),
        "x_exp": st.floats(-3, 3),
        "p_exp": st.floats(-3, 3),
        "at_optimum": st.booleans(),
        "noiseless": st.booleans(),
    }
)

BUGS = ("sign", "2", "1/2", "n", "1/n", "one_wrong", "transposed")
bug_problems = st.fixed_dictionaries(
    {
        "model": st.sampled_from(sorted(cases.MODELS)),
        "bug": st.sampled_from(BUGS),
        "seed": st.integers(0, 2**31 - 1),
        "n": st.integers(3, 64),
        "d": st.integers(1, 4),
        "x_exp": st.floats(-1, 1),
        "p_exp": st.floats(-1, 1),
    }
)


def run_correct(case: dict[str, Any], dtype: str, method: str = "auto") -> bool:
    """True when the checker passes a correct hand gradient (as it must); False is a false failure."""
    model = cases.MODELS[case["model"]]
    params, data = cases.problem(**{k: v for k, v in case.items() if k != "model"}, model=case["model"])
    return check_gradients(model.grad, model.loss, params, data, dtype=dtype, method=method).ok


def planted(case: dict[str, Any]) -> tuple[Any, Any, dict[str, np.ndarray], Any] | None:
    """(bugged gradient, loss, params, data), or None if the bug does not apply to this model."""
    model = cases.MODELS[case["model"]]
    params, data = cases.problem(case["model"], case["seed"], case["n"], case["d"], case["x_exp"], case["p_exp"],
                                 at_optimum=False, noiseless=False)  # fmt: skip
    bug = case["bug"]
    if bug == "transposed":
        matrices = [k for k, v in params.items() if v.ndim == 2]
        if not matrices:
            return None
        return cases.transposed(model.grad, matrices[0]), model.loss, params, data
    if bug == "one_wrong":
        return cases.one_wrong(model.grad, sorted(params)[-1]), model.loss, params, data
    factor = {"sign": -1.0, "2": 2.0, "1/2": 0.5}.get(bug, bug)
    return cases.scaled(model.grad, factor), model.loss, params, data


def run_bug(case: dict[str, Any], dtype: str, method: str = "auto") -> bool | None:
    """True when the checker catches the planted bug; None when no checker could.

    None: the bug does not apply to the model (no matrix to transpose), or it moves no element
    of the gradient by more than 2 * gamma_dtype(K) * S, the rounding of a correct computation
    (a factor 2 on a gradient that is itself rounding noise); S is the method's own: the
    Jacobian's for the exhaustive method, the Cauchy sketch's for the sampled one.
    """
    made = planted(case)
    if made is None:
        return None
    bugged, loss, params, data = made
    true = cases.MODELS[case["model"]].grad(params, *data)
    wrong = bugged(params, *data)
    K = sum(np.size(x) for x in data) + sum(np.size(v) for v in params.values())
    scale, _ = autograd_scales(loss, params, data, K)
    if method == "sampled":
        g0 = autograd_gradients(loss, params, data, "float64", torch.device("cpu"))[1]
        sketch = sketch_scales(lambda p, d: autograd_gradients(loss, p, d, "float64", torch.device("cpu"))[1],
                               params, data, g0)  # fmt: skip
        scale = {k: np.maximum(sketch[k], np.abs(g0[k])) for k in scale}
    visible = False
    for k in true:
        if np.shape(wrong[k]) != np.shape(true[k]):
            visible = True  # returned with the shape reversed: always a mistake
            continue
        visible |= bool(np.any(np.abs(np.asarray(wrong[k]) - true[k]) > 2 * tolerance(dtype, K, scale[k])))
    if not visible:
        return None
    return not check_gradients(bugged, loss, params, data, dtype=dtype, method=method).ok


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_no_false_failures(dtype: str, method: str) -> None:
    @SETTINGS
    @given(correct_problems)
    def prop(case: dict[str, Any]) -> None:
        assert run_correct(case, dtype, method), f"false failure on {case}"

    prop()


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_every_planted_bug_caught(dtype: str, method: str) -> None:
    @settings(SETTINGS, max_examples=max(EXAMPLES // 2, 20))
    @given(bug_problems)
    def prop(case: dict[str, Any]) -> None:
        caught = run_bug(case, dtype, method)
        assume(caught is not None)
        assert caught, f"missed planted bug {case}"

    prop()

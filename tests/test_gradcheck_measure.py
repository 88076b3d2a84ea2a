"""The checker measured: no false failure on correct gradients, every planted bug caught.

Hypothesis draws the model, the sizes, the scales of data and parameters (10^-3 to 10^3) and
whether the point is the optimum (gradients at rounding level). CI runs GRADTWIN_EXAMPLES
examples per property (default 150; a fifth of that in float16 and bfloat16) and a handful of
large cases (10^4 and 10^5 parameters); comparisons/gradcheck_measure.py runs 10,000 per dtype
and method, and the large cases up to 10^6 parameters over several seeds, and commits the counts.

A planted bug is applicable when it moves some element by more than the tolerance of a check
that compares it, as the checker computed that tolerance in that very run (`observed`):
  - in the checked dtype: hand vs autograd (2 gamma S) or hand vs float64 (gamma S + gamma_64 S),
    every element;
  - in float64 (the hand code run again in float64): vs finite differences (their error bound
    plus gamma_64 S) at the elements differenced (all of them, or the sampled method's sample),
    and, in the sampled method, the move projected on the random direction against that check's
    tolerance.
Below every one of these no check can tell the bug from rounding: it does not apply (n/a).
In float16 and bfloat16 a case the checker refuses (a loss beyond the dtype's range) or whose
gradient in the dtype is not finite (overflow: no dtype-sized answer exists) is counted apart.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from unittest import mock

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import gradcheck_cases as cases
from conftest import DTYPES
from gradtwin.errors import UsageError
from gradtwin.parity import gradcheck
from gradtwin.parity.gradcheck import check_gradients
from gradtwin.parity.rounding import ROUNDING_OPS, rounding_bound

EXAMPLES = int(os.environ.get("GRADTWIN_EXAMPLES", "150"))
METHODS = ("exhaustive", "sampled")  # every drawn case is small: "auto" would pick exhaustive
HALF = ("float16", "bfloat16")


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


# ---- observing one run: the tolerances it used and each element's planted move --------------


@dataclass
class Observed:
    """What one check compared: (comparison, param, a, b, tol, where) as computed, and its directions."""

    checks: list[tuple[str, str, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]] = field(default_factory=list)
    directions: list[dict[str, np.ndarray]] = field(default_factory=list)


@contextlib.contextmanager
def observed() -> Iterator[Observed]:
    """Record every comparison check_gradients makes (its arrays and per-element tolerances) and
    the random direction of its directional check; the check itself runs unchanged."""
    seen = Observed()
    compare, directional = gradcheck.compare, gradcheck.directional

    def recording_compare(comparison: str, name: str, a: Any, b: Any, tol: Any, **kw: Any) -> Any:
        a64 = np.array(a, dtype=np.float64)
        tol64 = np.array(np.broadcast_to(np.asarray(tol, dtype=np.float64), a64.shape))
        where = kw.get("where")
        seen.checks.append((comparison, name, a64, np.array(b, dtype=np.float64), tol64,
                            None if where is None else np.array(where)))  # fmt: skip
        return compare(comparison, name, a, b, tol, **kw)

    def recording_directional(loss: Any, params: Any, direction: dict[str, np.ndarray], error: float) -> Any:
        seen.directions.append({k: np.array(v) for k, v in direction.items()})
        return directional(loss, params, direction, error)

    with (
        mock.patch.object(gradcheck, "compare", recording_compare),
        mock.patch.object(gradcheck, "directional", recording_directional),
    ):
        yield seen


def _float64(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().to(torch.float64).numpy()
    return np.asarray(x, dtype=np.float64)


def _dtype_of(params: dict[str, Any]) -> str:
    v = next(iter(params.values()))
    return str(v.dtype).removeprefix("torch.") if isinstance(v, torch.Tensor) else np.asarray(v).dtype.name


class Planted:
    """A hand gradient (bugged, or correct when `bugged` is None) that also runs the correct one on
    the same inputs, so each element's planted move is known exactly in each dtype asked for.

    moves[dtype][name] = bugged - correct (None where the bug changed the shape);
    finite[dtype]: the correct gradient in that dtype has no inf or NaN.
    """

    def __init__(self, correct: Callable[..., Any], bugged: Callable[..., Any] | None = None) -> None:
        self.correct, self.bugged = correct, bugged
        self.moves: dict[str, dict[str, np.ndarray | None]] = {}
        self.finite: dict[str, bool] = {}

    def __call__(self, params: dict[str, Any], *data: Any) -> Any:
        right = self.correct(params, *data)
        dtype = _dtype_of(params)
        self.finite[dtype] = all(bool(np.all(np.isfinite(_float64(v)))) for v in right.values())
        if self.bugged is None:
            return right
        wrong = self.bugged(params, *data)
        self.moves[dtype] = {
            k: _float64(wrong[k]) - _float64(right[k]) if np.shape(wrong[k]) == np.shape(right[k]) else None
            for k in right
        }
        return wrong


def visible(seen: Observed, moves: dict[str, dict[str, np.ndarray | None]], dtype: str) -> tuple[set[str], float]:
    """Which legs ('dtype', 'float64', 'shape') see the planted move beyond their tolerance, and
    the largest move / tolerance over the checks of the hand gradient."""
    legs: set[str] = set()
    ratio = 0.0
    for comparison, name, _a, _b, tol, where in seen.checks:
        if not comparison.startswith("hand "):
            continue
        in64 = "float64 vs finite diff" in comparison
        step = moves["float64" if in64 else dtype]
        if name == "all":  # the directional check: the move projected on its direction
            d = seen.directions[-1]
            move = np.asarray(abs(sum(float(np.sum(d[k] * m)) for k, m in step.items() if m is not None)))
        elif step[name] is None:
            legs.add("shape")  # returned with the shape reversed: always a mistake
            continue
        else:
            move = np.abs(step[name])  # type: ignore[arg-type]
        with np.errstate(divide="ignore", invalid="ignore"):
            r = np.where(where if where is not None else True, move / np.maximum(tol, np.finfo(float).tiny), 0.0)
        r = np.nan_to_num(r, nan=0.0, posinf=np.finfo(float).max)
        if r.size and float(r.max()) > 1.0:
            legs.add("float64" if in64 else "dtype")
        ratio = max(ratio, float(r.max()) if r.size else 0.0)
    return legs, ratio


def meaningful(dtype: str, params: dict[str, Any], data: tuple[Any, ...]) -> bool:
    """2 gamma(K) < 1 in `dtype`, K as the checker counts it: below that a wrong gradient can be told."""
    size = sum(int(np.size(v)) for v in params.values())
    K = sum(int(np.size(x)) for x in data) + size
    return 2 * rounding_bound(dtype, K + ROUNDING_OPS, outputs=size + 1).gamma < 1.0


@dataclass(frozen=True)
class Outcome:
    """One case: right is True/False (the verdict right or wrong) or None (it does not apply).

    why: for None 'n/a', 'refused' or 'out of range'; for an applicable bug the legs that see it.
    caught: the check failed (for an n/a bug: it failed anyway). detail: the failing checks.
    """

    right: bool | None
    why: str = ""
    meaningful: bool = True
    caught: bool = False
    ratio: float = 0.0
    detail: str = ""


def _failing(report: gradcheck.GradientReport) -> str:
    return "; ".join(f"{c.name}: {c.comparison}" for c in report.checks() if not c.ok)


def judge(
    hand: Planted, loss: Any, params: dict[str, Any], data: Any, dtype: str, method: str, array: str, seed: int = 0
) -> Outcome:
    """Run the check of `hand` and judge its verdict (a correct gradient when hand.bugged is None)."""
    sense = meaningful(dtype, params, data)
    try:
        with observed() as seen:
            report = check_gradients(hand, loss, params, data, dtype=dtype, method=method, manual_array=array,
                                     seed=seed)  # fmt: skip
    except UsageError as e:
        if dtype in HALF:
            return Outcome(None, "refused", sense, detail=str(e))
        raise
    caught = not report.ok
    auto_finite = all(bool(np.all(np.isfinite(b))) for c, _, _, b, _, _ in seen.checks if c == "hand vs autograd")
    if dtype in HALF and not (hand.finite.get(dtype, True) and auto_finite):
        return Outcome(None, "out of range", sense, caught, detail=_failing(report))
    if hand.bugged is None:
        return Outcome(report.ok, "", sense, caught, detail=_failing(report))
    legs, ratio = visible(seen, hand.moves, dtype)
    if not legs:
        return Outcome(None, "n/a", sense, caught, ratio)
    return Outcome(caught, ",".join(sorted(legs)), sense, caught, ratio, _failing(report))


def judge_correct(case: dict[str, Any], dtype: str, method: str = "auto") -> Outcome:
    model = cases.MODELS[case["model"]]
    params, data = cases.problem(**{k: v for k, v in case.items() if k != "model"}, model=case["model"])
    grad, array = model.hand(dtype)
    return judge(Planted(grad), model.loss, params, data, dtype, method, array)


Made = tuple[Planted, Any, dict[str, np.ndarray], Any, str]


def planted(case: dict[str, Any], dtype: str = "float64") -> Made | None:
    """(bugged hand gradient, loss, params, data, manual_array), or None if the bug does not apply."""
    model = cases.MODELS[case["model"]]
    params, data = cases.problem(case["model"], case["seed"], case["n"], case["d"], case["x_exp"], case["p_exp"],
                                 at_optimum=False, noiseless=False)  # fmt: skip
    grad, array = model.hand(dtype)
    bug = case["bug"]
    if bug == "transposed":
        matrices = [k for k, v in params.items() if v.ndim == 2]
        if not matrices:
            return None
        bugged = cases.transposed(grad, matrices[0])
    elif bug == "one_wrong":
        bugged = cases.one_wrong(grad, sorted(params)[-1])
    else:
        bugged = cases.scaled(grad, {"sign": -1.0, "2": 2.0, "1/2": 0.5}.get(bug, bug))
    return Planted(grad, bugged), model.loss, params, data, array


def judge_bug(case: dict[str, Any], dtype: str, method: str = "auto") -> Outcome:
    made = planted(case, dtype)
    if made is None:
        return Outcome(None, "n/a")
    hand, loss, params, data, array = made
    return judge(hand, loss, params, data, dtype, method, array)


def run_correct(case: dict[str, Any], dtype: str, method: str = "auto") -> bool:
    """True when the checker passes a correct hand gradient (as it must); False is a false failure.
    In float16 and bfloat16 a refused or out-of-range case counts as passed (the outcome says which)."""
    return judge_correct(case, dtype, method).right is not False


def run_bug(case: dict[str, Any], dtype: str, method: str = "auto") -> bool | None:
    """True when the checker catches the planted bug; None when no check could (see the module doc)."""
    return judge_bug(case, dtype, method).right


def judge_large(model: str, size: str, dtype: str, seed: int, bug: str | None, method: str = "auto") -> tuple[
    Outcome, str
]:  # fmt: skip
    """A large case (cases.LARGE_SHAPES), correct (bug None) or with a planted bug; and where the bug is."""
    m = cases.LARGE_MODELS[model]
    params, data = cases.large_problem(model, size, seed)
    if bug is None:
        hand, where = Planted(m.grad), ""
    else:
        bugged, where = cases.large_bug(m.grad, bug, {k: v.shape for k, v in params.items()}, seed)
        hand = Planted(m.grad, bugged)
    return judge(hand, m.loss, params, data, dtype, method, "numpy", seed=seed), where


# ---- the properties --------------------------------------------------------------------------


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


HALF_EXAMPLES = max(EXAMPLES // 5, 10)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("dtype", HALF)
def test_half_precision_no_false_failures(dtype: str, method: str) -> None:
    @settings(SETTINGS, max_examples=HALF_EXAMPLES)
    @given(correct_problems)
    def prop(case: dict[str, Any]) -> None:
        outcome = judge_correct(case, dtype, method)
        assume(outcome.right is not None)  # refused, or beyond the dtype's range
        assert outcome.right, f"false failure on {case}: {outcome.detail}"

    prop()


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("dtype", HALF)
def test_half_precision_planted_bugs_caught(dtype: str, method: str) -> None:
    @settings(SETTINGS, max_examples=max(HALF_EXAMPLES // 2, 10))
    @given(bug_problems)
    def prop(case: dict[str, Any]) -> None:
        outcome = judge_bug(case, dtype, method)
        assume(outcome.right is not None)
        assert outcome.right, f"missed planted bug {case} (seen by {outcome.why}, move/tol {outcome.ratio:.3g})"

    prop()


# CI's share of the large cases: 10^4 parameters in both models and dtypes, 10^5 for the network.
LARGE_CI = [("tanh_mlp", "1e4", "float32"), ("tanh_mlp", "1e4", "float64"), ("softmax", "1e4", "float32"),
            ("softmax", "1e4", "float64"), ("tanh_mlp", "1e5", "float32")]  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize(("model", "size", "dtype"), LARGE_CI)
def test_large_correct_passes_and_planted_bugs_caught(model: str, size: str, dtype: str) -> None:
    outcome, _ = judge_large(model, size, dtype, seed=1, bug=None)
    assert outcome.right, f"false failure at {model} {size} {dtype}: {outcome.detail}"
    for bug in cases.LARGE_BUGS:
        outcome, where = judge_large(model, size, dtype, seed=1, bug=bug)
        assert outcome.right is not False, f"missed {bug} at {where} ({model} {size} {dtype}, {outcome.why})"


def test_observed_tolerances_are_the_reports() -> None:
    """The recorded per-element tolerances are those the report shows at its worst elements."""
    params, data = cases.large_problem("tanh_mlp", "1e4", 0)
    m = cases.LARGE_MODELS["tanh_mlp"]
    bugged, _ = cases.large_bug(m.grad, "element x2", {k: v.shape for k, v in params.items()}, 0)
    with observed() as seen:
        report = check_gradients(Planted(m.grad, bugged), m.loss, params, data, dtype="float32")
    recorded = {(c, n): (tol, a, b) for c, n, a, b, tol, _ in seen.checks}
    for check in report.checks():
        tol, a, b = recorded[(check.comparison, check.name)]
        i = check.worst_index
        assert math.isclose(float(tol[i]), check.tol) and float(a[i]) == check.a and float(b[i]) == check.b
    assert len(seen.directions) == 1 and set(seen.directions[0]) == set(params)

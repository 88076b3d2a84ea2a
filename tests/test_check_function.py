"""check_function on custom autograd.Functions: correct ones pass, planted bugs are caught, bad input is refused."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch.autograd.function import once_differentiable

import gradtwin
from conftest import DEVICES, DTYPES
from gradtwin.errors import UsageError

Bug = Callable[..., Any]


def tanh_function(bug: Bug = lambda gx: gx) -> Callable[..., Any]:
    """A hand-written tanh: dy/dx = 1 - y^2; `bug` rewrites the gradient it returns."""

    class Tanh(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
            y = torch.tanh(x)  # (n, d)
            ctx.save_for_backward(y)
            return y

        @staticmethod
        def backward(ctx: Any, g: torch.Tensor) -> torch.Tensor:
            (y,) = ctx.saved_tensors
            return bug(g * (1 - y * y))  # (n, d)

    return Tanh.apply


def product_function(bug: str | None = None) -> Callable[..., Any]:
    """(alpha x y, x^2 y): two inputs, two outputs, a number passed through.

    Chain::  dx = alpha g1 y + 2 g2 x y ;  dy = alpha g1 x + g2 x^2 ;  alpha gets None
    """

    class Product(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, x: torch.Tensor, y: torch.Tensor, alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
            ctx.save_for_backward(x, y)
            ctx.alpha = alpha
            return alpha * x * y, x * x * y

        @staticmethod
        def backward(ctx: Any, g1: torch.Tensor, g2: torch.Tensor) -> tuple[Any, ...]:
            x, y = ctx.saved_tensors
            two = 1.0 if bug == "lost factor 2" else 2.0
            dx = ctx.alpha * g1 * y + two * g2 * x * y  # (n,)
            dy = ctx.alpha * g1 * x + g2 * x * x  # (n,), returned even when y needs no gradient
            return (dy, dx, None) if bug == "swapped" else (dx, dy, None)

    return Product.apply


def product_reference(x: torch.Tensor, y: torch.Tensor, alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
    return alpha * x * y, x * x * y


def softmax_function(bug: bool) -> Callable[..., Any]:
    """Softmax over the last axis: dx = y * (g - sum_j g_j y_j). The bug subtracts the plain mean of g."""

    class Softmax(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
            y = torch.softmax(x, -1)  # (n, d)
            ctx.save_for_backward(y)
            return y

        @staticmethod
        def backward(ctx: Any, g: torch.Tensor) -> torch.Tensor:
            (y,) = ctx.saved_tensors
            s = g.mean(-1, keepdim=True) if bug else (g * y).sum(-1, keepdim=True)  # (n, 1)
            return y * (g - s)  # (n, d)

    return Softmax.apply


def layer_norm_function(bug: bool, eps: float = 1e-5) -> Callable[..., Any]:
    """Layer norm without affine: y = (x - mean x) / sigma. The bug takes a sum where the derivation has a mean.

    Chain::  dx = (g - mean(g) - y * mean(g * y)) / sigma    (means over the last axis, d)
    """

    class LayerNorm(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
            mu = x.mean(-1, keepdim=True)  # (n, 1)
            sigma = ((x - mu) ** 2).mean(-1, keepdim=True).add(eps).sqrt()  # (n, 1)
            y = (x - mu) / sigma  # (n, d)
            ctx.save_for_backward(y, sigma)
            return y

        @staticmethod
        def backward(ctx: Any, g: torch.Tensor) -> torch.Tensor:
            y, sigma = ctx.saved_tensors
            gy = (g * y).sum(-1, keepdim=True) if bug else (g * y).mean(-1, keepdim=True)  # (n, 1)
            return (g - g.mean(-1, keepdim=True) - y * gy) / sigma  # (n, d)

    return LayerNorm.apply


def layer_norm_reference(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.layer_norm(x, x.shape[-1:], eps=1e-5)


def inputs(*shape: int, dtype: str = "float64", seed: int = 0, grad: bool = True) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=gen, dtype=getattr(torch, dtype))
    return x.requires_grad_(grad)


def bad_params(report: gradtwin.FunctionReport) -> list[str]:
    return [p.name for p in report.gradients.params if not p.ok]


# ---- correct functions pass ---------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("with_reference", [True, False])
def test_correct_tanh_passes(dtype: str, with_reference: bool) -> None:
    report = gradtwin.check_function(
        tanh_function(), inputs(4, 3, dtype=dtype), reference=torch.tanh if with_reference else None
    )
    assert report.ok, report.table()
    assert report.dtype == dtype and report.device == "cpu"
    assert [p.name for p in report.gradients.params] == ["input0"]
    assert len(report.forward) == (0 if not with_reference else 1 if dtype == "float64" else 2)
    assert any("finite differences" in n for n in report.notes) == (not with_reference)


@pytest.mark.parametrize("dtype", DTYPES)
def test_two_outputs_one_input_without_grad_and_a_number_pass(dtype: str) -> None:
    """Only input0 needs grad: it alone is checked, and the gradient the backward returns for input1 is ignored."""
    x, y = inputs(5, dtype=dtype), inputs(5, dtype=dtype, seed=1, grad=False)
    report = gradtwin.check_function(product_function(), x, y, 3, reference=product_reference)
    assert report.ok, report.table()
    assert [p.name for p in report.gradients.params] == ["input0"]
    assert {c.name for c in report.forward} == {"output0", "output1"}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("fn", "reference"), [(softmax_function, lambda x: torch.softmax(x, -1)),
                                               (layer_norm_function, layer_norm_reference)])  # fmt: skip
def test_correct_normalised_outputs_pass(dtype: str, fn: Callable[..., Any], reference: Callable[..., Any]) -> None:
    report = gradtwin.check_function(fn(bug=False), inputs(3, 6, dtype=dtype), reference=reference)
    assert report.ok, report.table()


def test_integer_inputs_pass_through_in_their_own_dtype() -> None:
    class Gather(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
            assert idx.dtype == torch.int32  # check_function hands it back as it came
            ctx.save_for_backward(idx)
            ctx.n = x.shape[0]
            return 3 * x[idx]

        @staticmethod
        def backward(ctx: Any, g: torch.Tensor) -> tuple[Any, ...]:
            (idx,) = ctx.saved_tensors
            return torch.zeros(ctx.n, dtype=g.dtype, device=g.device).index_add(0, idx, 3 * g), None

    idx = torch.tensor([0, 2, 2, 3], dtype=torch.int32)
    report = gradtwin.check_function(Gather.apply, inputs(4), idx, reference=lambda x, i: 3 * x[i])
    assert report.ok, report.table()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_on_every_device(device: str, dtype: str) -> None:
    x = inputs(4, 3, dtype=dtype)
    assert gradtwin.check_function(tanh_function(), x, reference=torch.tanh, device=device).ok
    flipped = gradtwin.check_function(tanh_function(lambda gx: -gx), x, reference=torch.tanh, device=device)
    assert not flipped.ok and flipped.device.startswith(device)


# ---- planted bugs are caught --------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("with_reference", [True, False])
def test_flipped_sign_is_caught(dtype: str, with_reference: bool) -> None:
    """Without a reference autograd runs through the same wrong backward: finite differences catch it alone."""
    report = gradtwin.check_function(
        tanh_function(lambda gx: -gx), inputs(4, 3, dtype=dtype), reference=torch.tanh if with_reference else None
    )
    assert not report.ok and bad_params(report) == ["input0"]
    failing = {c.comparison for c in report.gradients.params[0].checks if not c.ok}
    assert "hand float64 vs finite diff" in failing
    assert ("hand vs autograd" in failing) == with_reference
    if not with_reference:
        assert "the hand-written backward disagrees with finite differences" in str(report)


@pytest.mark.parametrize("dtype", DTYPES)
def test_lost_factor_2_is_caught(dtype: str) -> None:
    x, y = inputs(5, dtype=dtype), inputs(5, dtype=dtype, seed=1, grad=False)
    report = gradtwin.check_function(product_function("lost factor 2"), x, y, 3, reference=product_reference)
    assert not report.ok and bad_params(report) == ["input0"]
    assert all(c.ok for c in report.forward)  # the forward is right; only the backward is wrong


@pytest.mark.parametrize("dtype", DTYPES)
def test_gradients_of_swapped_inputs_are_caught(dtype: str) -> None:
    x, y = inputs(5, dtype=dtype), inputs(5, dtype=dtype, seed=1)
    assert gradtwin.check_function(product_function(), x, y, 3, reference=product_reference).ok
    report = gradtwin.check_function(product_function("swapped"), x, y, 3, reference=product_reference)
    assert bad_params(report) == ["input0", "input1"]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("fn", "reference"), [(softmax_function, lambda x: torch.softmax(x, -1)),
                                               (layer_norm_function, layer_norm_reference)])  # fmt: skip
@pytest.mark.parametrize("with_reference", [True, False])
def test_bugs_that_sum_hides_are_caught(
    dtype: str, fn: Callable[..., Any], reference: Callable[..., Any], with_reference: bool
) -> None:
    """sum(softmax) = 1 and sum(layer norm) = 0, so d(out.sum())/dx = 0 whatever these wrong backwards do.

    The bugs (softmax: the plain mean of g for its softmax-weighted mean; layer norm: sum(g y) for
    mean(g y)) shift every element of a row by the same amount, which vanishes when g is constant.
    """
    x = inputs(3, 6, dtype=dtype)
    wrong = fn(bug=True)
    (by_sum,) = torch.autograd.grad(wrong(x).sum(), x)
    (true_by_sum,) = torch.autograd.grad(reference(x).sum(), x)
    assert torch.allclose(by_sum, true_by_sum, atol=1e-5)  # a .sum() check would pass this bug
    report = gradtwin.check_function(wrong, x, reference=reference if with_reference else None)
    assert not report.ok and bad_params(report) == ["input0"], report.table()


@pytest.mark.parametrize("dtype", DTYPES)
def test_forward_mismatch_is_reported(dtype: str) -> None:
    class Shifted(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
            y = torch.tanh(x)
            ctx.save_for_backward(y)
            return y + 1e-3  # wrong by a constant: the backward below is still tanh's

        @staticmethod
        def backward(ctx: Any, g: torch.Tensor) -> torch.Tensor:
            (y,) = ctx.saved_tensors
            return g * (1 - y * y)

    report = gradtwin.check_function(Shifted.apply, inputs(4, 3, dtype=dtype), reference=torch.tanh)
    assert not report.ok
    assert report.gradients.ok  # the gradient is right; the forward is not
    assert {c.comparison for c in report.forward if not c.ok} >= {"fn vs reference"}
    assert "output0  NO" in report.table()


def test_seed_draws_the_upstream_gradient() -> None:
    """Each seed draws another U; the verdict on a correct function does not depend on it."""
    x = inputs(4, 3)
    for seed in (0, 1, 2):
        assert gradtwin.check_function(tanh_function(), x, reference=torch.tanh, seed=seed).ok
    worst = {gradtwin.check_function(tanh_function(lambda gx: -gx), x, seed=s).gradients.params[0].hand for s in (0, 1)}
    assert len(worst) == 2


# ---- the report and the assertion ----------------------------------------------------------------


def test_assert_function_matches_raises_with_the_table() -> None:
    x = inputs(4, 3)
    report = gradtwin.assert_function_matches(tanh_function(), x, reference=torch.tanh)
    assert isinstance(report, gradtwin.FunctionReport) and report.ok
    with pytest.raises(AssertionError, match="function does not match") as e:
        gradtwin.assert_function_matches(tanh_function(lambda gx: 2 * gx), x, reference=torch.tanh)
    assert "input0" in str(e.value) and "MISMATCH" in str(e.value)


def test_report_as_json() -> None:
    report = gradtwin.check_function(tanh_function(), inputs(4, 3), reference=torch.tanh)
    data = json.loads(report.to_json())
    assert data["ok"] is True and data["forward"][0]["name"] == "output0"
    assert data["gradients"]["params"][0]["name"] == "input0"
    assert str(report) == report.table()


# ---- bad input: one clear line each --------------------------------------------------------------


@pytest.mark.parametrize(
    ("fn", "message"),
    [
        (lambda x: x.detach().numpy(), "fn must return a tensor or a tuple of tensors; got ndarray"),
        (lambda x: (tanh_function()(x), 1.0), "got float at position 1 of its tuple"),
        (lambda x: x + 1, r"torch.autograd.Function with a hand-written backward; .* \(grad_fn AddBackward0\)"),
        (lambda x: x.detach() * 2, "no autograd graph"),
    ],
)
def test_bad_fn_is_refused(fn: Callable[..., Any], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        gradtwin.check_function(fn, inputs(3))


def test_no_input_requiring_grad_is_refused() -> None:
    with pytest.raises(UsageError, match=r"requires_grad=True.*got a float64 tensor without requires_grad, int"):
        gradtwin.check_function(product_function(), inputs(3, grad=False), 2)


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        (lambda x: torch.tanh(x).sum(), r"tensor\(s\) of shapes \[\(3,\)\]; reference gives 1 of shapes \[\(\)"),
        (lambda x: (torch.tanh(x), x), "reference gives 2 of shapes"),
    ],
)  # fmt: skip
def test_reference_of_other_outputs_is_refused(reference: Callable[..., Any], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        gradtwin.check_function(tanh_function(), inputs(3), reference=reference)


def test_inputs_on_two_devices_are_refused() -> None:
    with pytest.raises(UsageError, match=r"one device; got cpu \(input0\) and meta \(input1\)"):
        gradtwin.check_function(product_function(), inputs(3), torch.ones(3, device="meta"), 2)


def test_unknown_dtype_is_refused() -> None:
    with pytest.raises(UsageError, match="dtype must be one of"):
        gradtwin.check_function(tanh_function(), inputs(3), dtype="int64")


def test_once_differentiable_backward_is_checked_with_or_without_reference() -> None:
    def cube(sign: float) -> Callable[..., Any]:
        class Cube(torch.autograd.Function):
            @staticmethod
            def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
                ctx.save_for_backward(x)
                return x**3

            @staticmethod
            @once_differentiable
            def backward(ctx: Any, g: torch.Tensor) -> torch.Tensor:
                (x,) = ctx.saved_tensors
                return sign * 3 * x * x * g

        return Cube.apply

    x = inputs(3)
    assert gradtwin.check_function(cube(1.0), x, reference=lambda x: x**3).ok
    report = gradtwin.check_function(cube(1.0), x)
    assert report.ok and any("once_differentiable" in n for n in report.notes)
    assert not gradtwin.check_function(cube(-1.0), x).ok

"""Rounding scales derived from a model's autograd twin, for the models without a hand-written module.

The layers' models (cnn, charmlp, transformer) have too many intermediates to bound line by line
as `parity/scales/<family>.py` does. The same quantity, S_j >= sum|terms| behind each gradient
element, comes from the Jacobian of the gradient over the inputs AND over every intermediate the
autograd twin taps (`steps.compare.exact_scales`, a Cauchy sketch above EXACT_ELEMENTS), as
`explain` bounds each step: each intermediate rounds in the forward pass, and a backward step that
cancels (1 - H^2 at a saturated tanh, batch norm's centring, P - 1 at a confident softmax)
magnifies the rounding of that intermediate, not of the inputs. S is then raised to what the same
loss shows in float32 (|g32 - g64| / u32), and, where the loss splits over its rows, the terms of
the sum over them are added (c * sum_i |dL_i/dtheta|, `parity.autograd_scales`); batch norm's loss
does not split, and its outer sums are covered by the sensitivities alone (charmlp). K is every
element of the data and the parameters.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

from gradtwin.parity.autograd_scales import _per_sample_terms
from gradtwin.steps.compare import (
    autograd_steps,
    exact_scales,
    float32_floor,
    graph_leaves,
    run_tapped,
    sketch_scales,
)
from gradtwin.steps.tap import tap

Params = dict[str, Any]
_LEAF = "param:"  # the parameters' keys inside the tapped loss
# up to this many tapped elements, S from the exact Jacobian (a double backward an element); above, the sketch,
# whose cost does not grow with them (a conv net's 2,500 tapped elements took 15 s a point exactly)
EXACT_ELEMENTS = 256


def _tapped(loss: Callable[..., Any], names: list[str]) -> Callable[..., Any]:
    """`loss` with every parameter tapped too, so that S covers dL/d(parameter) like every step."""

    def tapped(leaves: Mapping[str, torch.Tensor], X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
        p = {k.removeprefix(_LEAF): v for k, v in leaves.items()}
        for name in names:
            p[name] = tap(name, p[name])
        return loss(p, X, Y)

    return tapped


def _scales(params: Params, X: Any, Y: Any, loss: Callable[..., Any]) -> tuple[dict[str, np.ndarray], float]:
    p64 = {_LEAF + k: np.asarray(v, dtype=np.float64) for k, v in params.items()}
    data = (np.asarray(X, dtype=np.float64), np.asarray(Y))
    torch_loss = _tapped(loss, list(params))
    cpu = torch.device("cpu")
    tape64, loss64, _ = run_tapped(torch_loss, p64, data, "float64", cpu, data_grad=True)
    ref = autograd_steps(loss64, tape64)
    exact = None
    if sum(v.size for v in ref.values()) <= EXACT_ELEMENTS:
        try:
            exact = exact_scales(loss64, tape64, graph_leaves(loss64), ref)
        except RuntimeError:  # an operation without a double backward: sketch instead
            exact = None
    S = exact if exact is not None else sketch_scales(torch_loss, p64, data, ref)
    tape32, loss32, _ = run_tapped(torch_loss, p64, data, "float32", cpu)
    S = float32_floor(S, autograd_steps(loss32, tape32), ref)
    # the loss: its sensitivity to the inputs and to every tapped value, plus |L| (it rounds too)
    leaves = list({id(x): x for x in [*graph_leaves(loss64), *tape64.tensors]}.values())
    grads = torch.autograd.grad(loss64, leaves, retain_graph=True, allow_unused=True)
    loss_S = sum(float((g.abs() * x.detach().abs()).sum()) for g, x in zip(grads, leaves, strict=True) if g is not None)
    # the terms of the sum over the rows, c * sum_i |dL_i/dtheta|, where the loss splits over its rows
    plain = {k: np.asarray(v, dtype=np.float64) for k, v in params.items()}
    terms, loss_terms = _per_sample_terms(loss, plain, data, float(loss64.detach()), rounding_terms(X, plain))
    out, start = {}, 0
    for k, v in plain.items():
        out[k] = np.asarray(S[k]) + (0.0 if terms is None else terms[start : start + v.size].reshape(v.shape))
        start += v.size
    return out, loss_S + max(abs(float(loss64.detach())), loss_terms or 0.0)


def gradient_scale(params: Params, X: Any, Y: Any, loss: Callable[..., Any]) -> dict[str, np.ndarray]:
    """S_j of each gradient element, keyed like `params`."""
    return _scales(params, X, Y, loss)[0]


def loss_scale(params: Params, X: Any, Y: Any, loss: Callable[..., Any]) -> float:
    """S of the loss, ()."""
    return _scales(params, X, Y, loss)[1]


def rounding_terms(X: Any, params: Params, weight: Any = None) -> int:
    """K: every element of X, Y (one per row) and the parameters."""
    return int(np.size(X) + np.shape(X)[0] + sum(np.size(v) for v in params.values()))

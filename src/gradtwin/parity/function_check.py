"""check_function: a hand-written backward (a custom torch.autograd.Function) against autograd and finite differences.

    report = check_function(MyTanh.apply, x, reference=torch.tanh)
    assert report.ok, report.table()

The outputs are reduced with a random upstream gradient, never with `.sum()`:

    Loss::    L = sum_o <U_o, out_o>,  U_o ~ N(0, 1) of out_o's shape (seeded)
    Chain::   dL/dx_i = sum_o J_oi^T U_o   (one vector-Jacobian product per input)

The sum of a normalised output (softmax, layer norm) is constant, so `.sum()` gives a zero
gradient whatever the backward does; a random U_o sees every column of the Jacobian.
The gradient check is `check_gradients` on that L: the hand-written backward (autograd through
`fn`) in the checked dtype against autograd through `reference` and finite differences of L
in float64, with its derived tolerances and diagnoses. Without `reference`, autograd runs
through `fn`'s own backward, and finite differences in float64 are the only referee.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from gradtwin.devices import resolve_device, torch_dtype
from gradtwin.errors import UsageError
from gradtwin.parity.compare import JsonReport, ParamCheck, compare, fixed_width
from gradtwin.parity.gradcheck import GradientReport, check_gradients, underflow_floor
from gradtwin.parity.rounding import ROUNDING_OPS, rounding_bound, unit_roundoff

_U32 = unit_roundoff(np.float32)
_NO_REFEREE = "autograd of torch_loss disagrees with finite differences"


@dataclass
class FunctionReport(JsonReport):
    """The forward comparisons (fn vs reference, one per output), then the gradient check of every input."""

    ok: bool
    dtype: str
    device: str
    forward: list[ParamCheck]
    gradients: GradientReport
    notes: list[str] = field(default_factory=list)

    def table(self) -> str:
        """The forward table, then the gradient report's table, then the notes."""
        lines = [f"function check, {self.dtype} on {self.device}: {'all agree' if self.ok else 'MISMATCH'}"]
        if self.forward:
            header = ("output", "ok", "comparison", "worst at", "fn", "reference", "abs err", "tolerance")
            rows = [header] + [
                (c.name, "yes" if c.ok else "NO", c.comparison, str(list(c.worst_index)), f"{c.a:.9g}",
                 f"{c.b:.9g}", f"{c.worst_err:.3g}", f"{c.tol:.3g}")
                for c in self.forward
            ]  # fmt: skip
            lines += ["forward:", *fixed_width(header, rows[1:])]
        lines += [f"note: {n}" for n in self.notes]
        lines += ["", self.gradients.table()]
        return "\n".join(lines)

    __str__ = table


def check_function(
    fn: Callable[..., Any],
    *inputs: Any,
    reference: Callable[..., Any] | None = None,
    dtype: str | torch.dtype | None = None,
    device: str | None = None,
    seed: int = 0,
    allow_kinks: bool = False,
) -> FunctionReport:
    """Check the hand-written backward of `fn` at `inputs`; compare its forward with `reference` first.

    fn: typically `MyFunction.apply`; returns a tensor or a tuple of tensors.
    inputs: tensors and anything else (ints, floats pass through unchanged). The tensors with
    requires_grad=True are checked, named input0, input1... by their position among all inputs.
    reference: the same forward in differentiable torch ops (optional but recommended).
    dtype: default the dtype of the first floating input; device: default the inputs' device.
    seed: seeds the upstream gradients U_o. allow_kinks: as in check_gradients.

    Forward, per output element (when reference is given)::
        |fn - reference| in dtype      <= 2 * t(dtype)
        |fn in dtype - reference f64|  <= t(dtype) + t(float64)
        t(dt) = gamma_dt(K + ROUNDING_OPS) * S + underflow floor,  K = number of input elements
        S = max(|reference f64|, |fn|) + |reference f32 - reference f64| / u32
    The first term of S bounds a result rounded relative to its own size; the second is the
    reference's rounding measured in float32 (2^29 times float64's, so it shows), which sees
    cancellation inside the computation that the output's size hides. It is an estimate, not a
    bound, of the conditioning; fn is never measured against itself.
    """
    args = list(inputs)
    grad_pos = [i for i, x in enumerate(args) if isinstance(x, torch.Tensor) and x.requires_grad]
    data_pos = [i for i, x in enumerate(args) if isinstance(x, torch.Tensor) and not x.requires_grad]
    if not grad_pos:
        got = ", ".join(_describe(x) for x in args) or "no inputs"
        raise UsageError(f"inputs must include a tensor with requires_grad=True (the inputs checked); got {got}")
    home = _one_device(args)
    first = next(x.dtype for x in args if isinstance(x, torch.Tensor) and x.is_floating_point())
    dt = _dtype_name(dtype if dtype is not None else first)
    dev = resolve_device(device if device is not None else str(home), dt, half=True)
    torch_dtype(dt, half=True)  # refuse an unsupported dtype before running anything

    with torch.enable_grad():
        outs = _outputs(fn(*args), "fn")
    _require_custom_backward(outs)
    floating = [o for o, y in enumerate(outs) if y.is_floating_point()]
    if not floating:
        raise UsageError(f"fn must return at least one floating tensor; got dtypes {[str(y.dtype) for y in outs]}")
    gen = torch.Generator().manual_seed(seed)
    U = [torch.randn(outs[o].shape, generator=gen, dtype=torch.float64) for o in floating]
    if reference is not None:
        with torch.no_grad():
            _same_outputs(outs, _outputs(reference(*args), "reference"))

    names = {i: f"input{i}" for i in grad_pos}
    kinds = {i: args[i].dtype for i in data_pos}

    def rebuild(params: Mapping[str, Any], data: Sequence[Any]) -> tuple[list[Any], Sequence[Any]]:
        """fn's argument list from check_gradients' params and data; and the U_o after it."""
        call = list(args)
        for i in grad_pos:
            call[i] = torch.as_tensor(params[names[i]])
        for j, i in enumerate(data_pos):
            x = torch.as_tensor(data[j])
            call[i] = x if kinds[i].is_floating_point else x.to(kinds[i])
        return call, data[len(data_pos) :]

    def paired(out: Sequence[torch.Tensor], us: Sequence[Any]) -> torch.Tensor:
        """L = sum_o <U_o, out_o> over the floating outputs; U_o cast to out_o's dtype and device.

        A U_o of another shape than out_o is refused, not broadcast: check_gradients tries to split
        the loss over rows of its data (per-sample scales), and L does not split that way, as the
        checked inputs stay whole.
        """
        us = [torch.as_tensor(u) for u in us]
        if [u.shape for u in us] != [out[o].shape for o in floating]:
            raise UsageError("L = sum_o <U_o, out_o> needs U_o of out_o's shape; the loss does not split over rows")
        terms = [(u.to(out[o]) * out[o]).sum() for o, u in zip(floating, us, strict=True)]
        return torch.stack(terms).sum()

    def manual_gradients(params: Mapping[str, Any], *data: Any) -> dict[str, torch.Tensor]:
        """dL/dx of each checked input through fn's hand-written backward."""
        call, us = rebuild(params, data)
        leaves = {}
        for i in grad_pos:
            call[i] = leaves[names[i]] = call[i].detach().requires_grad_(True)
        with torch.enable_grad():
            loss = paired(_outputs(fn(*call), "fn"), us)
        grads = torch.autograd.grad(loss, list(leaves.values()), allow_unused=True)
        return {k: torch.zeros_like(x) if g is None else g for (k, x), g in zip(leaves.items(), grads, strict=True)}

    through = fn if reference is None else reference

    def torch_loss(params: Mapping[str, Any], *data: Any) -> torch.Tensor:
        call, us = rebuild(params, data)
        return paired(_outputs(through(*call), "reference" if reference is not None else "fn"), us)

    p64 = {names[i]: args[i].detach().cpu().double().numpy() for i in grad_pos}
    d64 = [args[i].detach().cpu() for i in data_pos]
    n_inputs = sum(x.numel() for x in args if isinstance(x, torch.Tensor))
    notes = []
    if reference is None:
        forward: list[ParamCheck] = []
        notes.append(
            "no reference: autograd runs through fn's own hand-written backward, so 'hand vs autograd' compares it "
            "with itself; finite differences of L in float64 are the only referee (pass reference= for a second)"
        )
    else:
        floor = underflow_floor(dt, n_inputs, p64, [x.double().numpy() for x in d64])
        forward, how = _forward_checks(fn, reference, args, dt, dev, n_inputs, floor)
        notes.append(how)
    notes.append(f"upstream gradients U_o ~ N(0, 1) (seed {seed}) for outputs {[f'output{o}' for o in floating]}")
    if reference is None and _once_differentiable([args[i] for i in grad_pos], outs, paired):
        notes.append(
            "fn's backward is @once_differentiable: without a reference the rounding scale cannot take the "
            "derivative of the gradient through it, so S rests on |gradient| and the float32-measured floor"
        )
    grads = check_gradients(
        manual_gradients, torch_loss, p64, (*d64, *U), dtype=dt, device=str(dev),
        allow_kinks=allow_kinks, manual_array="torch",
    )  # fmt: skip
    if reference is None:
        grads = replace(grads, params=[_refereed_by_fd(p) for p in grads.params])
    return FunctionReport(
        ok=grads.ok and all(c.ok for c in forward),
        dtype=dt,
        device=str(dev),
        forward=forward,
        gradients=grads,
        notes=notes,
    )


def assert_function_matches(fn: Callable[..., Any], *inputs: Any, **kwargs: Any) -> FunctionReport:
    """`check_function`, raising AssertionError carrying the report's table on a mismatch."""
    report = check_function(fn, *inputs, **kwargs)
    if not report.ok:
        raise AssertionError("function does not match\n" + report.table())
    return report


def _forward_checks(
    fn: Callable[..., Any],
    reference: Callable[..., Any],
    args: Sequence[Any],
    dtype: str,
    dev: torch.device,
    n_inputs: int,
    floor: float,
) -> tuple[list[ParamCheck], str]:
    """fn vs reference per output, in `dtype` on `dev`, and fn against reference in float64 (see check_function).

    Returns the checks and a note saying which rounding bound gave the tolerance.
    """
    cpu = torch.device("cpu")
    with torch.no_grad():
        fn_d = _outputs(fn(*_cast(args, dtype, dev)), "fn")
        ref_d = _outputs(reference(*_cast(args, dtype, dev)), "reference")
        ref64 = _outputs(reference(*_cast(args, "float64", cpu)), "reference")
        ref32 = _outputs(reference(*_cast(args, "float32", cpu)), "reference")
    n_out = sum(y.numel() for y in fn_d)
    bound = rounding_bound(dtype, n_inputs + ROUNDING_OPS, outputs=n_out)
    bound64 = rounding_bound("float64", n_inputs + ROUNDING_OPS, outputs=n_out)
    checks = []
    for o, (f, r, r64, r32) in enumerate(zip(fn_d, ref_d, ref64, ref32, strict=True)):
        f_, r_, r64_, r32_ = (_numpy(x) for x in (f, r, r64, r32))
        if not f.is_floating_point():  # integer outputs are compared exactly
            checks.append(compare("fn vs reference", f"output{o}", f_, r_, 0.0))
            continue
        with np.errstate(over="ignore", invalid="ignore"):
            measured = np.abs(r32_ - r64_) / _U32
            S = np.maximum(np.abs(r64_), np.abs(f_)) + np.where(np.isfinite(measured), measured, 0.0)
        t_d = bound.gamma * S + floor
        checks.append(compare("fn vs reference", f"output{o}", f_, r_, 2 * t_d))
        if dtype != "float64":
            t_64 = bound64.gamma * S + floor
            checks.append(compare(f"fn {dtype} vs reference float64", f"output{o}", f_, r64_, t_d + t_64))
    how = (
        f"forward tolerance: {bound.describe()} with K = {n_inputs} input elements + {ROUNDING_OPS}, times "
        "S = max(|reference float64|, |fn|) + |reference float32 - reference float64| / u32"
    )
    return checks, how


def _cast(args: Sequence[Any], dtype: str, dev: torch.device) -> list[Any]:
    """Detached copies of the tensor inputs on `dev`, floating ones in `dtype`; the rest as given."""
    out = []
    for x in args:
        if isinstance(x, torch.Tensor):
            x = x.detach().to(dev, torch_dtype(dtype, half=True) if x.is_floating_point() else x.dtype)
        out.append(x)
    return out


def _numpy(x: torch.Tensor) -> np.ndarray:
    return x.detach().cpu().double().numpy() if x.is_floating_point() else x.detach().cpu().numpy()


def _outputs(value: Any, who: str) -> tuple[torch.Tensor, ...]:
    """fn's (or reference's) result as a tuple of tensors, or a UsageError naming what came."""
    outs = value if isinstance(value, (tuple, list)) else (value,)
    for o, y in enumerate(outs):
        if not isinstance(y, torch.Tensor):
            where = f" at position {o} of its {type(value).__name__}" if isinstance(value, (tuple, list)) else ""
            raise UsageError(f"{who} must return a tensor or a tuple of tensors; got {type(y).__name__}{where}")
    if not outs:
        raise UsageError(f"{who} must return a tensor or a tuple of tensors; got an empty {type(value).__name__}")
    return tuple(outs)


def _require_custom_backward(outs: Sequence[torch.Tensor]) -> None:
    """Walk the graph from the outputs; refuse fn unless a torch.autograd.Function node is on it."""
    roots = [y.grad_fn for y in outs if y.grad_fn is not None]
    if not roots:
        raise UsageError(
            "fn must be the apply of a torch.autograd.Function with a hand-written backward; its outputs have no "
            "autograd graph (no grad_fn): they do not depend on the inputs that require grad"
        )
    if not _on_graph(roots, lambda node: isinstance(node, torch.autograd.function.BackwardCFunction)):
        raise UsageError(
            "fn must be the apply of a torch.autograd.Function with a hand-written backward; its outputs' graph has "
            f"none (grad_fn {type(roots[0]).__name__})"
        )


def _on_graph(roots: Sequence[Any], found: Callable[[Any], bool]) -> bool:
    """Whether a node of the autograd graph below `roots` (through next_functions) satisfies `found`."""
    seen, stack = set(), list(roots)
    while stack:
        node = stack.pop()
        if found(node):
            return True
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack += [n for n, _ in node.next_functions if n is not None]
    return False


def _once_differentiable(
    leaves: Sequence[torch.Tensor], outs: Sequence[torch.Tensor], paired: Callable[..., torch.Tensor]
) -> bool:
    """Whether fn's gradient carries the Error node that @once_differentiable leaves for a second pass.

    The node appears only when the upstream gradient itself requires grad (as in the rounding
    scale's second pass), so U here does.
    """
    us = [torch.zeros(y.shape, dtype=torch.float64, requires_grad=True) for y in outs if y.is_floating_point()]
    grads = torch.autograd.grad(paired(outs, us), list(leaves), create_graph=True, allow_unused=True)
    roots = [g.grad_fn for g in grads if g is not None and g.grad_fn is not None]
    return _on_graph(roots, lambda node: type(node).__name__ == "Error")


def _same_outputs(outs: Sequence[torch.Tensor], ref: Sequence[torch.Tensor]) -> None:
    got, want = [tuple(y.shape) for y in ref], [tuple(y.shape) for y in outs]
    if got != want:
        raise UsageError(
            f"reference must return what fn returns: fn gives {len(want)} tensor(s) of shapes {want}; "
            f"reference gives {len(got)} of shapes {got}"
        )


def _one_device(args: Sequence[Any]) -> torch.device:
    """The device every tensor input is on, or a UsageError naming two that differ."""
    where = {i: x.device for i, x in enumerate(args) if isinstance(x, torch.Tensor)}
    first = next(iter(where))
    for i, d in where.items():
        if d != where[first]:
            raise UsageError(f"inputs must all be on one device; got {where[first]} (input{first}) and {d} (input{i})")
    return where[first]


def _dtype_name(dtype: str | torch.dtype) -> str:
    return str(dtype).removeprefix("torch.") if isinstance(dtype, torch.dtype) else dtype


def _describe(x: Any) -> str:
    if isinstance(x, torch.Tensor):
        return f"a {str(x.dtype).removeprefix('torch.')} tensor without requires_grad"
    return type(x).__name__


def _refereed_by_fd(p: Any) -> Any:
    """Without a reference, 'autograd' is fn's backward too: say so where check_gradients blames torch_loss."""
    if p.diagnosis is None or not p.diagnosis.startswith(_NO_REFEREE):
        return p
    worst = next((c for c in p.checks if c.comparison == "autograd float64 vs finite diff"), None)
    at = list(worst.worst_index) if worst is not None else list(p.worst_index)
    return replace(
        p,
        diagnosis=f"the hand-written backward disagrees with finite differences at {at} (no reference given: "
        "autograd runs through the same backward)",
    )

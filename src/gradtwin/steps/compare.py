"""Each tapped intermediate's hand-derived dL/d(tensor) against autograd's, from the loss back; the first wrong step.

A hand derivation returns, beside the parameters' gradients, the gradients of named intermediates
under the names the torch loss taps (hand["Z"] is dL/dZ). For every tapped tensor T the check is

    hand vs autograd in the checked dtype, every element       within 2 * gamma(K) * S
    below float64: each against autograd in float64             within (gamma_dtype + gamma_64) * S
    the hand code in float64 against autograd in float64       within 2 * gamma_64(K) * S

with the parameters' gamma (rounding.rounding_bound, K summed terms) and, per element j of dL/dT,

    S_j = sum_k |d (dL/dT)_j / d x_k| * |x_k|  +  |(dL/dT)_j|
          x: every element of params and data, and of every tapped tensor's forward value

Why this scale: dL/dT is computed by a forward pass up to T and beyond, then a backward pass down to
T; both are sums and products of the inputs. A backward-stable computation returns the exact dL/dT
of inputs each perturbed by at most a few unit roundoffs relatively, so its error is at most gamma
times the first term, the same argument and the same quantity as the parameters' scale
(parity.autograd_scales). The tapped values are inputs too: each is rounded in the forward pass,
and a backward step that cancels (1 - H**2 at a saturated tanh, where H rounds to within u of 1)
magnifies that rounding far beyond what the leaves' sensitivity shows (a test at 25 random MLPs
found it). The second term is the final rounding of the value itself. It is computed
exactly from the Jacobian (double backward, one batched pass per chunk of elements) or, for large
tensors, from a Cauchy sketch at linear cost (as parity.sketch does for parameters); then raised to
what the same loss shows in float32 (|g32 - g64| / u32, a measured floor on the scale).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from gradtwin.devices import HALF, torch_dtype
from gradtwin.errors import UsageError
from gradtwin.parity import diagnose
from gradtwin.parity.autograd_scales import _jacobian_weighted
from gradtwin.parity.compare import JsonReport, ParamCheck, compare, fixed_width
from gradtwin.parity.rounding import ROUNDING_OPS, Bound, rounding_bound
from gradtwin.parity.sketch import DRAWS, FACTOR, STEP
from gradtwin.steps.tap import Tape, recording

__all__ = ["StepCheck", "StepsReport", "check_steps", "compare_steps", "first_wrong_sentence"]

_TINY = np.finfo(np.float64).tiny
EXACT_MAX = 4096  # up to this many tapped elements in all, S from the exact Jacobian; above, a Cauchy sketch
SHOWN = 5  # worst elements listed per step that disagrees


@dataclass
class StepCheck:
    """One tapped intermediate T: its worst element over every comparison of dL/dT, and the story of a mismatch."""

    name: str
    shape: tuple[int, ...]
    ok: bool
    abs_err: float
    rel_err: float  # abs_err over max |dL/dT| in float64: the tensor's own scale
    tol: float
    worst_index: tuple[int, ...]
    hand: float  # the hand dL/dT at worst_index, in the checked dtype
    autograd: float  # autograd's there, in the checked dtype
    hand_norm: float
    hand_max: float
    autograd_norm: float
    autograd_max: float
    diagnosis: str | None = None
    formula: str | None = None
    reference: float = math.nan  # autograd in float64 there
    comparison: str = ""
    checks: list[ParamCheck] = field(default_factory=list)
    size: int = 0
    n_bad: int = 0
    worst: list[tuple[tuple[int, ...], float, float, float, float]] = field(default_factory=list)

    def where(self) -> str:
        return str(list(self.worst_index))


@dataclass
class StepsReport(JsonReport):
    """Every tapped intermediate given by the hand side, in graph order (from the loss back)."""

    steps: list[StepCheck]
    # "dL/dZ2 agrees; dL/dH does not: the mistake is in the step from Z2 to H"; the checker also names here
    # the step to a parameter when every intermediate agrees but the parameter does not (ok stays True)
    first_wrong: str | None
    untapped: list[str]  # tapped by the torch side, not given by the hand side: listed, not failed
    ok: bool
    dtype: str = "float64"
    notes: list[str] = field(default_factory=list)
    # parameter -> the tapped tensor it flows into first (its gradient is the step from there), None: the loss
    after: dict[str, str | None] = field(default_factory=dict)

    def rows(self) -> list[tuple[str, ...]]:
        """One table row per step: step, ok, shape, worst at, hand, autograd, abs err, rel err, tolerance."""
        return [
            (
                f"dL/d{s.name}",
                "yes" if s.ok else "NO",
                str(tuple(s.shape)),
                s.where(),
                f"{s.hand:.9g}",
                f"{s.autograd:.9g}",
                f"{s.abs_err:.3g}",
                f"{s.rel_err:.3g}",
                f"{s.tol:.3g}",
            )
            for s in self.steps
        ]

    def explanations(self) -> list[str]:
        """The first wrong step with its diagnosis and worst elements, the later wrong steps (which inherit
        its error) by name only, and the steps not checked."""
        lines = [self.first_wrong] if self.first_wrong else []
        wrong = [s for s in self.steps if not s.ok]
        if wrong:
            s = wrong[0]
            lines.append(f"dL/d{s.name}: worst in {s.comparison}; {s.diagnosis}")
            if s.size > 1 and s.worst:
                share = 100.0 * s.n_bad / s.size
                lines.append(f"  {s.n_bad} of {s.size} elements of dL/d{s.name} disagree ({share:.3g} %):")
                lines += [f"    {list(i)}: {a:.9g} vs {b:.9g}, err {e:.3g}, tolerance {t:.3g}"
                          for i, a, b, e, t in s.worst]  # fmt: skip
        if len(wrong) > 1:
            later = ", ".join(f"dL/d{s.name}" for s in wrong[1:])
            lines.append(f"later steps that disagree (they may only inherit its error; fix it, check again): {later}")
        if self.untapped:
            lines.append(f"tapped but not given by the hand side (not checked): {', '.join(self.untapped)}")
        return lines

    def table(self) -> str:
        """The steps as a fixed-width table (graph order), the first wrong step and the diagnoses below it."""
        verdict = "all agree" if self.ok else "MISMATCH"
        header = ("step", "ok", "shape", "worst at", "hand", "autograd", "abs err", "rel err", "tolerance")
        lines = [f"steps from the loss back, {self.dtype}: {verdict}"]
        if self.steps:
            lines += fixed_width(header, self.rows())
        formulas = [f"  dL/d{s.name} = {s.formula}" for s in self.steps if s.formula]
        if formulas:
            lines += ["formulas:", *formulas]
        lines += self.explanations()
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)

    __str__ = table


def first_wrong_sentence(order: Sequence[tuple[str, bool]]) -> str | None:
    """The first (name, ok) that is not ok, walking from the loss back, as the step that holds the mistake."""
    previous = None
    for name, ok in order:
        if not ok:
            if previous is None:
                return f"dL/d{name} does not agree: the mistake is in the step from the loss to {name}"
            return f"dL/d{previous} agrees; dL/d{name} does not: the mistake is in the step from {previous} to {name}"
        previous = name
    return None


def parameter_sentence(param: str, after: str | None) -> str:
    """Every intermediate agrees but `param` does not: the step from the tensor it flows into."""
    if after is None:
        return f"dL/d{param} does not agree: the mistake is in the step from the loss to {param}"
    return f"dL/d{after} agrees; dL/d{param} does not: the mistake is in the step from {after} to {param}"


def compare_steps(
    hand: Mapping[str, Any],
    tape: Tape,
    loss: torch.Tensor,
    *,
    dtype: str | None = None,
    formulas: Mapping[str, str] | None = None,
    reference: tuple[Tape, torch.Tensor] | None = None,
    scales: Mapping[str, np.ndarray] | None = None,
    hand64: Mapping[str, Any] | None = None,
    n_terms: int | None = None,
    params: Collection[str] = (),
    samples: int | None = None,
    param_leaves: Mapping[str, torch.Tensor] | None = None,
    indices: Sequence[np.ndarray] = (),
    label: str = "hand",
    what: str = "hand",
) -> StepsReport:
    """autograd's dL/d(tapped tensor) for every tapped name, compared with hand[name] in graph order.

    hand: name -> dL/d(name) (arrays or tensors); keys in `params` are skipped (parameters), every
    other key must be a tapped name. tape, loss: a run of the torch loss inside `recording()`, its
    graph not yet freed. dtype: the checked dtype (default: the loss's). reference: the same run in
    float64 (default: the run itself when it is float64), whose autograd is the referee; its graph's
    leaves that require grad (params, and data made to require grad) are the inputs x of the scale S,
    unless `scales` (name -> S, shaped like the tensor) is given. hand64: the hand code's run in
    float64. n_terms: K (default: every element of those leaves). samples: n, for naming a factor n
    (default: the leading axis all tapped tensors share). param_leaves: name -> the reference run's parameter
    tensors, to name the step each parameter's gradient comes from (report.after). label: the hand side's
    name in comparisons; what: its name in errors (what[name]). indices: integer arrays of the data
    (rows looked up, for the diagnosis of rows that hold one contribution instead of their sum).
    Shapes: hand[name].shape == tape[name].shape.
    """
    names = _given(hand, tape, params, what)
    dtype = dtype or _dtype_name(loss.dtype)
    ref_tape, ref_loss = reference if reference is not None else (tape, loss)
    if ref_tape.names() != tape.names():
        raise UsageError(
            f"the torch loss tapped {ref_tape.names()} in float64 but {tape.names()} in {dtype}: tap the same "
            "tensors in every run"
        )
    auto = autograd_steps(loss, tape)
    ref = auto if reference is None else autograd_steps(ref_loss, ref_tape)
    referee = reference is not None or dtype == "float64"  # a float64 autograd to compare against
    leaves = graph_leaves(ref_loss)
    K = n_terms if n_terms is not None else sum(x.numel() for x in leaves) + max((t.numel() for t in tape.tensors),
                                                                                default=0)  # fmt: skip
    outputs = sum(v.size for v in ref.values())
    bound = rounding_bound(dtype, K + ROUNDING_OPS, outputs=outputs + 1)
    bound64 = rounding_bound("float64", K + ROUNDING_OPS, outputs=outputs + 1)
    derived = "S from the Jacobian of each dL/dT over the graph's leaves and the tapped values"
    if scales is None:
        try:
            S = exact_scales(ref_loss, ref_tape, leaves, ref)
        except RuntimeError as e:  # an operation without a double backward
            S = {k: np.abs(v) for k, v in ref.items()}
            derived = f"S = |dL/dT| alone, the loss has no double backward ({str(e).splitlines()[0]}): pass scales"
        if dtype == "float32":
            S = float32_floor(S, auto, ref)
    else:
        S = {k: np.broadcast_to(np.asarray(v, dtype=np.float64), ref[k].shape) for k, v in scales.items()}
    biggest = max([1.0, *(float(x.detach().abs().max()) for x in leaves if x.numel())])
    floor = {dt: K * float(torch.finfo(torch_dtype(dt, half=True)).tiny) * biggest**2 for dt in {dtype, "float64"}}
    n = samples if samples is not None else _shared_leading(tape)
    after = params_after(ref_tape, param_leaves) if param_leaves is not None else {}
    steps = []
    for name in reversed(tape.names()):
        if name not in names:
            continue
        h = _numpy(hand[name], f"{what}[{name!r}]", tuple(tape[name].shape), name)
        h64 = None if hand64 is None else _numpy(hand64[name], f"{what}[{name!r}]", tuple(tape[name].shape), name)
        t_d, t_64 = bound.gamma * S[name] + floor[dtype], bound64.gamma * S[name] + floor["float64"]
        others = {k: v for k, v in ref.items() if k != name}
        step = _step(name, h, h64, auto[name], ref[name], t_d, t_64, dtype if referee else "float64", label,
                     (n, indices, others))  # fmt: skip
        step.formula = (formulas or {}).get(name)
        steps.append(step)
    first = first_wrong_sentence([(s.name, s.ok) for s in steps])
    notes = [_tolerance_note(K, bound, bound64, dtype, derived if scales is None else "S given")]
    untapped = [k for k in reversed(tape.names()) if k not in names and k not in params]  # graph order
    if not referee:
        notes.append(f"no float64 run given (reference): each step is compared with autograd in {dtype} only")
    return StepsReport(steps, first, untapped, all(s.ok for s in steps), dtype, notes, after)


def check_steps(
    hand: Mapping[str, Any],
    hand64: Mapping[str, Any] | None,
    torch_loss: Callable[..., torch.Tensor],
    params: Mapping[str, np.ndarray],
    data: Sequence[np.ndarray],
    *,
    dtype: str = "float64",
    device: torch.device | None = None,
    n_terms: int | None = None,
    sketch: bool = False,
    seed: int = 0,
    samples: int | None = None,
    formulas: Mapping[str, str] | None = None,
    label: str = "hand",
    what: str = "hand",
    grads_out: dict[str, np.ndarray] | None = None,
) -> StepsReport:
    """compare_steps with every run made here: float64 on the cpu (the referee, data requiring grad so that
    S sees it), `dtype` on `device`, float32 for the measured floor; S exact, or sketched with `sketch`
    (or above EXACT_MAX tapped elements). params, data: float64 NumPy (integer data stays integer).
    grads_out: filled with autograd's float64 dL/dT of every tapped T (for the parameters' diagnoses)."""
    cpu = torch.device("cpu")
    dev = device or cpu
    tape64, loss64, leaves64 = run_tapped(torch_loss, params, data, "float64", cpu, data_grad=True)
    _given(hand, tape64, params, what)
    same = dtype == "float64" and dev.type == "cpu"
    tape, loss, _ = (tape64, loss64, None) if same else run_tapped(torch_loss, params, data, dtype, dev)
    ref = autograd_steps(loss64, tape64)
    if grads_out is not None:
        grads_out.update(ref)
    K = n_terms if n_terms is not None else sum(x.size for x in data) + sum(v.size for v in params.values())
    exact: dict[str, np.ndarray] | None = None
    if not sketch and sum(v.size for v in ref.values()) <= EXACT_MAX:
        try:
            exact = exact_scales(loss64, tape64, graph_leaves(loss64), ref)
        except RuntimeError:  # an operation without a double backward: sketch instead
            exact = None
    S = exact if exact is not None else sketch_scales(torch_loss, params, data, ref, seed)
    if tape64.names():
        tape32, loss32, _ = (tape, loss, None) if dtype == "float32" and dev.type == "cpu" else run_tapped(
            torch_loss, params, data, "float32", cpu)  # fmt: skip
        S = float32_floor(S, autograd_steps(loss32, tape32), ref)
    report = compare_steps(
        hand, tape, loss, dtype=dtype, formulas=formulas, reference=None if same else (tape64, loss64), scales=S,
        hand64=hand64, n_terms=K, params=params, samples=samples, param_leaves=leaves64, label=label, what=what,
        indices=[x for x in data if x.dtype.kind in "iu"],
    )  # fmt: skip
    how = "a Cauchy sketch of" if exact is None else "the Jacobian of"
    said = f"; S from {how} each dL/dT over the inputs and the tapped values, raised to its float32 rounding"
    report.notes = [n.replace("; S given", said) for n in report.notes]
    return report


def run_tapped(
    torch_loss: Callable[..., torch.Tensor],
    params: Mapping[str, np.ndarray],
    data: Sequence[np.ndarray],
    dtype: str,
    device: torch.device,
    data_grad: bool = False,
    perturb: Callable[[str, torch.Tensor], torch.Tensor] | None = None,
) -> tuple[Tape, torch.Tensor, dict[str, torch.Tensor]]:
    """torch_loss inside `recording(perturb)` in `dtype` on `device`: (the tape, the 0-d loss, the parameter leaves)."""
    dt = torch_dtype(dtype, half=True)
    leaves = {k: torch.as_tensor(v).to(device=device, dtype=dt).requires_grad_(True) for k, v in params.items()}
    d = [
        torch.as_tensor(x).to(device)
        if x.dtype.kind in "iub"
        else torch.as_tensor(x).to(device=device, dtype=dt).requires_grad_(data_grad)
        for x in data
    ]
    with recording(perturb) as tape:
        value = torch_loss(leaves, *d)
    if not isinstance(value, torch.Tensor) or value.numel() != 1:
        raise UsageError(f"torch_loss must return a scalar torch tensor; got {type(value).__name__}")
    return tape, value.reshape(()), leaves


def autograd_steps(loss: torch.Tensor, tape: Tape) -> dict[str, np.ndarray]:
    """dL/d(tapped tensor) for every name on the tape (one backward, the graph kept), in float64 NumPy."""
    if not len(tape):
        return {}
    if not loss.requires_grad:
        raise UsageError("torch_loss returned a tensor that does not depend on the parameters (no autograd graph)")
    grads = torch.autograd.grad(loss, tape.tensors, retain_graph=True, allow_unused=True)
    out = {}
    for name, g in zip(tape.names(), grads, strict=True):
        if g is None:
            raise UsageError(
                f"gradtwin.tap({name!r}, ...): the tapped tensor is not on the loss's graph (the loss does not "
                "depend on it: a copy or a detached value was used after tapping)"
            )
        out[name] = g.detach().cpu().to(torch.float64).numpy()
    return out


def graph_leaves(loss: torch.Tensor) -> list[torch.Tensor]:
    """The leaf tensors requiring grad that `loss` was computed from (params, and data made to require grad)."""
    found: dict[int, torch.Tensor] = {}
    seen: set[int] = set()
    stack = [loss.grad_fn]
    while stack:
        fn = stack.pop()
        if fn is None or id(fn) in seen:
            continue
        seen.add(id(fn))
        variable = getattr(fn, "variable", None)
        if isinstance(variable, torch.Tensor):
            found[id(variable)] = variable
        stack.extend(f for f, _ in fn.next_functions)
    return list(found.values())


def params_after(tape: Tape, leaves: Mapping[str, torch.Tensor]) -> dict[str, str | None]:
    """For each parameter leaf, the first tapped tensor in forward order computed from it: the parameter's
    gradient is the step from that tensor (None: no tapped tensor uses it, the step is from the loss)."""
    reach = {name: {id(x) for x in graph_leaves_of(tape[name])} for name in tape.names()}
    return {k: next((t for t in tape.names() if id(leaf) in reach[t]), None) for k, leaf in leaves.items()}


def graph_leaves_of(tensor: torch.Tensor) -> list[torch.Tensor]:
    """graph_leaves for any tensor (a tapped leaf is its own leaf)."""
    return [tensor] if tensor.grad_fn is None else graph_leaves(tensor)


def exact_scales(
    loss: torch.Tensor, tape: Tape, leaves: Sequence[torch.Tensor], grads: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """S_j = sum_k |d (dL/dT)_j / d x_k| |x_k| + |(dL/dT)_j| from the Jacobian (double backward), x over the leaves
    and the tapped tensors' own values: each of those rounds in the forward pass, and a backward step that
    cancels (1 - H**2 at a saturated tanh) magnifies the rounding of its input H, not of the leaves."""
    if not len(tape):
        return {}
    first = torch.autograd.grad(loss, tape.tensors, create_graph=True, retain_graph=True, allow_unused=True)
    flat = torch.cat([g.reshape(-1) for g in first if g is not None])
    inputs = list({id(x): x for x in [*leaves, *tape.tensors]}.values())
    sens = _jacobian_weighted(flat, inputs)
    out, start = {}, 0
    for name in tape.names():
        size = grads[name].size
        out[name] = sens[start : start + size].reshape(grads[name].shape) + np.abs(grads[name])
        start += size
    return out


def sketch_scales(
    torch_loss: Callable[..., torch.Tensor],
    params: Mapping[str, np.ndarray],
    data: Sequence[np.ndarray],
    g0: Mapping[str, np.ndarray],
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """S_j for every tapped element from DRAWS Cauchy projections (parity.sketch's estimator, at linear cost):
    each draw moves every input x_k, and every tapped value as the forward pass makes it, by eps |x_k| v_k,
    v_k standard Cauchy, and differences dL/dT; plus |g|, as exact_scales."""
    rng = np.random.default_rng(seed)
    first = {k: np.zeros(v.shape) for k, v in g0.items()}
    second = {k: np.zeros(v.shape) for k, v in g0.items()}
    cpu = torch.device("cpu")
    for _ in range(DRAWS):
        vp = {k: np.tan(np.pi * (rng.random(v.shape) - 0.5)) for k, v in params.items()}
        vd = [np.tan(np.pi * (rng.random(x.shape) - 0.5)) if x.dtype.kind == "f" else None for x in data]
        vt = {k: np.tan(np.pi * (rng.random(v.shape) - 0.5)) for k, v in g0.items()}
        draws = [*vp.values(), *(v for v in vd if v is not None), *vt.values()]
        eps = STEP / max([1.0, *(float(np.max(np.abs(v), initial=0.0)) for v in draws)])
        moved_p = {k: v + eps * np.abs(v) * vp[k] for k, v in params.items()}
        moved_d = [x if v is None else x + eps * np.abs(x) * v for x, v in zip(data, vd, strict=True)]
        moves = {k: torch.as_tensor(eps * v) for k, v in vt.items()}

        def move(name: str, t: torch.Tensor, moves: dict[str, torch.Tensor] = moves) -> torch.Tensor:
            return t + t.detach().abs() * moves[name]

        tape, loss, _ = run_tapped(torch_loss, moved_p, moved_d, "float64", cpu, perturb=move)
        g1 = autograd_steps(loss, tape)
        for k in g0:
            draw = np.abs(g1[k] - g0[k]) / eps
            draw = np.where(np.isfinite(draw), draw, 0.0)
            second[k] = np.maximum(second[k], np.minimum(first[k], draw))
            first[k] = np.maximum(first[k], draw)
    return {k: FACTOR * v + np.abs(g0[k]) for k, v in second.items()}


def float32_floor(
    S: Mapping[str, np.ndarray], g32: Mapping[str, np.ndarray], g64: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Raise S to |g32 - g64| / u32, what the same loss run in float32 shows its rounding to be."""
    u32 = float(np.finfo(np.float32).eps) / 2
    out = {}
    for k, v in S.items():
        measured = np.abs(g32[k] - g64[k]) / u32
        out[k] = np.where(np.isfinite(measured), np.maximum(v, measured), v)
    return out


def _step(
    name: str,
    h: np.ndarray,
    h64: np.ndarray | None,
    a: np.ndarray,
    r: np.ndarray,
    t_d: np.ndarray,
    t_64: np.ndarray,
    dtype: str,
    label: str,
    context: tuple[int | None, Sequence[np.ndarray], Mapping[str, np.ndarray]],
) -> StepCheck:
    """Every comparison of one step, its worst element and, on a mismatch, the pattern that explains it.

    context: (n, the data's integer arrays, the other steps' float64 dL/dT), for diagnose.pattern."""
    checks = [compare(f"{label} vs autograd", name, h, a, 2 * t_d)]
    bad = ~(np.abs(h - a) <= 2 * t_d)
    arrays = {checks[0].comparison: (h, a, 2 * t_d)}
    if dtype != "float64":
        auto_off = ~(np.abs(a - r) <= t_d + t_64)
        excused = auto_off & ~bad if dtype in HALF else np.zeros(h.shape, dtype=bool)  # beyond first order
        for who, x in ((label, h), ("autograd", a)):
            c = compare(f"{who} {dtype} vs float64", name, x, r, t_d + t_64, where=~excused)
            checks.append(c)
            arrays[c.comparison] = (x, r, t_d + t_64)
            bad |= ~(np.abs(x - r) <= t_d + t_64) & ~excused
    if h64 is not None and dtype != "float64":
        c = compare(f"{label} float64 vs autograd float64", name, h64, r, 2 * t_64)
        checks.append(c)
        arrays[c.comparison] = (h64, r, 2 * t_64)
        bad |= ~(np.abs(h64 - r) <= 2 * t_64)
    ok = all(c.ok for c in checks)
    worst = max(checks, key=lambda c: (not c.ok, c.worst_err / max(c.tol, _TINY)))
    i = worst.worst_index
    diagnosis = None
    if not ok:
        seen, ref_tol = (h, np.broadcast_to(t_d + t_64, h.shape)) if dtype != "float64" else (h, 2 * t_d)
        if h64 is not None and not np.all(np.abs(h64 - r) <= 2 * t_64):
            seen, ref_tol = h64, 2 * t_64  # wrong in float64 too: diagnose it there, sharper
        diagnosis = diagnose.pattern(seen, r, np.broadcast_to(ref_tol, h.shape), *context)
    x, y, t = arrays[worst.comparison]
    return StepCheck(
        name=name,
        shape=tuple(h.shape),
        ok=ok,
        abs_err=worst.worst_err,
        rel_err=worst.worst_err / max(float(np.max(np.abs(r), initial=0.0)), _TINY),
        tol=worst.tol,
        worst_index=i,
        hand=float(h[i]),
        autograd=float(a[i]),
        hand_norm=float(np.linalg.norm(h.reshape(-1))),
        hand_max=float(np.max(np.abs(h), initial=0.0)),
        autograd_norm=float(np.linalg.norm(a.reshape(-1))),
        autograd_max=float(np.max(np.abs(a), initial=0.0)),
        diagnosis=diagnosis,
        reference=float(r[i]),
        comparison=worst.comparison,
        checks=checks,
        size=int(h.size),
        n_bad=int(bad.sum()),
        worst=[] if ok else _worst_elements(x, y, np.broadcast_to(t, h.shape), bad),
    )


def _worst_elements(
    a: np.ndarray, b: np.ndarray, tol: np.ndarray, bad: np.ndarray
) -> list[tuple[tuple[int, ...], float, float, float, float]]:
    """Of the elements that disagree, the SHOWN farthest outside their tolerance: (index, a, b, err, tol)."""
    err = np.abs(a - b)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.nan_to_num(err / np.maximum(tol, _TINY), nan=np.inf).reshape(-1)
    ratio = np.where(bad.reshape(-1), ratio, -np.inf)
    out = []
    for j in np.argsort(-ratio, kind="stable")[: min(SHOWN, int(bad.sum()))]:
        idx = tuple(int(k) for k in np.unravel_index(int(j), a.shape))
        out.append((idx, float(a[idx]), float(b[idx]), float(err[idx]), float(tol[idx])))
    return out


def _given(hand: Mapping[str, Any], tape: Tape, params: Collection[str], what: str) -> set[str]:
    """The hand names that are intermediates; a name that is neither a parameter nor tapped is refused."""
    names = {k for k in hand if k not in params}
    for k in sorted(names):
        if k not in tape:
            tapped = ", ".join(tape.names()) or "none"
            raise UsageError(
                f"{what}[{k!r}] is neither a parameter nor a tensor the torch loss taps (tapped: {tapped}); "
                f"mark it in torch_loss with gradtwin.tap({k!r}, tensor)"
            )
    return names


def _numpy(value: Any, what: str, shape: tuple[int, ...], name: str) -> np.ndarray:
    """A hand intermediate gradient as float64 NumPy, of the tapped tensor's shape."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().to(torch.float64).numpy()
    try:
        arr = np.array(value, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise UsageError(f"{what} must be an array of numbers; got {type(value).__name__} ({e})") from None
    if arr.shape != shape:
        hint = " (its transpose: return the transpose)" if arr.ndim >= 2 and arr.shape == shape[::-1] else ""
        raise UsageError(f"{what} must have the shape of the tapped tensor {name!r}, {shape}; got {arr.shape}{hint}")
    return arr


def _shared_leading(tape: Tape) -> int | None:
    lengths = {t.shape[0] if t.ndim else None for t in tape.tensors}
    return next(iter(lengths)) if len(lengths) == 1 and None not in lengths else None


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _tolerance_note(K: int, bound: Bound, bound64: Bound, dtype: str, how: str) -> str:
    more = f", {bound64.describe()} in float64" if dtype != "float64" else ""
    return f"steps: tolerance gamma * S with K = {K} summed terms; {bound.describe()} in {dtype}{more}; {how}"

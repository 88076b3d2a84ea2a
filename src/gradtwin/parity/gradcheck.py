"""The gradient parity checker for anyone's code: hand-derived vs autograd vs finite differences.

    report = check_gradients(manual_gradients, torch_loss, params, (X, Y), dtype="float32")
    print(report)                      # a table; report.to_json() for machines
    assert_gradients_match(...)        # the same, raising AssertionError with the report

`manual_gradients(params, *data) -> dict` gets NumPy arrays in `dtype`, or torch tensors on
`device` when `params` are tensors; `torch_loss(params, *data) -> 0-d tensor` gets tensors.
Per parameter the checker compares
  - hand vs autograd in `dtype`, every element               within 2 * gamma(K) * S
  - below float64: each against autograd in float64          within (gamma_dtype + gamma_64) * S
  - on another device: autograd there against the cpu        within 2 * gamma(K) * S
  - hand and autograd in float64 against central finite differences of `torch_loss` in float64,
    within the finite-difference error bound plus gamma_64(K) * S;
where gamma is the worst-case bound while K*u <= 1e-3 and Higham and Mary's probabilistic bound
beyond (rounding.rounding_bound), and S the rounding scale of each element. Two methods:
  exhaustive (up to EXHAUSTIVE_MAX elements): S from the Jacobian (autograd_scales), finite
    differences of every element;
  sampled (above): S from a Cauchy sketch (sketch.py, DRAWS passes), finite differences of the
    worst and of random elements of each parameter and along one random direction per parameter.
S is raised to what the loss shows in float32 (`_with_float32_floor`), plus an underflow floor.
The rule is written out with its reasons in the README ("The tolerance rule and why").

Intermediates: keys of the hand dict that are not parameters are dL/dT of tensors T that
torch_loss marks with gradtwin.tap(name, T); they are compared in graph order, from the loss
back, by gradtwin.steps (report.steps), and the first wrong step is named.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from gradtwin.devices import HALF, check_dtype, numpy_dtype, resolve_device, torch_dtype
from gradtwin.errors import UsageError
from gradtwin.parity import diagnose
from gradtwin.parity.autograd_scales import autograd_scales, samples_of
from gradtwin.parity.compare import ParamCheck, compare
from gradtwin.parity.finite_diff import directional, finite_differences
from gradtwin.parity.kinks import Kinks, Probe, probe
from gradtwin.parity.noise import loss_noise
from gradtwin.parity.report import SHOWN, Element, GradientReport, ParamReport
from gradtwin.parity.rounding import ROUNDING_OPS, Bound, rounding_bound, tolerance
from gradtwin.parity.sketch import MISS, sketch_scales
from gradtwin.steps.compare import StepsReport, check_steps, parameter_sentence
from gradtwin.steps.tap import recording

__all__ = ["GradientReport", "ParamReport", "assert_gradients_match", "check_gradients"]

ManualGradients = Callable[..., Mapping[str, Any]]
TorchLoss = Callable[..., torch.Tensor]
Scale = Callable[..., Mapping[str, Any]]
_TINY = np.finfo(np.float64).tiny
MAX_KINK_PROBES = 64  # failing elements probed for a kink (six loss evaluations each)
MAX_KINK_PROBES_SAMPLED = 8  # the same in the sampled method, whose budget is a few dozen evaluations
# Up to this many parameter elements the check is exhaustive (a Jacobian and a finite
# difference per element: about 1 s at 1,000); above it, sampled, at linear cost.
EXHAUSTIVE_MAX = 1000
SAMPLE_WORST = 1  # per parameter, the elements where hand and autograd differ most get finite differences
DRILL = 4  # where a projection disagrees: elements differenced one by one, the largest |d g| and random ones
METHODS = ("auto", "exhaustive", "sampled")


def check_gradients(
    manual_gradients: ManualGradients,
    torch_loss: TorchLoss,
    params: Mapping[str, Any],
    data: Any,
    *,
    dtype: str = "float64",
    device: str = "cpu",
    manual_loss: Callable[..., Any] | None = None,
    scale: Scale | None = None,
    loss_scale: Callable[..., Any] | None = None,
    n_terms: int | None = None,
    allow_kinks: bool = False,
    manual_array: str = "auto",
    label: str = "hand",
    method: str = "auto",
    seed: int = 0,
) -> GradientReport:
    """Check `manual_gradients` against autograd of `torch_loss` and finite differences.

    params: dict name -> array or tensor (0-d for a scalar). data: a tuple of arrays (X, Y, ...),
    one array, or a Dataset; both functions are called as f(params, *data).
    dtype: 'float64', 'float32', 'float16' or 'bfloat16' (bfloat16 needs torch hand gradients).
    manual_loss: the hand-written loss, compared with torch_loss first when given.
    scale, loss_scale: f(params, *data) -> sum|terms| of each gradient element / of the loss,
    replacing the scale autograd estimates. n_terms: the length K of the longest sum
    (default: every element of the data and parameters, plus ROUNDING_OPS).
    allow_kinks: accept a mismatch where the loss has a kink and both sides are subgradients.
    manual_array: 'auto' (torch when a param or data array is a torch tensor, else numpy),
    'numpy', or 'torch' (tensors in `dtype` on `device`, no autograd; returned tensors must be
    in that dtype on that device). method: 'auto' (exhaustive up to EXHAUSTIVE_MAX parameter
    elements, sampled above), 'exhaustive' or 'sampled'. seed: of the sampled method's draws.
    Keys of manual_gradients' dict beyond the parameters are intermediates: hand["Z"] is dL/dZ of
    the tensor torch_loss taps as gradtwin.tap("Z", ...), of its shape (report.steps).
    """
    check_dtype(dtype, half=True)
    array = _array_kind(manual_array, params, data)
    if dtype == "bfloat16" and array == "numpy":
        raise UsageError(
            "dtype 'bfloat16' has no NumPy type: pass params as torch tensors (or manual_array='torch') "
            "and return torch tensors from manual_gradients"
        )
    if method not in METHODS:
        raise UsageError(f"method must be one of {', '.join(METHODS)}; got {method!r}")
    p64, d64 = _as_params(params), _as_data(data)
    dev = resolve_device(device, dtype, half=True)
    if dtype in HALF:
        _fits(dtype, {**{f"params[{k!r}]": v for k, v in p64.items()}, **{f"data[{i}]": x for i, x in enumerate(d64)}})
    size = sum(v.size for v in p64.values())
    sampled = method == "sampled" or (method == "auto" and size > EXHAUSTIVE_MAX)
    K = n_terms if n_terms is not None else sum(x.size for x in d64) + size
    bound = rounding_bound(dtype, K + ROUNDING_OPS, outputs=size + 1)
    bound64 = rounding_bound("float64", K + ROUNDING_OPS, outputs=size + 1)
    cpu = torch.device("cpu")
    with tf32_off() as tf32_note:
        with recording() as seen:  # which intermediates torch_loss taps, at no extra run
            loss64, g64, sensitivity = _reference(torch_loss, p64, d64, sampled)
        if scale is not None:
            S = _user_scale(scale, p64, d64)
            S_loss = float(np.asarray(loss_scale(p64, *d64))) if loss_scale is not None else abs(loss64)
        elif sampled:
            S = sketch_scales(lambda p, d: autograd_gradients(torch_loss, p, d, "float64", cpu)[1], p64, d64, g64, seed)
            S = {k: np.maximum(v, np.abs(g64[k])) for k, v in S.items()}
            S_loss = sensitivity + abs(loss64)
        else:
            S, S_loss = autograd_scales(torch_loss, p64, d64, K)
        hand_dev = dev if array == "torch" else cpu
        extra: dict[str, Any] = {}  # the intermediates' hand gradients, keyed by tap name
        extra64: dict[str, Any] = {}
        reduced: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {}  # name -> (shape returned, axes summed)
        hand, flipped = manual(manual_gradients, p64, d64, dtype, array, hand_dev, seen.names(), extra, reduced)
        hand64 = (
            hand if dtype == "float64" else manual(manual_gradients, p64, d64, "float64", array, cpu, seen.names(),
                                                   extra64, {})[0]
        )  # fmt: skip
        # the same computation is run once: float64 on the cpu is the reference itself
        same = dtype == "float64" and dev.type == "cpu"
        loss_d, auto = (loss64, g64) if same else autograd_gradients(torch_loss, p64, d64, dtype, dev)
        auto_cpu = autograd_gradients(torch_loss, p64, d64, dtype, cpu)[1] if dev.type != "cpu" else {}
        run32 = (loss_d, auto) if dtype == "float32" and dev.type == "cpu" else None
        S, S_loss = _with_float32_floor(torch_loss, p64, d64, g64, loss64, S, S_loss, run32)

    steps: StepsReport | None = None
    related: dict[str, np.ndarray] = {}  # autograd's float64 dL/dT of every tapped T, for the diagnoses
    if extra or seen.names():
        with tf32_off():
            steps = check_steps(extra, extra64 if dtype != "float64" else None, torch_loss, p64, d64, dtype=dtype,
                                device=dev, n_terms=K, sketch=sampled, seed=seed, samples=samples_of(d64),
                                label=label, what="manual_gradients()", grads_out=related)  # fmt: skip

    def loss_fn(p: dict[str, np.ndarray]) -> float:
        return float(_torch_loss64(torch_loss, p, d64))

    floor = {dt: underflow_floor(dt, K, p64, d64) for dt in {dtype, "float64"}}

    def tol(b: Bound, dt: str, name: str) -> np.ndarray:
        return b.gamma * S[name] + floor[dt]

    # Rounding bound of one loss evaluation: the a-priori gamma(K) * S, or, where the loss rounds
    # more than S shows, the measured noise sigma. K roundings of up to q/2 each have standard
    # deviation q/2 * sqrt(K/3) and reach at most K*q/2 = sqrt(3K) sigma; twice that, as sigma is
    # itself estimated from nine points. The sampled method measures sigma on each line it
    # differences along (finite_diff.directional), the exhaustive one along four random lines.
    fd_apriori = float(tolerance(np.float64, K, S_loss))

    def referee(fd_error: float | None) -> tuple[list[ParamReport], list[str], list[str]]:
        """Every parameter's comparisons. fd_error: the bound on one loss evaluation, or None for the
        exhaustive method's own (the a-priori bound, or the noise measured along four random lines)."""
        excused: list[str] = []
        if sampled:
            fd_error = fd_apriori if fd_error is None else fd_error
            only = _fd_sample(hand, auto, hand64, g64, {k: tol(bound, dtype, k) for k in p64},
                              {k: tol(bound64, "float64", k) for k in p64})  # fmt: skip
            fd, fd_bound = _sampled_differences(loss_fn, p64, only, fd_error, K + ROUNDING_OPS)
            rng = np.random.default_rng(seed + 1)
            t64 = {k: tol(bound64, "float64", k) for k in p64}
            d_all = {k: _direction(rng, v) for k, v in p64.items()}
            overall = _project(loss_fn, p64, d_all, {"hand": hand64, "autograd": g64}, t64, fd_error, K + ROUNDING_OPS,
                               label, "all")  # fmt: skip
            per_tensor = not overall[-1].ok  # autograd's projection disagrees: look at each parameter
        else:
            fd_error = max(fd_apriori, 2.0 * math.sqrt(3.0 * (K + ROUNDING_OPS)) * loss_noise(loss_fn, p64))
            fd, fd_bound = finite_differences(loss_fn, p64, fd_error)
        flat = _abstain_on_plateaus(fd, fd_bound, g64)

        params_out: list[ParamReport] = []
        for name in p64:
            t_d, t_64 = tol(bound, dtype, name), tol(bound64, "float64", name)
            along: list[ParamCheck] = []
            if sampled and per_tensor:
                grads = {"hand": hand64[name], "autograd": g64[name]}
                along, drill = _directional_checks(
                    loss_fn, p64, name, grads, t_64, fd_error, K + ROUNDING_OPS, rng, label
                )
                if drill:  # a projection disagrees: difference elements one by one to see where, if anywhere
                    more, more_bound = _sampled_differences(loss_fn, p64, {name: drill}, fd_error, K + ROUNDING_OPS)
                    for i in drill:
                        fd[name][i], fd_bound[name][i] = more[name][i], more_bound[name][i]
            suspects = ~(np.abs(hand[name] - auto[name]) <= 2 * t_d)
            for ref in (hand64[name], g64[name]):
                suspects |= ~(np.abs(ref - fd[name]) <= fd_bound[name] + t_64) & np.isfinite(fd_bound[name])
            if sampled:  # probe only where finite differences were taken: a probe costs a dozen evaluations
                suspects &= ~np.isnan(fd[name])
            probes = MAX_KINK_PROBES_SAMPLED if sampled else MAX_KINK_PROBES
            kinks = (
                {}
                if name in flipped or name in reduced
                else _refine(loss_fn, p64, name, suspects, fd[name], fd_bound[name], fd_apriori, probes)
            )
            differenced = ~np.isnan(fd[name])
            checks: list[ParamCheck] = []
            arrays: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
            bad = np.zeros(p64[name].shape, dtype=bool)

            def cmp(comparison: str, a: np.ndarray, b: np.ndarray, t: np.ndarray, where: Any = None) -> None:
                nonlocal bad
                checks.append(compare(comparison, name, a, b, t, where=where))  # noqa: B023 (used at once)
                fails = ~(np.abs(a - b) <= t)
                fails = fails if where is None else fails & where
                arrays[comparison] = (a, b, np.broadcast_to(t, fails.shape))  # noqa: B023
                bad = bad | fails

            cmp(f"{label} vs autograd", hand[name], auto[name], 2 * t_d)
            if dtype != "float64":
                cmp(f"{label} {dtype} vs float64", hand[name], g64[name], t_d + t_64)
                cmp(f"autograd {dtype} vs float64", auto[name], g64[name], t_d + t_64)
                if dtype in HALF and not checks[-1].ok:
                    below = _beyond_first_order(checks, bad, arrays, hand[name], auto[name], 2 * t_d)
                    excused.append(f"{name}: {below}")
                cmp(f"{label} float64 vs autograd float64", hand64[name], g64[name], 2 * t_64)
            if dev.type != "cpu":
                cmp(f"autograd {dev} vs cpu", auto[name], auto_cpu[name], 2 * t_d)
            where = differenced if sampled else None
            cmp(f"{label} float64 vs finite diff", hand64[name], fd[name], fd_bound[name] + t_64, where)
            cmp("autograd float64 vs finite diff", g64[name], fd[name], fd_bound[name] + t_64, where)
            if along and not all(c.ok for c in along) and not bad.any():
                along = [_excused(c) for c in along]
                excused.append(
                    f"{name}: the projection on a random direction disagreed with finite differences along it, but "
                    f"each of {int(differenced.sum())} elements differenced one by one agrees: the loss rounds too "
                    "coarsely along that direction for its differences to resolve d . g (a loss far below its terms)"
                )
            checks += along
            ref_tol = t_d + t_64 + (fd_bound[name] if dtype == "float64" and not sampled else 0.0)
            values = {
                "hand": hand[name],
                "autograd": auto[name],
                "reference": g64[name],
                "fd": fd[name],
                "seen": hand[name],
            }
            if dtype != "float64" and not np.all(np.abs(hand64[name] - g64[name]) <= 2 * t_64):
                values["seen"], ref_tol = hand64[name], 2 * t_64  # wrong in float64 too: diagnose it there, sharper
            report = _param_report(name, p64[name].shape, checks, bad, values, ref_tol, name in flipped, kinks,
                                   allow_kinks, d64, arrays, reduced.get(name), related)  # fmt: skip
            params_out.append(report)
        if sampled:
            if per_tensor and all(c.ok for p in params_out for c in p.checks if "direction" in c.comparison):
                overall = [_excused(c) for c in overall]
            directions[:] = overall
        return params_out, excused, flat

    directions: list[ParamCheck] = []

    params_out, excused, flat = referee(None)
    if sampled and _referee_failed(params_out):
        # Finite differences disagree somewhere: before believing them, measure the loss's rounding
        # noise along four random lines at four spacings, as the exhaustive method does, and look again.
        noise = loss_noise(loss_fn, p64)
        params_out, excused, flat = referee(max(fd_apriori, 2.0 * math.sqrt(3.0 * (K + ROUNDING_OPS)) * noise))
        excused.append(
            "finite differences first disagreed; the loss's rounding noise, measured along four random lines at "
            f"four spacings (sigma = {noise:.3g}), then set their bound"
        )
    loss_checks = _loss_checks(manual_loss, p64, d64, dtype, loss_d, loss64, K, S_loss, label, bound, bound64)
    if steps is not None:
        steps.first_wrong = steps.first_wrong or _first_wrong_parameter(steps, params_out, seen.names())
    notes = [
        tf32_note,
        *flat,
        f"tolerance: gamma * S with K = {K} summed terms; {bound.describe()} in {dtype}"
        + (f", {bound64.describe()} in float64" if dtype != "float64" else ""),
        f"S from {_scale_source(scale, sampled)}",
        _method_note(sampled, size),
        *_meaningless(bound, dtype, K),
        *excused,
        *(steps.notes if steps is not None else []),
    ]
    steps_ok = steps is None or steps.ok
    return GradientReport(
        ok=all(p.ok for p in params_out) and all(c.ok for c in [*loss_checks, *directions]) and steps_ok,
        dtype=dtype,
        device=str(dev),
        params=params_out,
        loss=loss_checks,
        diagnoses=_report_diagnoses(params_out),
        notes=notes,
        method="sampled" if sampled else "exhaustive",
        directions=directions,
        steps=steps,
    )


def _first_wrong_parameter(steps: StepsReport, params: list[ParamReport], tapped: list[str]) -> str | None:
    """Every checked intermediate agrees but a parameter does not: the step from the nearest checked tensor
    computed from it (walking from the loss back, the first such parameter)."""
    checked = [s.name for s in steps.steps]

    def source(name: str) -> str | None:  # the checked tensor the parameter's gradient comes from, None: the loss
        first = steps.after.get(name)
        later = tapped[tapped.index(first) :] if first in tapped else []
        return next((t for t in later if t in checked), None)

    wrong = [p.name for p in params if not p.ok]
    if not wrong:
        return None
    nearest = max(wrong, key=lambda p: len(tapped) if source(p) is None else tapped.index(source(p)))  # type: ignore[arg-type]
    return parameter_sentence(nearest, source(nearest))


def _beyond_first_order(
    checks: list[ParamCheck],
    bad: np.ndarray,
    arrays: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
    hand: np.ndarray,
    auto: np.ndarray,
    t_pair: np.ndarray,
) -> str:
    """In float16 / bfloat16, autograd itself misses float64 by more than the first-order bound.

    Rounding X, W to the dtype can flip a ReLU or saturate a softmax: the error is then not
    first order in u, and no bound of the form gamma * S holds. What is still asked of the
    hand code there is to match autograd in the same dtype. The two comparisons with float64
    are kept, marked as passing where autograd fails too and hand agrees with it; elsewhere
    they stand. Updates `checks` (the last two) and `bad` in place; returns the note.
    """
    same = np.abs(hand - auto) <= t_pair
    hand_check, auto_check = checks[-2], checks[-1]
    a_hand, b_hand, t_hand = arrays[hand_check.comparison]
    a_auto, b_auto, t_auto = arrays[auto_check.comparison]
    auto_off = ~(np.abs(a_auto - b_auto) <= t_auto)
    hand_off = ~(np.abs(a_hand - b_hand) <= t_hand)
    excused = auto_off & same
    keep = hand_off & ~excused
    checks[-1] = replace(auto_check, ok=True)
    checks[-2] = replace(hand_check, ok=not keep.any())
    bad &= ~excused
    bad |= keep
    n = int(auto_off.sum())
    return (
        f"autograd in the checked dtype misses float64 beyond the first-order bound at {n} element(s) (rounding to "
        "the dtype flips a ReLU or saturates a softmax); there the hand code is held to autograd in the same dtype"
    )


def _referee_failed(params: list[ParamReport]) -> bool:
    """Some comparison with finite differences failed."""
    return any(not c.ok and "finite diff" in c.comparison for p in params for c in p.checks)


def _array_kind(manual_array: str, params: Any, data: Any) -> str:
    """'numpy' or 'torch': what the hand-derived function is given and returns."""
    if manual_array not in ("auto", "numpy", "torch"):
        raise UsageError(f"manual_array must be 'auto', 'numpy' or 'torch'; got {manual_array!r}")
    if manual_array != "auto":
        return manual_array
    arrays = data if isinstance(data, (tuple, list)) else [data]
    values = [*(params.values() if isinstance(params, Mapping) else []), *arrays]
    return "torch" if any(isinstance(v, torch.Tensor) for v in values) else "numpy"


def _reference(
    torch_loss: TorchLoss, params: dict[str, np.ndarray], data: Sequence[np.ndarray], sensitive: bool
) -> tuple[float, dict[str, np.ndarray], float]:
    """The float64 loss and gradients on the cpu; with `sensitive`, from the same backward pass,
    sum_k |dL/dx_k| |x_k| over every element of params and real data (the loss's scale)."""
    if not sensitive:
        return (*autograd_gradients(torch_loss, params, data, "float64", torch.device("cpu")), 0.0)
    leaves = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    d = [torch.tensor(x) if x.dtype.kind == "i" else torch.tensor(x, requires_grad=True) for x in data]
    value = _scalar(torch_loss(leaves, *d))
    if not value.requires_grad:
        raise UsageError("torch_loss returned a tensor that does not depend on the parameters (no autograd graph)")
    inputs = [*leaves.values(), *(x for x in d if x.requires_grad)]
    grads = torch.autograd.grad(value, inputs, allow_unused=True)
    terms = [float((g.abs() * x.detach().abs()).sum()) for g, x in zip(grads, inputs, strict=True) if g is not None]
    g64 = {
        k: np.zeros(v.shape) if g is None else g.numpy().astype(np.float64)
        for (k, v), g in zip(leaves.items(), grads, strict=False)
    }
    return float(value.detach()), g64, float(sum(terms))


def _sampled_differences(
    loss: Callable[[dict[str, np.ndarray]], float],
    p64: dict[str, np.ndarray],
    only: dict[str, list[tuple[int, ...]]],
    fd_error: float,
    n_terms: int,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Finite differences at the sampled elements, each along its own line of nine points (its noise
    measured there); NaN with an infinite bound elsewhere."""
    fd = {k: np.full(v.shape, np.nan) for k, v in p64.items()}
    bound = {k: np.full(v.shape, np.inf) for k, v in p64.items()}
    for name, indices in only.items():
        for idx in indices:
            d = {k: np.zeros(v.shape) for k, v in p64.items()}
            d[name][idx] = max(1.0, abs(float(p64[name][idx])))
            fd[name][idx], bound[name][idx] = directional(loss, p64, d, fd_error, n_terms)
    return fd, bound


def _fd_sample(
    hand: dict[str, np.ndarray],
    auto: dict[str, np.ndarray],
    hand64: dict[str, np.ndarray],
    g64: dict[str, np.ndarray],
    t_d: dict[str, np.ndarray],
    t_64: dict[str, np.ndarray],
) -> dict[str, list[tuple[int, ...]]]:
    """Per parameter, the elements the sampled method differences one by one from the start.

    The SAMPLE_WORST elements where hand and autograd (in the dtype, or in float64) differ
    most against their tolerance, if they differ beyond it: finite differences then say which
    side is wrong there. A check where hand and autograd agree differences nothing here.
    """
    out: dict[str, list[tuple[int, ...]]] = {}
    for k, g in g64.items():
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.maximum(np.abs(hand[k] - auto[k]) / (2 * t_d[k]), np.abs(hand64[k] - g) / (2 * t_64[k]))
        ratio = np.nan_to_num(ratio, nan=np.inf).reshape(-1)
        picks = (
            np.argpartition(-ratio, SAMPLE_WORST - 1)[:SAMPLE_WORST] if ratio.size > SAMPLE_WORST else range(ratio.size)
        )
        out[k] = [tuple(int(i) for i in np.unravel_index(int(j), g.shape)) for j in picks if ratio[j] > 1.0]
    return out


def _direction(rng: np.random.Generator, p: np.ndarray) -> np.ndarray:
    """d_k = +-max(1, |p_k|): a random direction on the per-element step's scale."""
    return rng.choice([-1.0, 1.0], size=p.shape) * np.maximum(1.0, np.abs(p))


def _project(
    loss: Callable[[dict[str, np.ndarray]], float],
    p64: dict[str, np.ndarray],
    d: dict[str, np.ndarray],
    grads: dict[str, dict[str, np.ndarray]],
    t_64: dict[str, np.ndarray],
    fd_error: float,
    n_terms: int,
    label: str,
    name: str,
) -> list[ParamCheck]:
    """Each float64 gradient (hand, autograd) projected on `d` (the tensors it moves), against
    finite differences along d (nine loss evaluations).

    The projection d . g errs by at most sum_k |d_k| t_k (each element's rounding) plus
    gamma(size) sum_k |d_k g_k| (the dot product). A loss exactly flat along d resolves
    nothing: the bound is then inf.
    """
    value, fd_bound = directional(loss, p64, d, fd_error, n_terms)
    if value == 0.0:
        fd_bound = math.inf
    g_bound = rounding_bound("float64", sum(v.size for v in d.values())).gamma
    out = []
    for who, g in grads.items():
        proj = sum(float(np.sum(v * g[k])) for k, v in d.items())
        t = fd_bound + sum(float(np.sum(np.abs(v) * t_64[k])) for k, v in d.items())
        t += g_bound * sum(float(np.sum(np.abs(v * g[k]))) for k, v in d.items())
        title = label if who == "hand" else who
        out.append(compare(f"{title} float64 vs finite diff along a random direction", name, proj, value, t))
    return out


def _directional_checks(
    loss: Callable[[dict[str, np.ndarray]], float],
    p64: dict[str, np.ndarray],
    name: str,
    grads: dict[str, np.ndarray],
    t_64: np.ndarray,
    fd_error: float,
    n_terms: int,
    rng: np.random.Generator,
    label: str,
) -> tuple[list[ParamCheck], list[tuple[int, ...]]]:
    """The projections of params[name]'s gradients on a random direction of that parameter alone;
    and, where autograd's disagrees, the elements to difference one by one (DRILL with the largest
    |d_k g_k| and DRILL random ones): they tell a real disagreement from a loss that rounds too
    coarsely along d."""
    d = _direction(rng, p64[name])
    out = _project(loss, p64, {name: d}, {k: {name: g} for k, g in grads.items()}, {name: t_64}, fd_error, n_terms,
                   label, name)  # fmt: skip
    if out[-1].ok:  # autograd's projection agrees: a hand one that does not is the hand's mistake
        return out, []
    flat = np.abs(d * grads["autograd"]).reshape(-1)
    top = np.argsort(-flat, kind="stable")[:DRILL]
    picks = {int(j) for j in top} | {int(j) for j in rng.integers(0, d.size, DRILL)}
    return out, [tuple(int(i) for i in np.unravel_index(j, d.shape)) for j in sorted(picks)]


def _excused(c: ParamCheck) -> ParamCheck:
    """A projection whose disagreement the elementwise differences did not confirm: not a failure."""
    return replace(c, ok=True, tol=math.inf)


def _method_note(sampled: bool, size: int) -> str:
    if not sampled:
        return f"method: exhaustive ({size} parameter elements): a Jacobian and a finite difference per element"
    return (
        f"method: sampled ({size} parameter elements): every element hand vs autograd; finite differences along "
        "one random direction per parameter, and one by one where hand and autograd or a projection disagree; "
        f"S from a Cauchy sketch, below the exact scale with probability {MISS:.2g} per element"
    )


def _meaningless(bound: Bound, dtype: str, K: int) -> list[str]:
    if 2 * bound.gamma < 1.0:
        return []
    return [
        f"in {dtype} the rounding bound 2 gamma = {2 * bound.gamma:.3g} exceeds 1 at K = {K}: no wrong gradient "
        "can be told from rounding at this size; check in a wider dtype or pass n_terms if your sums are shorter"
    ]


def _abstain_on_plateaus(
    fd: dict[str, np.ndarray], fd_bound: dict[str, np.ndarray], g64: dict[str, np.ndarray]
) -> list[str]:
    """Where the loss took the same value at p - h and p + h, finite differences resolve nothing.

    A loss of 1e-26 under logits of 100 rounds to exactly 0 everywhere near p; its central
    difference is 0 whatever the gradient. There the referee abstains (infinite bound); hand vs
    autograd is still compared. Returns a note naming how many elements it skipped.
    """
    notes = []
    for name, values in fd.items():
        flat = (values == 0.0) & (g64[name] != 0.0)
        if flat.any():
            fd_bound[name] = np.where(flat, math.inf, fd_bound[name])
            notes.append(
                f"finite differences abstain on {int(flat.sum())} element(s) of {name}: the loss is exactly "
                "flat there in float64 (L(p-h) == L(p+h)); hand vs autograd is still compared"
            )
    return notes


def _with_float32_floor(
    torch_loss: TorchLoss,
    p64: dict[str, np.ndarray],
    d64: Sequence[np.ndarray],
    g64: dict[str, np.ndarray],
    loss64: float,
    S: dict[str, np.ndarray],
    S_loss: float,
    run32: tuple[float, dict[str, np.ndarray]] | None = None,
) -> tuple[dict[str, np.ndarray], float]:
    """Raise the scales to what the same autograd loss, run in float32, shows its rounding to be.

    Rounding inside one kernel (binary_cross_entropy_with_logits computes z - z*y + log1p(..))
    cancels quantities whose size no derivative reveals. Evaluated in float32 the same code
    errs by about u32 * (its true scale), 2^29 times more than in float64; |f32 - f64| / u32
    is therefore a measured floor on the scale. Non-finite float32 results (overflow) are skipped.
    run32: the float32 cpu run when the check made it already.
    """
    u32 = float(np.finfo(np.float32).eps) / 2
    loss32, g32 = run32 or autograd_gradients(torch_loss, p64, d64, "float32", torch.device("cpu"))
    out = {}
    for k, v in S.items():
        measured = np.abs(g32[k] - g64[k]) / u32
        out[k] = np.where(np.isfinite(measured), np.maximum(v, measured), v)
    measured_loss = abs(loss32 - loss64) / u32
    return out, max(S_loss, measured_loss) if math.isfinite(measured_loss) else S_loss


def underflow_floor(dtype: str, n_terms: int, params: Mapping[str, np.ndarray], data: Sequence[np.ndarray]) -> float:
    """Absolute error that underflow can add: the relative bound gamma(K) * S misses it.

    A result below the smallest normal number lambda may lose all its digits: flushed to zero
    (GPUs run float32 with flush-to-zero), or formed as 1 / inf after an overflow (torch's
    sigmoid at z = -720 gives 0 where the value is 4e-313). Each such result errs by at most
    lambda (Higham sec. 2.1, with |eta| <= lambda). K of them, each carried into a gradient
    element by at most M = max(1, largest |input|)^2 (a product of two layers' inputs), give
    K * lambda * M: about 1e-37 in float32 and 1e-306 in float64 for K = 10 and M = 1.
    """
    biggest = max([1.0, *(float(np.max(np.abs(x), initial=0.0)) for x in (*params.values(), *data))])
    return n_terms * float(torch.finfo(torch_dtype(dtype, half=True)).tiny) * biggest**2


def assert_gradients_match(*args: Any, **kwargs: Any) -> GradientReport:
    """`check_gradients`, raising AssertionError carrying the report's table on a mismatch."""
    report = check_gradients(*args, **kwargs)
    if not report.ok:
        raise AssertionError("gradients do not match\n" + report.table())
    return report


@contextlib.contextmanager
def tf32_off() -> Iterator[str]:
    """Switch TF32 matmul and convolutions off (full float32), and restore them after."""
    precision = torch.get_float32_matmul_precision()
    cudnn = torch.backends.cudnn.allow_tf32
    was_on = precision != "highest" or (torch.cuda.is_available() and cudnn)
    torch.set_float32_matmul_precision("highest")
    torch.backends.cudnn.allow_tf32 = False
    try:
        how = "switched off, then restored" if was_on else "already off"
        yield f"TF32 matmul and convolutions were off while checking ({how})"
    finally:
        torch.set_float32_matmul_precision(precision)
        torch.backends.cudnn.allow_tf32 = cudnn


def _as_params(params: Mapping[str, Any]) -> dict[str, np.ndarray]:
    if not isinstance(params, Mapping) or not params:
        raise UsageError(f"params must be a non-empty dict name -> array; got {type(params).__name__}")
    out = {}
    for k, v in params.items():
        if not isinstance(k, str):
            raise UsageError(f"params keys must be strings; got {k!r}")
        arr = _to_float64(v, f"params[{k!r}]")
        out[k] = arr
    return out


def _as_data(data: Any) -> tuple[np.ndarray, ...]:
    if hasattr(data, "X") and hasattr(data, "Y"):
        data = (data.X, data.Y)
    elif not isinstance(data, (tuple, list)):
        data = (data,)
    return tuple(_as_data_array(x, f"data[{i}]") for i, x in enumerate(data))


def _as_data_array(value: Any, what: str) -> np.ndarray:
    """Integer data (class indices for F.cross_entropy) stays int64; everything else becomes float64."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        value = (value if not value.is_floating_point() else value.to(torch.float64)).numpy()
    arr = np.asarray(value)
    if arr.dtype.kind in "iub":
        return arr.astype(np.int64)
    return _to_float64(arr, what)


def _fits(dtype: str, arrays: dict[str, np.ndarray]) -> None:
    """Refuse inputs that the half-precision dtype cannot hold: they would become inf, then NaN."""
    top = float(torch.finfo(torch_dtype(dtype, half=True)).max)
    for what, x in arrays.items():
        biggest = float(np.max(np.abs(x), initial=0.0)) if x.dtype.kind == "f" else 0.0
        if biggest > top:
            raise UsageError(
                f"{what} holds values up to {biggest:.6g}, beyond {dtype}'s range ({top:.6g}); scale it or check in "
                "float32"
            )


def _cast(x: np.ndarray, dtype: str) -> np.ndarray:
    """x in `dtype` if it holds real numbers; integer data as it is."""
    return x if x.dtype.kind == "i" else x.astype(numpy_dtype(dtype, half=True))


def _tensor(x: np.ndarray, dtype: str, device: torch.device | None) -> torch.Tensor:
    """x as a tensor in `dtype` on `device` (integer data stays int64), rounded once from float64."""
    t = torch.as_tensor(x)
    return t.to(device) if x.dtype.kind == "i" else t.to(device=device, dtype=torch_dtype(dtype, half=True))


def _to_float64(value: Any, what: str) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().to(torch.float64).numpy()
    try:
        arr = np.array(value, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise UsageError(f"{what} must be an array of numbers; got {type(value).__name__} ({e})") from None
    if not np.all(np.isfinite(arr)):
        raise UsageError(f"{what} must be finite; got NaN or infinity")
    return arr


def _torch_loss64(torch_loss: TorchLoss, params: dict[str, np.ndarray], data: Sequence[np.ndarray]) -> torch.Tensor:
    with torch.no_grad():
        value = torch_loss({k: torch.tensor(v) for k, v in params.items()}, *(torch.tensor(x) for x in data))
    return _scalar(value)


def _scalar(value: Any) -> torch.Tensor:
    if not isinstance(value, torch.Tensor) or value.numel() != 1:
        got = f"shape {tuple(value.shape)}" if isinstance(value, torch.Tensor) else type(value).__name__
        raise UsageError(f"torch_loss must return a scalar torch tensor; got {got}")
    return value.reshape(())


def autograd_gradients(
    torch_loss: TorchLoss, params: dict[str, np.ndarray], data: Sequence[np.ndarray], dtype: str, device: torch.device
) -> tuple[float, dict[str, np.ndarray]]:
    """The loss and `loss.backward()` gradients in `dtype` on `device`, back in float64 NumPy.

    A parameter the loss does not use gets a zero gradient, as the derivative is zero.
    """
    leaves = {k: _tensor(v, dtype, device).requires_grad_(True) for k, v in params.items()}
    try:
        value = _scalar(torch_loss(leaves, *(_tensor(x, dtype, device) for x in data)))
        if not value.requires_grad:
            raise UsageError("torch_loss returned a tensor that does not depend on the parameters (no autograd graph)")
        value.backward()
    except (RuntimeError, NotImplementedError) as e:
        if dtype in ("float16", "bfloat16") and "not implemented" in str(e).lower():
            raise UsageError(f"torch_loss cannot run in {dtype} on {device}: {str(e).splitlines()[0]}") from None
        raise
    if dtype in ("float16", "bfloat16") and not torch.isfinite(value.detach()):
        raise UsageError(
            f"torch_loss in {dtype} is {float(value.detach())}: a value overflows {dtype}'s range "
            f"({torch.finfo(torch_dtype(dtype, half=True)).max:.6g}); scale the data or check in float32"
        )
    raw = {k: v.grad for k, v in leaves.items() if v.grad is not None}
    if dtype in ("float16", "bfloat16") and not all(bool(torch.isfinite(g).all()) for g in raw.values()):
        name = next(k for k, g in raw.items() if not bool(torch.isfinite(g).all()))
        raise UsageError(
            f"the autograd gradient of {name} in {dtype} overflows {dtype}'s range "
            f"({torch.finfo(torch_dtype(dtype, half=True)).max:.6g}); scale the data or check in float32"
        )
    grads = {
        k: np.zeros(v.shape) if v.grad is None else v.grad.detach().cpu().to(torch.float64).numpy()
        for k, v in leaves.items()
    }
    return float(value.detach().cpu()), grads


def manual(
    manual_gradients: ManualGradients,
    params: dict[str, np.ndarray],
    data: Sequence[np.ndarray],
    dtype: str,
    array: str,
    device: torch.device | None,
    tapped: Sequence[str] = (),
    extra: dict[str, Any] | None = None,
    reduced: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] | None = None,
) -> tuple[dict[str, np.ndarray], set[str]]:
    """The hand-derived gradients in `dtype`, validated, in float64; and the names returned transposed.

    extra: where keys other than the parameters go (intermediates, keyed by tap name, as returned: in
    `dtype`), when the torch loss taps some (`tapped`); without taps such keys are refused.
    reduced: where a gradient returned with its parameter's broadcast shape (a bias's (n, h) for (h,)) is
    recorded, summed over the broadcast axes, as (shape returned, axes); without it that shape is refused."""
    if array == "torch":

        def conv(x: np.ndarray) -> Any:
            return _tensor(x, dtype, device)
    else:

        def conv(x: np.ndarray) -> Any:
            return _cast(np.array(x), dtype)

    out = manual_gradients({k: conv(v) for k, v in params.items()}, *(conv(x) for x in data))
    if not isinstance(out, Mapping):
        raise UsageError(f"manual_gradients must return a dict name -> array; got {type(out).__name__}")
    missing, unexpected = sorted(set(params) - set(out)), sorted(set(out) - set(params))
    if missing or (unexpected and (extra is None or not tapped)):
        hint = (
            f" (the gradient of an intermediate needs gradtwin.tap({unexpected[0]!r}, tensor) in torch_loss)"
            if unexpected and not missing and extra is not None
            else ""
        )
        raise UsageError(
            f"manual_gradients returned keys {sorted(out)} but params has {sorted(params)}"
            + (f": missing {missing}" if missing else "")
            + (f"; unexpected {unexpected}" if unexpected else "")
            + hint
        )
    for k in unexpected:
        if array == "torch":
            _check_tensor(out[k], f"manual_gradients()[{k!r}]", torch_dtype(dtype, half=True), device)
        extra[k] = out[k]  # type: ignore[index]
    grads, flipped = {}, set()
    for k, p in params.items():
        if array == "torch":
            _check_tensor(out[k], f"manual_gradients()[{k!r}]", torch_dtype(dtype, half=True), device)
        g = _to_numpy(out[k], f"manual_gradients()[{k!r}]")
        axes = diagnose.reducible(g.shape, p.shape) if g.shape != p.shape else None
        if g.shape != p.shape:
            if g.ndim >= 2 and g.shape == p.shape[::-1]:
                g = g.T
                flipped.add(k)
            elif axes is not None and reduced is not None:
                reduced[k] = (g.shape, axes)
                g = g.sum(axis=axes).reshape(p.shape)
            else:
                n = samples_of(data)
                hint = (
                    f" (an axis of length n = {n}, the samples: summed over the wrong axis?)"
                    if n is not None and n > 1 and n in g.shape and n not in p.shape
                    else ""
                )
                raise UsageError(
                    f"manual_gradients()[{k!r}] must have the shape of params[{k!r}], {p.shape}; got {g.shape}{hint}"
                )
        grads[k] = g
    return grads, flipped


def _check_tensor(value: Any, what: str, dtype: torch.dtype, device: torch.device | None) -> None:
    """A hand gradient in torch must come back in the dtype and on the device it was asked in."""
    if not isinstance(value, torch.Tensor):
        raise UsageError(f"{what} must be a torch tensor (the hand code runs in torch); got {type(value).__name__}")
    want = device or torch.device("cpu")
    if value.dtype != dtype or value.device.type != want.type or (want.index is not None and value.device != want):
        raise UsageError(
            f"{what} must be a tensor of dtype {dtype} on {want}, like its inputs; got {value.dtype} on {value.device}"
        )


def _to_numpy(value: Any, what: str) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().to(torch.float64).numpy()
    try:
        return np.array(value, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise UsageError(f"{what} must be an array of numbers; got {type(value).__name__} ({e})") from None


def _user_scale(scale: Scale, params: dict[str, np.ndarray], data: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
    out = scale(params, *data)
    if set(out) != set(params):
        raise UsageError(f"scale returned keys {sorted(out)} but params has {sorted(params)}")
    return {k: np.broadcast_to(_to_numpy(out[k], f"scale()[{k!r}]"), params[k].shape) for k in params}


def _scale_source(scale: Scale | None, sampled: bool) -> str:
    if scale is not None:
        return "the scale function given"
    if sampled:
        return "a Cauchy sketch of sum_k |dg/dx_k| |x_k| over inputs (parity.sketch), at least |g|"
    return "autograd: sum_k |dg/dx_k| |x_k| over inputs + sum_i |per-sample gradient| (parity.autograd_scales)"


def _loss_checks(
    manual_loss: Callable[..., Any] | None,
    p64: dict[str, np.ndarray],
    d64: Sequence[np.ndarray],
    dtype: str,
    loss_d: float,
    loss64: float,
    K: int,
    S_loss: float,
    label: str,
    bound: Bound,
    bound64: Bound,
) -> list[ParamCheck]:
    """The forward value first, when a hand-written loss is given (in NumPy, or torch for bfloat16)."""
    if manual_loss is None:
        return []
    if dtype == "bfloat16":
        tensors = {k: _tensor(v, dtype, None) for k, v in p64.items()}
        value = manual_loss(tensors, *(_tensor(x, dtype, None) for x in d64))
    else:
        value = manual_loss({k: _cast(v, dtype) for k, v in p64.items()}, *(_cast(x, dtype) for x in d64))
    hand = float(_to_numpy(value, "manual_loss()"))
    t_d, t_64 = bound.gamma * S_loss, bound64.gamma * S_loss
    checks = [compare(f"{label} vs autograd", "loss", hand, loss_d, 2 * t_d)]
    if dtype != "float64":
        checks.append(compare(f"{label} {dtype} vs float64", "loss", hand, loss64, t_d + t_64))
        checks.append(compare(f"autograd {dtype} vs float64", "loss", loss_d, loss64, t_d + t_64))
    return checks


def _param_report(
    name: str,
    shape: tuple[int, ...],
    checks: list[ParamCheck],
    bad: np.ndarray,
    values: dict[str, np.ndarray],
    ref_tol: np.ndarray,
    flipped: bool,
    kinks: dict[tuple[int, ...], Probe],
    allow_kinks: bool,
    d64: Sequence[np.ndarray],
    arrays: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
    reduced: tuple[tuple[int, ...], tuple[int, ...]] | None = None,
    related: Mapping[str, np.ndarray] | None = None,
) -> ParamReport:
    """Pick the worst comparison, then explain a mismatch (shape, kink, sign, factor, transpose).

    The pattern is read from values["seen"] (the hand gradient in the checked dtype, or in
    float64 when that is wrong too) against the float64 reference within `ref_tol`.
    """
    h, a, r, seen = values["hand"], values["autograd"], values["reference"], values["seen"]
    ok = all(c.ok for c in checks) and not flipped and reduced is None
    diagnosis = None
    if flipped:
        diagnosis = diagnose.transposed_shape(name, shape, bool(np.all(np.abs(h - r) <= ref_tol)))
    elif reduced is not None:
        diagnosis = diagnose.unreduced(name, shape, *reduced, bool(np.all(np.abs(h - r) <= ref_tol)))
    elif not ok and _only_at_kinks(bad, kinks, h, a):
        ok = allow_kinks
        diagnosis = kink_sentence(name, kinks, h, a, allow_kinks)
    elif not ok:
        narrow = any(c.comparison.startswith("autograd") and c.comparison.endswith(" vs float64") for c in checks)
        indices = [x for x in d64 if x.dtype.kind in "iu"]
        diagnosis = explain(checks, seen, r, ref_tol, samples_of(d64), narrow, indices, related)
    # the failing comparison farthest outside its tolerance, an element's before a projection's
    worst = max(checks, key=lambda c: (not c.ok, len(c.worst_index) == h.ndim, c.worst_err / max(c.tol, _TINY)))
    i = worst.worst_index
    projected = len(i) != h.ndim  # a projection on a random direction: its two sides are shown
    return ParamReport(
        name=name,
        shape=tuple(shape),
        ok=ok,
        worst_index=i,
        hand=worst.a if projected else float(h[i]),
        autograd=worst.a if projected else float(a[i]),
        finite_diff=worst.b if projected else float(values["fd"][i]),
        abs_err=worst.worst_err,
        rel_err=_ratio(
            worst.worst_err, max(abs(worst.a), abs(worst.b)) if projected else float(np.max(np.abs(r), initial=0.0))
        ),
        tol=worst.tol,
        comparison=worst.comparison,
        diagnosis=diagnosis,
        checks=checks,
        size=int(h.size),
        n_bad=int(bad.sum()),
        worst=_worst_elements(*arrays[worst.comparison], bad) if not ok and worst.comparison in arrays else [],
    )


def _worst_elements(h: np.ndarray, r: np.ndarray, tol: np.ndarray, bad: np.ndarray) -> list[Element]:
    """Of the elements that disagree (`bad`), the SHOWN farthest apart in the worst comparison (h vs r)."""
    err = np.abs(h - r)
    tol = np.broadcast_to(tol, h.shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.nan_to_num(err / np.maximum(tol, _TINY), nan=np.inf).reshape(-1)
    ratio = np.where(bad.reshape(-1), ratio, -np.inf)
    picks = np.argsort(-ratio, kind="stable")[: min(SHOWN, int(bad.sum()))]
    out = []
    for j in picks:
        idx = tuple(int(k) for k in np.unravel_index(int(j), h.shape))
        out.append(Element(idx, float(h[idx]), float(r[idx]), float(err[idx]), float(tol[idx])))
    return out


def _ratio(a: float, b: float) -> float:
    """a / b, inf where that overflows (an error relative to a value near zero)."""
    with np.errstate(over="ignore", divide="ignore"):
        return float(np.float64(a) / np.float64(max(b, _TINY)))


def explain(
    checks: list[ParamCheck],
    h: np.ndarray,
    r: np.ndarray,
    tol: np.ndarray,
    n: int | None,
    narrow: bool,
    indices: Sequence[np.ndarray] = (),
    related: Mapping[str, np.ndarray] | None = None,
) -> str:
    """Which side is wrong, and the pattern that explains the hand-derived gradient if one does.

    narrow: the checked dtype is below float64 (a float64 twin of the hand code was run too).
    indices: the integer arrays of the data; related: autograd's float64 dL/dT of each tapped T.
    """
    auto_fd = next((c for c in checks if c.comparison.startswith("autograd float64 vs finite diff") and not c.ok), None)
    if auto_fd is not None:
        return (
            f"autograd of torch_loss disagrees with finite differences at {list(auto_fd.worst_index)}: torch_loss "
            "detaches part of its graph, or is not differentiable there"
        )
    hand_fd = [c for c in checks if "float64 vs finite diff" in c.comparison and not c.comparison.startswith("auto")]
    side = "the hand-derived gradient is wrong (autograd and finite differences agree)"
    exact64 = [c for c in checks if c.comparison.endswith("float64 vs autograd float64")]
    if hand_fd and all(c.ok for c in [*hand_fd, *exact64]):
        side = (
            "the hand-derived gradient is right in float64 but not in the checked dtype (a precision loss)"
            if narrow
            else "finite differences cannot tell hand from autograd here (their error bound covers both)"
        )
    return f"{side}; {diagnose.pattern(h, r, np.broadcast_to(tol, h.shape), n, indices, related)}"


def _refine(
    loss: Callable[[dict[str, np.ndarray]], float],
    p64: dict[str, np.ndarray],
    name: str,
    suspects: np.ndarray,
    fd: np.ndarray,
    fd_bound: np.ndarray,
    fd_error: float,
    most: int = MAX_KINK_PROBES,
) -> dict[tuple[int, ...], Probe]:
    """Probe suspect elements (kinks.probe): sharpen fd where smooth, widen it to [left, right] at kinks.

    Updates `fd` and `fd_bound` in place; returns the kinks found. Probes at most `most`
    elements (six loss evaluations each), those already differenced first; beyond that fd
    stays as it was (and a mismatch there is not excused as a kink).
    """
    found = Kinks()
    where = np.argwhere(suspects)
    where = where[np.argsort(np.isnan(fd[suspects]), kind="stable")]
    for i in where[:most]:
        idx = tuple(int(j) for j in i)
        pr = probe(loss, p64, name, idx, fd_error)
        fd[idx], fd_bound[idx] = pr.value, pr.half_width
        if pr.kink:
            found[idx] = pr
    if len(found) > 1:  # the kinks moved together: the sum of a subgradient over them is bounded too
        direction = np.zeros(p64[name].shape)
        for idx in found:
            direction[idx] = 1.0
        found.joint = probe(loss, p64, name, (), fd_error, direction)
    return found


def _only_at_kinks(bad: np.ndarray, kinks: dict[tuple[int, ...], Probe], *sides: np.ndarray) -> bool:
    """The comparisons fail only at kinks, and both gradients there are subgradients: each element
    between its one-sided slopes, and, over several kinks, their sum between the slopes of all of
    them moved together (`Kinks.joint`)."""
    if not kinks or any(tuple(int(j) for j in i) not in kinks for i in np.argwhere(bad)):
        return False
    for idx, pr in kinks.items():
        lo, hi = min(pr.left, pr.right) - pr.bound, max(pr.left, pr.right) + pr.bound
        if not all(lo <= float(s[idx]) <= hi for s in sides):
            return False
    joint = getattr(kinks, "joint", None)
    if joint is not None:
        slack = joint.half_width + sum(pr.bound for pr in kinks.values())
        if not all(abs(sum(float(s[idx]) for idx in kinks) - joint.value) <= slack for s in sides):
            return False
    return True


def kink_sentence(name: str, kinks: dict[tuple[int, ...], Probe], h: np.ndarray, a: np.ndarray, allowed: bool) -> str:
    idx, pr = next(iter(kinks.items()))
    left, right = pr.left, pr.right
    verdict = "accepted (allow_kinks)" if allowed else "pass allow_kinks=True to accept it"
    return (
        f"mismatch only at a kink: the loss is not differentiable in {name}{list(idx)} (left slope {left:.6g}, "
        f"right slope {right:.6g}); hand ({float(h[idx]):.6g}) and autograd ({float(a[idx]):.6g}) chose different "
        f"subgradients, both valid; {verdict}"
    )


def _report_diagnoses(params: list[ParamReport]) -> list[str]:
    """One parameter right and another wrong: say which, since the mistake is then in one path."""
    right = [p.name for p in params if p.ok]
    wrong = [p.name for p in params if not p.ok]
    if right and wrong:
        return [
            f"{', '.join(right)} agree(s) but {', '.join(wrong)} do(es) not: the mistake is in the derivation of "
            f"{', '.join(wrong)} alone, not in a part they share"
        ]
    return []

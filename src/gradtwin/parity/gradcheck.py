"""The gradient parity checker for anyone's code: hand-derived vs autograd vs finite differences.

    report = check_gradients(manual_gradients, torch_loss, params, (X, Y), dtype="float32")
    print(report)                      # a table; report.to_json() for machines
    assert_gradients_match(...)        # the same, raising AssertionError with the report

`manual_gradients(params, *data) -> dict` gets NumPy arrays in `dtype`; `torch_loss(params,
*data) -> 0-d tensor` gets torch tensors. Per parameter the checker compares
  - hand vs autograd in `dtype`                         within 2 * gamma(K) * S
  - in float32: each against autograd in float64         within gamma32(K) * S + gamma64(K) * S
  - on another device: autograd there against the cpu   within 2 * gamma(K) * S
  - hand and autograd in float64 against central finite differences of `torch_loss` in float64,
    within the finite-difference error bound plus gamma64(K) * S;
where gamma(K) = K*u / (1 - K*u) (parity.gamma) and S is the rounding scale of each element
(gradscale.autograd_scales, or the user's `scale`), raised to what the loss shows in float32
(`_with_float32_floor`), plus an underflow floor. Finite differences are trusted within the
loss's rounding (a-priori, or measured by noise.loss_noise) over the step, plus Richardson's
truncation estimate; kinks.probe re-examines every element that fails. TF32 is off while it runs.
The rule is written out with its reasons in the README ("The tolerance rule and why").
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from gradtwin.devices import numpy_dtype, resolve_device, torch_dtype
from gradtwin.errors import UsageError
from gradtwin.parity import diagnose
from gradtwin.parity.autograd_scales import autograd_scales, samples_of
from gradtwin.parity.compare import ParamCheck, compare, finite_or_none
from gradtwin.parity.finite_diff import finite_differences
from gradtwin.parity.kinks import Probe, probe
from gradtwin.parity.noise import loss_noise
from gradtwin.parity.rounding import ROUNDING_OPS, tolerance

ManualGradients = Callable[..., Mapping[str, Any]]
TorchLoss = Callable[..., torch.Tensor]
Scale = Callable[..., Mapping[str, Any]]
_TINY = np.finfo(np.float64).tiny
MAX_KINK_PROBES = 64  # failing elements probed for a kink (six loss evaluations each)


@dataclass
class ParamReport:
    """One parameter: its worst element over every comparison and what explains a mismatch."""

    name: str
    shape: tuple[int, ...]
    ok: bool
    worst_index: tuple[int, ...]
    hand: float  # the hand-derived gradient there, in the checked dtype
    autograd: float  # autograd there, in the checked dtype
    finite_diff: float  # central differences in float64 there
    abs_err: float
    rel_err: float
    tol: float
    comparison: str  # the comparison that holds the worst element
    diagnosis: str | None = None
    checks: list[ParamCheck] = field(default_factory=list)


@dataclass
class GradientReport:
    """The whole check: one ParamReport per parameter, the forward value if given, and notes."""

    ok: bool
    dtype: str
    device: str
    params: list[ParamReport]
    loss: list[ParamCheck]
    diagnoses: list[str]
    notes: list[str]

    def checks(self) -> list[ParamCheck]:
        """Every comparison made: the loss first, then each parameter's."""
        return [*self.loss, *(c for p in self.params for c in p.checks)]

    def table(self) -> str:
        """The report as a fixed-width table with the diagnoses below it."""
        header = ("param", "ok", "worst at", "hand", "autograd", "finite diff", "abs err", "rel err", "tolerance")
        rows = [
            (
                p.name,
                "yes" if p.ok else "NO",
                str(list(p.worst_index)),
                f"{p.hand:.9g}",
                f"{p.autograd:.9g}",
                f"{p.finite_diff:.9g}",
                f"{p.abs_err:.3g}",
                f"{p.rel_err:.3g}",
                f"{p.tol:.3g}",
            )
            for p in self.params
        ]
        rows += [(f"loss ({c.comparison})", "yes" if c.ok else "NO", "-", f"{c.a:.9g}", f"{c.b:.9g}", "-",
                  f"{c.max_abs_err:.3g}", f"{c.max_rel_err:.3g}", f"{c.tol:.3g}") for c in self.loss]  # fmt: skip
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        lines = [f"gradient check, {self.dtype} on {self.device}: {'all agree' if self.ok else 'MISMATCH'}"]
        lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in [header, *rows]]
        lines.insert(2, "  ".join("-" * w for w in widths))
        for p in self.params:
            if not p.ok:
                lines.append(f"{p.name}: worst in {p.comparison}; {p.diagnosis}")
        lines += self.diagnoses
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)

    __str__ = table

    def to_dict(self) -> dict[str, Any]:
        """The report as plain data; NaN and infinities become None."""
        out: dict[str, Any] = finite_or_none(asdict(self))
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False)


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
    manual_array: str = "numpy",
    label: str = "hand",
) -> GradientReport:
    """Check `manual_gradients` against autograd of `torch_loss` and finite differences.

    params: dict name -> array (0-d for a scalar). data: a tuple of arrays (X, Y, ...), one
    array, or a Dataset; both functions are called as f(params, *data).
    manual_loss: the hand-written loss, compared with torch_loss first when given.
    scale, loss_scale: f(params, *data) -> sum|terms| of each gradient element / of the loss,
    replacing the scale autograd estimates (see gradscale). n_terms: the length K of the
    longest sum (default: every element of the data and parameters, plus ROUNDING_OPS).
    allow_kinks: accept a mismatch where the loss has a kink and both sides are subgradients.
    manual_array: 'numpy' (default) or 'torch' (tensors on `device`, no autograd).
    """
    p64, d64 = _as_params(params), _as_data(data)
    dev = resolve_device(device, dtype)
    if manual_array not in ("numpy", "torch"):
        raise UsageError(f"manual_array must be 'numpy' or 'torch'; got {manual_array!r}")
    K = n_terms if n_terms is not None else sum(x.size for x in d64) + sum(v.size for v in p64.values())
    with tf32_off() as tf32_note:
        loss64, g64 = autograd_gradients(torch_loss, p64, d64, "float64", torch.device("cpu"))
        if scale is not None:
            S = _user_scale(scale, p64, d64)
            S_loss = float(np.asarray(loss_scale(p64, *d64))) if loss_scale is not None else abs(loss64)
        else:
            S, S_loss = autograd_scales(torch_loss, p64, d64, K)
        S, S_loss = _with_float32_floor(torch_loss, p64, d64, g64, loss64, S, S_loss)
        hand_dev = dev if manual_array == "torch" else torch.device("cpu")
        hand, flipped = manual(manual_gradients, p64, d64, dtype, manual_array, hand_dev)
        hand64 = hand if dtype == "float64" else manual(manual_gradients, p64, d64, "float64", "numpy", None)[0]
        loss_d, auto = autograd_gradients(torch_loss, p64, d64, dtype, dev)
        auto_cpu = autograd_gradients(torch_loss, p64, d64, dtype, torch.device("cpu"))[1] if dev.type != "cpu" else {}

    def loss_fn(p: dict[str, np.ndarray]) -> float:
        return float(_torch_loss64(torch_loss, p, d64))

    # Rounding bound of one loss evaluation: the a-priori gamma(K) * S, or, where the loss rounds
    # more than S shows, the measured noise sigma. K roundings of up to q/2 each have standard
    # deviation q/2 * sqrt(K/3) and reach at most K*q/2 = sqrt(3K) sigma; twice that, as sigma is
    # itself estimated from nine points.
    fd_apriori = float(tolerance(np.float64, K, S_loss))
    fd_error = max(fd_apriori, 2.0 * math.sqrt(3.0 * (K + ROUNDING_OPS)) * loss_noise(loss_fn, p64))
    fd, fd_bound = finite_differences(loss_fn, p64, fd_error)
    flat = _abstain_on_plateaus(fd, fd_bound, g64)

    def tol(dt: str, name: str) -> np.ndarray:
        return tolerance(dt, K, S[name], ROUNDING_OPS) + underflow_floor(dt, K, p64, d64)

    params_out: list[ParamReport] = []
    for name in p64:
        t_d, t_64 = tol(dtype, name), tol("float64", name)
        suspects = ~(np.abs(hand[name] - auto[name]) <= 2 * t_d)
        for ref in (hand64[name], g64[name]):
            suspects |= ~(np.abs(ref - fd[name]) <= fd_bound[name] + t_64)
        kinks = {} if name in flipped else _refine(loss_fn, p64, name, suspects, fd[name], fd_bound[name], fd_apriori)
        checks: list[ParamCheck] = []
        bad = np.zeros(p64[name].shape, dtype=bool)

        def cmp(comparison: str, a: np.ndarray, b: np.ndarray, t: np.ndarray) -> None:
            nonlocal bad
            checks.append(compare(comparison, name, a, b, t))  # noqa: B023 (used at once)
            bad = bad | ~(np.abs(a - b) <= t)

        cmp(f"{label} vs autograd", hand[name], auto[name], 2 * t_d)
        if dtype != "float64":
            cmp(f"{label} {dtype} vs float64", hand[name], g64[name], t_d + t_64)
            cmp(f"autograd {dtype} vs float64", auto[name], g64[name], t_d + t_64)
        if dev.type != "cpu":
            cmp(f"autograd {dev} vs cpu", auto[name], auto_cpu[name], 2 * t_d)
        cmp(f"{label} float64 vs finite diff", hand64[name], fd[name], fd_bound[name] + t_64)
        cmp("autograd float64 vs finite diff", g64[name], fd[name], fd_bound[name] + t_64)
        ref_tol = t_d + t_64 + (fd_bound[name] if dtype == "float64" else 0.0)
        values = {"hand": hand[name], "autograd": auto[name], "reference": g64[name], "fd": fd[name]}
        params_out.append(
            _param_report(name, p64[name].shape, checks, bad, values, ref_tol, name in flipped, kinks, allow_kinks, d64)
        )
    loss_checks = _loss_checks(manual_loss, p64, d64, dtype, loss_d, loss64, K, S_loss, label)
    notes = [
        tf32_note,
        *flat,
        f"tolerance: gamma(K) * S with K = {K} summed terms (parity.tolerance); S from {_scale_source(scale)}",
    ]
    return GradientReport(
        ok=all(p.ok for p in params_out) and all(c.ok for c in loss_checks),
        dtype=dtype,
        device=str(dev),
        params=params_out,
        loss=loss_checks,
        diagnoses=_report_diagnoses(params_out),
        notes=notes,
    )


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
) -> tuple[dict[str, np.ndarray], float]:
    """Raise the scales to what the same autograd loss, run in float32, shows its rounding to be.

    Rounding inside one kernel (binary_cross_entropy_with_logits computes z - z*y + log1p(..))
    cancels quantities whose size no derivative reveals. Evaluated in float32 the same code
    errs by about u32 * (its true scale), 2^29 times more than in float64; |f32 - f64| / u32
    is therefore a measured floor on the scale. Non-finite float32 results (overflow) are skipped.
    """
    u32 = float(np.finfo(np.float32).eps) / 2
    loss32, g32 = autograd_gradients(torch_loss, p64, d64, "float32", torch.device("cpu"))
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
    return n_terms * float(np.finfo(numpy_dtype(dtype)).tiny) * biggest**2


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
        value = value.detach().cpu().numpy()
    arr = np.asarray(value)
    if arr.dtype.kind in "iub":
        return arr.astype(np.int64)
    return _to_float64(arr, what)


def _cast(x: np.ndarray, dtype: str) -> np.ndarray:
    """x in `dtype` if it holds real numbers; integer data as it is."""
    return x if x.dtype.kind == "i" else x.astype(numpy_dtype(dtype))


def _to_float64(value: Any, what: str) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
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
    tdt = torch_dtype(dtype)
    leaves = {k: torch.tensor(v, dtype=tdt, device=device, requires_grad=True) for k, v in params.items()}
    value = _scalar(torch_loss(leaves, *(torch.tensor(_cast(x, dtype), device=device) for x in data)))
    if not value.requires_grad:
        raise UsageError("torch_loss returned a tensor that does not depend on the parameters (no autograd graph)")
    value.backward()
    grads = {
        k: np.zeros(v.shape) if v.grad is None else v.grad.detach().cpu().numpy().astype(np.float64)
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
) -> tuple[dict[str, np.ndarray], set[str]]:
    """The hand-derived gradients in `dtype`, validated, in float64; and the names returned transposed."""
    if array == "torch":

        def conv(x: np.ndarray) -> Any:
            return torch.tensor(_cast(x, dtype), device=device)
    else:

        def conv(x: np.ndarray) -> Any:
            return _cast(np.array(x), dtype)

    out = manual_gradients({k: conv(v) for k, v in params.items()}, *(conv(x) for x in data))
    if not isinstance(out, Mapping):
        raise UsageError(f"manual_gradients must return a dict name -> array; got {type(out).__name__}")
    if set(out) != set(params):
        missing, extra = sorted(set(params) - set(out)), sorted(set(out) - set(params))
        raise UsageError(
            f"manual_gradients returned keys {sorted(out)} but params has {sorted(params)}"
            + (f": missing {missing}" if missing else "")
            + (f"; unexpected {extra}" if extra else "")
        )
    grads, flipped = {}, set()
    for k, p in params.items():
        g = _to_numpy(out[k], f"manual_gradients()[{k!r}]")
        if g.shape != p.shape:
            if g.ndim >= 2 and g.shape == p.shape[::-1]:
                g = g.T
                flipped.add(k)
            else:
                raise UsageError(
                    f"manual_gradients()[{k!r}] must have the shape of params[{k!r}], {p.shape}; got {g.shape}"
                )
        grads[k] = g
    return grads, flipped


def _to_numpy(value: Any, what: str) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    try:
        return np.array(value, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise UsageError(f"{what} must be an array of numbers; got {type(value).__name__} ({e})") from None


def _user_scale(scale: Scale, params: dict[str, np.ndarray], data: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
    out = scale(params, *data)
    if set(out) != set(params):
        raise UsageError(f"scale returned keys {sorted(out)} but params has {sorted(params)}")
    return {k: np.broadcast_to(_to_numpy(out[k], f"scale()[{k!r}]"), params[k].shape) for k in params}


def _scale_source(scale: Scale | None) -> str:
    if scale is not None:
        return "the scale function given"
    return "autograd: sum_k |dg/dx_k| |x_k| over inputs + sum_i |per-sample gradient| (gradtwin.gradscale)"


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
) -> list[ParamCheck]:
    """The forward value first, when a hand-written loss is given."""
    if manual_loss is None:
        return []
    ndt = numpy_dtype(dtype)
    hand = float(np.asarray(manual_loss({k: v.astype(ndt) for k, v in p64.items()}, *(_cast(x, dtype) for x in d64))))
    t_d, t_64 = tolerance(dtype, K, S_loss), tolerance("float64", K, S_loss)
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
) -> ParamReport:
    """Pick the worst comparison, then explain a mismatch (shape, kink, sign, factor, transpose)."""
    h, a, r = values["hand"], values["autograd"], values["reference"]
    ok = all(c.ok for c in checks) and not flipped
    diagnosis = None
    if flipped:
        diagnosis = diagnose.transposed_shape(name, shape, bool(np.all(np.abs(h - r) <= ref_tol)))
    elif not ok and _only_at_kinks(bad, kinks, h, a):
        ok = allow_kinks
        diagnosis = kink_sentence(name, kinks, h, a, allow_kinks)
    elif not ok:
        float32 = any(c.comparison.startswith("autograd float32") for c in checks)
        diagnosis = explain(checks, h, r, ref_tol, samples_of(d64), float32)
    worst = max(checks, key=lambda c: (not c.ok, c.max_abs_err / max(c.tol, _TINY)))
    i = worst.worst_index
    ref = float(r[i])
    return ParamReport(
        name=name,
        shape=tuple(shape),
        ok=ok,
        worst_index=i,
        hand=float(h[i]),
        autograd=float(a[i]),
        finite_diff=float(values["fd"][i]),
        abs_err=worst.max_abs_err,
        rel_err=_ratio(worst.max_abs_err, abs(ref)),
        tol=worst.tol,
        comparison=worst.comparison,
        diagnosis=diagnosis,
        checks=checks,
    )


def _ratio(a: float, b: float) -> float:
    """a / b, inf where that overflows (an error relative to a value near zero)."""
    with np.errstate(over="ignore", divide="ignore"):
        return float(np.float64(a) / np.float64(max(b, _TINY)))


def explain(
    checks: list[ParamCheck], h: np.ndarray, r: np.ndarray, tol: np.ndarray, n: int | None, float32: bool
) -> str:
    """Which side is wrong, and the pattern that explains the hand-derived gradient if one does."""
    by = {c.comparison: c for c in checks}
    auto_fd = by.get("autograd float64 vs finite diff")
    if auto_fd is not None and not auto_fd.ok:
        return (
            f"autograd of torch_loss disagrees with finite differences at {list(auto_fd.worst_index)}: torch_loss "
            "detaches part of its graph, or is not differentiable there"
        )
    hand_fd = next((c for c in checks if c.comparison.endswith("float64 vs finite diff") and c is not auto_fd), None)
    side = "the hand-derived gradient is wrong (autograd and finite differences agree)"
    if hand_fd is not None and hand_fd.ok:
        side = (
            "the hand-derived gradient is right in float64 but not in the checked dtype (a precision loss)"
            if not hand_fd.comparison.startswith(checks[0].comparison.split(" vs ")[0] + " float64") or len(checks) > 3
            else "finite differences cannot tell hand from autograd here (their error bound covers both)"
        )
    pattern = diagnose.constant_ratio(h, r, tol, n) or diagnose.transposed(h, r, tol) or diagnose.summarize(h, r, tol)
    return f"{side}; {pattern}"


def _refine(
    loss: Callable[[dict[str, np.ndarray]], float],
    p64: dict[str, np.ndarray],
    name: str,
    suspects: np.ndarray,
    fd: np.ndarray,
    fd_bound: np.ndarray,
    fd_error: float,
) -> dict[tuple[int, ...], Probe]:
    """Probe suspect elements (kinks.probe): sharpen fd where smooth, widen it to [left, right] at kinks.

    Updates `fd` and `fd_bound` in place; returns the kinks found. Probes at most
    MAX_KINK_PROBES elements (six loss evaluations each); beyond that fd stays as it was.
    """
    found = {}
    for i in np.argwhere(suspects)[:MAX_KINK_PROBES]:
        idx = tuple(int(j) for j in i)
        pr = probe(loss, p64, name, idx, fd_error)
        fd[idx], fd_bound[idx] = pr.value, pr.half_width
        if pr.kink:
            found[idx] = pr
    return found


def _only_at_kinks(bad: np.ndarray, kinks: dict[tuple[int, ...], Probe], *sides: np.ndarray) -> bool:
    """The comparisons fail only at kinks, and both gradients there are subgradients."""
    if not kinks or any(tuple(int(j) for j in i) not in kinks for i in np.argwhere(bad)):
        return False
    for idx, pr in kinks.items():
        lo, hi = min(pr.left, pr.right) - pr.bound, max(pr.left, pr.right) + pr.bound
        if not all(lo <= float(s[idx]) <= hi for s in sides):
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

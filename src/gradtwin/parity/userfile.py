"""`gradtwin check --file`: a user's model file checked at make_problem()'s point and at points around it.

The file's convention (manual_gradients, torch_loss, make_problem, and the optional names) and
its loading live in `gradtwin.model_file`. A point is one (params, data); beyond make_problem()'s,
points come from the file's sample_problem(rng), or are drawn around make_problem()'s
(`model_file.perturbed`). A diagnosis is claimed for the whole file only where it holds at
every point: a scalar parameter is always "c times the true one" at one point, so a constant
factor is named only when c is the same at all of them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import ModuleType
from typing import Any

import numpy as np
import torch

from gradtwin import validate
from gradtwin.errors import UsageError
from gradtwin.model_file import REQUIRED, Problem, call, load, optional, perturbed, problem, wrapped
from gradtwin.parity.compare import ParamCheck
from gradtwin.parity.gradcheck import GradientReport, ParamReport, _report_diagnoses, check_gradients

__all__ = ["DEFAULT_POINTS", "REQUIRED", "FileReport", "check_file", "load"]

DEFAULT_POINTS = 5  # make_problem()'s and four around it: each point costs a Jacobian and finite differences
_CONSTANT = "the true one"  # the words of every diagnosis that says hand = c * true (diagnose.constant_ratio)
_SAME = 1e-6  # ratios this close (relatively) are one constant
_TINY = np.finfo(np.float64).tiny


@dataclass
class FileReport(GradientReport):
    """A GradientReport over several points: each parameter's row is its worst point's.

    points: how many were checked; point 0 is make_problem()'s, the others `drawn` as said.
    worst_point: parameter -> the point its row comes from.
    """

    points: int = 1
    seed: int = 0
    drawn: str = ""
    worst_point: dict[str, int] = field(default_factory=dict)

    def table(self) -> str:
        lines = super().table().split("\n")
        lines[0] = (
            f"gradient check {self.where()}, {self.dtype} on {self.device}: {'all agree' if self.ok else 'MISMATCH'}"
        )
        return "\n".join(lines)

    __str__ = table

    def where(self) -> str:
        if self.points == 1:
            return "at make_problem()'s point"
        return f"at {self.points} points (make_problem()'s and {self.points - 1} {self.drawn}, seed {self.seed})"


def check_file(
    path: str,
    dtype: str = "float64",
    device: str = "cpu",
    allow_kinks: bool = False,
    method: str = "auto",
    seed: int = 0,
    points: int = DEFAULT_POINTS,
) -> FileReport:
    """Load `path` and check its gradients at `points` points (check_gradients' method and seed).

    Point 0 is make_problem()'s; the others come from sample_problem(rng) when the file defines
    it, else from make_problem()'s data and parameters drawn around themselves (integer and
    whole-number arrays kept), all from one generator seeded with `seed`. Each parameter's row
    is its worst point's; its diagnosis is claimed only where it holds at every point.
    """
    validate.whole(points, "points")
    validate.whole(seed, "seed", 0)
    module = load(path)
    base = problem(module, path)
    sampled = callable(getattr(module, "sample_problem", None))
    drawn = "from sample_problem(rng)" if sampled else "drawn around it"
    rng = np.random.default_rng(seed)
    functions = {
        "manual_gradients": wrapped(module.manual_gradients, "manual_gradients", path),
        "torch_loss": wrapped(module.torch_loss, "torch_loss", path),
        "manual_loss": optional(module, "manual_loss", path),
        "scale": optional(module, "gradient_scale", path),
    }
    problems: list[Problem] = []
    reports: list[GradientReport] = []
    for k in range(points):
        if k == 0:
            point = base
        elif sampled:
            point = problem(module, path, "sample_problem", rng)
        else:
            point = (perturbed(base[0], rng, keep_whole=False), perturbed(base[1], rng, keep_whole=True))
        problems.append(point)
        reports.append(_check_point(path, point, k, points, drawn, functions, dtype, device, allow_kinks, method, seed))
    return _merge(reports, lambda name: _ratios(module, path, problems, name), points, seed, drawn)


def _check_point(
    path: str,
    point: Problem,
    k: int,
    points: int,
    drawn: str,
    functions: Mapping[str, Any],
    dtype: str,
    device: str,
    allow_kinks: bool,
    method: str,
    seed: int,
) -> GradientReport:
    """check_gradients at one point; an error at a drawn point says which point, and how it was drawn."""
    params, data = point
    try:
        report: GradientReport = call(
            lambda: check_gradients(
                functions["manual_gradients"],
                functions["torch_loss"],
                params,
                data,
                dtype=dtype,
                device=device,
                manual_loss=functions["manual_loss"],
                scale=functions["scale"],
                allow_kinks=allow_kinks,
                method=method,
                seed=seed,
            ),
            "the check",
            path,
        )
    except UsageError as e:
        if k == 0:
            raise
        said = str(e).removeprefix(f"{path}: ")
        hint = (
            "" if drawn.startswith("from") else "; define sample_problem(rng) to choose the points, or pass --points 1"
        )
        raise UsageError(f"{path}: at point {k} of {points} ({drawn}, seed {seed}): {said}{hint}") from None
    return report


def _merge(
    reports: Sequence[GradientReport],
    ratios: Callable[[str], list[float]],
    points: int,
    seed: int,
    drawn: str,
) -> FileReport:
    """One report: per parameter its worst point's row, with a diagnosis that holds over all points."""
    first = reports[0]
    params: list[ParamReport] = []
    worst_point: dict[str, int] = {}
    for p in first.params:
        rows = [next(q for q in r.params if q.name == p.name) for r in reports]
        k = max(range(len(rows)), key=lambda i: (not rows[i].ok, rows[i].abs_err / max(rows[i].tol, _TINY)))
        worst_point[p.name] = k
        params.append(replace(rows[k], diagnosis=_diagnosis(p.name, rows, k, ratios)))
    notes = list(dict.fromkeys(n for r in reports for n in r.notes))
    if points > 1:
        notes.append("worst point of each parameter: " + ", ".join(f"{n} at point {k}" for n, k in worst_point.items()))
    # the steps of the first point where something is wrong: one chain, read from the loss back, at one point
    at = next((i for i, r in enumerate(reports) if not r.ok), 0)
    steps = reports[at].steps
    if steps is not None and points > 1:
        why = " (the first where a check fails)" if at else ""
        notes.append(f"steps from the loss back shown at point {at}{why}")
    return FileReport(
        ok=all(r.ok for r in reports),
        dtype=first.dtype,
        device=first.device,
        params=params,
        loss=_worst_checks([r.loss for r in reports]),
        diagnoses=_report_diagnoses(params),
        notes=notes,
        method=first.method,
        directions=_worst_checks([r.directions for r in reports]),
        steps=steps,
        points=points,
        seed=seed,
        drawn=drawn,
        worst_point=worst_point,
    )


def _worst_checks(per_point: Sequence[Sequence[ParamCheck]]) -> list[ParamCheck]:
    """The same comparisons made at every point: each one at the point where it is worst."""
    return [
        max(same, key=lambda c: (not c.ok, c.worst_err / max(c.tol, _TINY))) for same in zip(*per_point, strict=False)
    ]


def _diagnosis(name: str, rows: Sequence[ParamReport], k: int, ratios: Callable[[str], list[float]]) -> str | None:
    """What explains `name`'s mismatch at every point (rows: its report at each point; k: the worst)."""
    failing = [i for i, r in enumerate(rows) if not r.ok]
    worst = rows[k].diagnosis
    if len(rows) == 1 or not failing or worst is None:
        return worst
    n = len(rows)
    said = [rows[i].diagnosis or "" for i in failing]
    if len(failing) == n and len(set(said)) == 1:
        return f"{worst} (at each of the {n} points)"
    if all(_CONSTANT in d for d in said):
        found = ratios(name)
        if found and max(found) - min(found) > _SAME * max(abs(c) for c in found):
            side = worst.split("; ", 1)[0]
            return (
                f"{side}; at each point alone it looks like a constant factor, but hand / true varies between "
                f"points, from {min(found):.6g} to {max(found):.6g} over the {n}: no constant factor explains it; a "
                "factor that depends on the data or the parameters is lost or extra (an exp(z), a sigmoid'(z), a "
                "power of x?)"
            )
    return f"wrong at {len(failing)} of {n} points; at point {k}, the worst: {worst}"


def _ratios(module: ModuleType, path: str, problems: Sequence[Problem], name: str) -> list[float]:
    """hand / true for params[name] at each point, in float64: the median over elements where the true
    gradient is at least 1e-3 of its largest; points where it is all zero give none."""
    out = []
    for params, data in problems:
        hand, true = _hand_and_true(module, path, params, data, name)
        if hand.shape != true.shape:
            hand = hand.T if hand.T.shape == true.shape else np.full(true.shape, np.nan)
        big = (np.abs(true) >= 1e-3 * np.max(np.abs(true), initial=0.0)) & (true != 0)
        if big.any():
            c = float(np.median(hand[big] / true[big]))
            if math.isfinite(c):
                out.append(c)
    return out


def _hand_and_true(
    module: ModuleType, path: str, params: Mapping[str, Any], data: Any, name: str
) -> tuple[np.ndarray, np.ndarray]:
    """params[name]'s hand gradient (NumPy in, or tensors where the file gave tensors) and autograd's, float64."""
    arrays = (data.X, data.Y) if hasattr(data, "X") else data if isinstance(data, (tuple, list)) else (data,)
    p64 = {k: _float64(v) for k, v in params.items()}
    d64 = [_float64(x, labels=True) for x in arrays]
    if any(isinstance(v, torch.Tensor) for v in [*params.values(), *arrays]):
        hand_p: Mapping[str, Any] = {k: torch.tensor(v) for k, v in p64.items()}
        hand_d: list[Any] = [torch.tensor(x) for x in d64]
    else:
        hand_p, hand_d = p64, list(d64)
    hand = call(lambda: module.manual_gradients(hand_p, *hand_d), "manual_gradients", path)
    leaves = {k: torch.tensor(v, requires_grad=True) for k, v in p64.items()}
    loss = call(lambda: module.torch_loss(leaves, *(torch.tensor(x) for x in d64)), "torch_loss", path)
    (grad,) = torch.autograd.grad(loss, [leaves[name]], allow_unused=True)
    true = np.zeros(p64[name].shape) if grad is None else grad.numpy()
    return _float64(hand[name]), true


def _float64(values: Any, labels: bool = False) -> np.ndarray:
    """`values` as float64 NumPy; with `labels`, integer arrays (class indices) stay int64."""
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu()
        values = values.to(torch.float64) if values.is_floating_point() else values
        values = values.numpy()
    arr = np.asarray(values)
    return arr.astype(np.int64) if labels and arr.dtype.kind in "iub" else np.array(arr, dtype=np.float64)

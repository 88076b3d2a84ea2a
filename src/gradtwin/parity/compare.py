"""Comparisons of two computations against a tolerance, and their reports (tables, JSON)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


@dataclass
class ParamCheck:
    """One parameter's comparison: worst element, both values there, errors and tolerance."""

    comparison: str  # e.g. "manual vs autograd"
    name: str  # parameter name, or "loss" for the forward value
    ok: bool
    max_abs_err: float  # the largest |a - b| over the elements
    max_rel_err: float  # max_abs_err / max |b|: relative to the tensor's own scale
    tol: float  # the tolerance at the worst element
    worst_index: tuple[int, ...]
    a: float
    b: float
    point: int = 0  # which random point held the worst case
    worst_err: float = math.nan  # |a - b| at worst_index, the element `tol` belongs to
    rel_err: float = math.nan  # worst_err / max |b|: that element's error against the tensor's scale

    def message(self) -> str:
        """A one-line diagnosis in the manner of torch.testing.assert_close."""
        at = f"[{', '.join(map(str, self.worst_index))}]" if self.worst_index else ""
        verdict = "agree" if self.ok else "MISMATCH"
        return (
            f"{self.comparison}: {self.name}{at} {verdict}: {self.a:.17g} vs {self.b:.17g}, "
            f"abs err {self.worst_err:.3g}, tolerance {self.tol:.3g} there; rel err {self.rel_err:.3g}"
        )


def compare(comparison: str, name: str, a: Any, b: Any, tol: Any, point: int = 0, where: Any = None) -> ParamCheck:
    """Compare arrays `a` and `b` elementwise against the tolerance array `tol`.

    The worst element is the one with the largest error relative to its own tolerance, so
    a small absolute error in a tightly bounded element is not hidden by a large one that
    its bound allows. NaN anywhere is a mismatch. `where` (a boolean mask) limits the
    comparison to those elements (a sample); the others count as agreeing.
    """
    a64 = np.asarray(a, dtype=np.float64)
    b64 = np.asarray(b, dtype=np.float64)
    if a64.shape != b64.shape:
        raise ValueError(f"{comparison}: {name} has shape {a64.shape} in one and {b64.shape} in the other")
    tol64 = np.broadcast_to(np.asarray(tol, dtype=np.float64), a64.shape)
    err = np.abs(a64 - b64)
    err = np.where(np.isnan(err), np.inf, err)
    if where is not None:
        err = np.where(np.broadcast_to(where, a64.shape), err, 0.0)
    with np.errstate(over="ignore", invalid="ignore"):
        ratio = err / np.maximum(tol64, np.finfo(np.float64).tiny)
    flat = int(np.argmax(ratio)) if ratio.size else 0
    index = tuple(int(i) for i in np.unravel_index(flat, a64.shape)) if a64.shape else ()
    scale = max(float(np.max(np.abs(b64), initial=0.0)), float(np.finfo(np.float64).tiny))
    with np.errstate(over="ignore", invalid="ignore"):
        rel = err / scale
    return ParamCheck(
        comparison=comparison,
        name=name,
        ok=bool(np.all(err <= tol64)),
        max_abs_err=float(err.max()) if err.size else 0.0,
        max_rel_err=float(rel.max()) if err.size else 0.0,
        tol=float(tol64[index]),
        worst_index=index,
        a=float(a64[index]),
        b=float(b64[index]),
        point=point,
        worst_err=float(err[index]) if err.size else 0.0,
        rel_err=float(rel[index]) if err.size else 0.0,
    )


def format_table(checks: list[ParamCheck]) -> str:
    """The checks as a fixed-width table, one row per comparison and parameter.

    Every column belongs to one element, the one farthest outside (or least inside) its
    tolerance: ok is "abs err <= tolerance", and "rel err" is that abs err over the tensor's
    largest |value| (its scale), never over a value that happens to be near zero.
    """
    header = ("comparison", "param", "ok", "worst at", "abs err", "tolerance", "rel err", "point")
    rows = [
        (
            c.comparison,
            c.name,
            "yes" if c.ok else "NO",
            str(list(c.worst_index)) if c.worst_index else "-",
            f"{c.worst_err:.3g}",
            f"{c.tol:.3g}",
            f"{c.rel_err:.3g}",
            str(c.point),
        )
        for c in checks
    ]
    return "\n".join(fixed_width(header, rows))


def fixed_width(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """The header, a rule of dashes and the rows, each column as wide as its widest cell."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(v).ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


class JsonReport:
    """to_dict and to_json for a report dataclass; NaN and infinities become None (JSON has no NaN)."""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = finite_or_none(asdict(self))  # type: ignore[call-overload]
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False)


def to_json(checks: list[ParamCheck]) -> str:
    """The checks as JSON; non-finite numbers become null so the output stays valid JSON."""
    return json.dumps([finite_or_none(asdict(c)) for c in checks], indent=2)


def finite_or_none(value: Any) -> Any:
    """Replace NaN and infinities (at any depth) with None: JSON has no NaN."""
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def worst(checks: list[ParamCheck]) -> list[ParamCheck]:
    """Per (comparison, parameter), the check whose error is largest against its tolerance."""
    best: dict[tuple[str, str], ParamCheck] = {}
    for c in checks:
        key = (c.comparison, c.name)
        ratio = c.worst_err / max(c.tol, np.finfo(np.float64).tiny)
        if key not in best:
            best[key] = c
            continue
        old = best[key]
        old_ratio = old.worst_err / max(old.tol, np.finfo(np.float64).tiny)
        if (not c.ok and old.ok) or (c.ok == old.ok and ratio > old_ratio):
            best[key] = c
    return list(best.values())


def history_max_abs_diff(a: Any, b: Any) -> dict[str, float]:
    """Largest |a - b| of each parameter and of the loss over the iterations both recorded.

    `a` and `b` are `training.History` objects; rows are matched by iteration number, so runs
    that stopped at different iterations are compared over what they share.
    """
    common, ia, ib = np.intersect1d(a.iteration, b.iteration, return_indices=True)
    out: dict[str, float] = {}
    for name in a.params:
        diff = np.abs(a.params[name][ia] - b.params[name][ib])
        out[name] = float(np.nan_to_num(diff, nan=np.inf).max()) if common.size else math.nan
    diff = np.abs(a.loss[ia] - b.loss[ib])
    out["loss"] = float(np.nan_to_num(diff, nan=np.inf).max()) if common.size else math.nan
    return out

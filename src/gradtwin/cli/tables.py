"""What the commands print: the comparison tables, one-line summaries and the JSON of a run."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from gradtwin.data import Dataset
from gradtwin.models import Model
from gradtwin.training import TrainResult
from gradtwin.training.exact import EXACT_MODELS

SHOWN_NUMBERS = 20  # parameters of more numbers than this are shown by shape and norm, never in full
# from here on a stepping engine's run of a linear model takes far longer than the exact engine's closed form
# (at 30 x 1, a few us a step against about 0.3 us an iteration; comparisons/BENCH.md)
EXACT_HINT_ITERATIONS = 10_000


def result_json(r: TrainResult, model: Model | None = None, data: Dataset | None = None) -> dict[str, Any]:
    """A run as the JSON keys the commands print; with its model and data, also the units of
    `params` and `params_in_data_units` (null for a model whose first layer is not affine in X)."""
    out = {
        "model": r.model,
        "engine": r.engine,
        "device": r.device,
        "dtype": r.dtype,
        "params": {k: v.tolist() for k, v in r.params.items()},
        "loss": r.loss,
        "iterations": r.iterations,
        "stop_reason": r.stop_reason,
        "seconds": r.seconds,
        "lr": r.lr,
        "message": r.message,
    }
    if model is not None and data is not None:
        raw = model.in_data_units(r.params, data)
        out["units"] = units(data)
        out["params_in_data_units"] = None if raw is None else {k: v.tolist() for k, v in raw.items()}
    return out


def units(data: Dataset) -> str:
    """In which units of X the parameters trained on `data` are."""
    if data.x_mean is None:
        return "X in the data's own units"
    return "standardized X" if data.standardized else "X prepared as (X - x_mean) / x_scale"


def _numbers(params: dict[str, np.ndarray]) -> int:
    return sum(int(np.size(v)) for v in params.values())


def _units_line(m: TrainResult, model: Model | None, data: Dataset) -> str:
    """Which units the table's parameters are in, and the manual twin's in the data's own units."""
    names = ", ".join(m.params)
    if data.x_mean is None:
        return f"{names}: for X in the data's own units"
    raw = None if model is None else model.in_data_units(m.params, data)
    if raw is None:
        return f"{names}: for {units(data)}"
    if _numbers(raw) > SHOWN_NUMBERS:
        return f"{names}: for {units(data)}; --json gives them in the data's own units as well (params_in_data_units)"
    shown = ", ".join(f"{k} = {fmt(v)}" for k, v in raw.items())
    return f"{names}: for {units(data)}; in the data's own units (manual): {shown}"


def train_summary(
    r: TrainResult, model: Model, data: Dataset, scores: dict[str, dict[str, float]] | None = None
) -> str:
    """One run, a line each: loss, accuracies (classifiers), iterations, stop reason, time, then the
    parameters: values for a regression of few numbers (also in the data's own units), else shape and norm."""
    held_out = f", {data.test.n} held out" if data.test is not None else ""
    lines = [
        f"{r.model} ({r.engine}, {r.dtype} on {r.device}) on {data.name}: n={data.n} training rows{held_out}; "
        f"lr={r.lr:g}",
    ]
    rows: list[tuple[str, str]] = [("loss", fmt(r.loss))]
    for key, label in (("train_accuracy", "training accuracy"), ("test_accuracy", "held-out accuracy")):
        if scores and key in scores:
            rows.append((label, f"{scores[key][r.engine]:.2%}"))
    rows += [
        ("iterations", str(r.iterations)),
        ("stop reason", r.stop_reason),
        ("time / iteration", time_text(r.seconds_per_iteration)),
    ]
    width = max(len(k) for k, _ in rows)
    lines += [f"{k.ljust(width)}  {v}" for k, v in rows]
    raw = model.in_data_units(r.params, data)
    if model.task == "regression" and _numbers(r.params) <= SHOWN_NUMBERS:
        lines.append(f"parameters, for {units(data)}:")
        lines += _value_lines(r.params)
        if raw is not None and data.x_mean is not None:
            lines.append("in the data's own units:")
            lines += _value_lines(raw)
    else:
        lines.append(f"parameters, for {units(data)}: shape and norm (--json prints them in full)")
        width = max(len(k) for k in r.params)
        lines += [
            f"  {k.ljust(width)}  {tuple(np.shape(v))!s:<12}  norm {fmt(np.linalg.norm(np.asarray(v, float)), 6)}"
            for k, v in r.params.items()
        ]
        if raw is not None and data.x_mean is not None:
            lines.append("  in the data's own units as well: --json (params_in_data_units)")
    lines += _classes_line(data)
    lines += exact_hint(r)
    if r.message:
        lines.append(f"{r.engine}: {r.message}")
    return "\n".join(lines)


def _classes_line(data: Dataset) -> list[str]:
    """The classes' names as the data file wrote them, where it did."""
    if not data.class_names:
        return []
    names = ", ".join(data.class_names)
    shown = names if len(names) <= 150 else names[:150] + "..."
    return [f"classes 0..{len(data.class_names) - 1} of {data.y_name}: {shown}"]


def _value_lines(params: dict[str, np.ndarray]) -> list[str]:
    width = max(len(k) for k in params)
    return [f"  {k.ljust(width)}  {fmt(v)}" for k, v in params.items()]


def fmt(v: Any, digits: int = 10) -> str:
    """Numbers for the tables; a NaN or an infinity reads 'non-finite', never 'nan' or 'inf'."""
    arr = np.asarray(v, dtype=np.float64)
    if arr.ndim == 0:
        return f"{float(arr):.{digits}g}" if math.isfinite(arr) else "non-finite"
    return "[" + ", ".join(fmt(x, 6) for x in arr.ravel()) + "]"


def _heading(r: TrainResult) -> str:
    """A twin's column heading: how it gets its gradients, and in which arrays."""
    if r.engine == "manual":
        return f"manual ({'NumPy' if r.extra.get('array') == 'numpy' else 'torch, no autograd'})"
    return {"tape": "tape (gradtwin autodiff)", "autograd": "autograd (PyTorch)"}.get(r.engine, r.engine)


def _grid(rows: Sequence[Sequence[str]]) -> list[str]:
    """Rows of cells as left-aligned columns."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]


def _run_rows(runs: Sequence[TrainResult], pad: int = 0) -> list[list[str]]:
    """The iterations, stop reason and time per iteration of each run, `pad` empty cells after them."""
    tail = [""] * pad
    return [
        ["iterations", *(str(r.iterations) for r in runs), *tail],
        ["stop reason", *(r.stop_reason for r in runs), *tail],
        ["time / iteration", *(time_text(r.seconds_per_iteration) for r in runs), *tail],
    ]


def _diff_lines(runs: Sequence[TrainResult], diffs: Mapping[str, Mapping[str, float]]) -> list[str]:
    """'largest |a - b| over the whole run' for each pair of twins compared."""
    lines = [""]
    for pair, values in diffs.items():
        lines += [
            f"largest |{pair}| over the whole run ({runs[0].history.iteration.size} recorded iterations):",
            "  " + ", ".join(f"{k} {fmt(v, 3)}" for k, v in values.items()),
        ]
    return lines


def classifier_table(
    runs: Sequence[TrainResult],
    diffs: Mapping[str, Mapping[str, float]],
    scores: dict[str, dict[str, float]],
    data: Dataset,
    model: Model | None = None,
) -> str:
    """The classifier twins side by side (manual first, autograd last): loss, accuracies, iterations, then
    the largest difference of each pair in `diffs` ("manual - autograd": {name: value})."""
    m, a = runs[0], runs[-1]
    held_out = f", {data.test.n} held out" if data.test is not None else ", nothing held out"
    lines = [
        f"{m.model} on {data.name}: n={data.n} training rows{held_out}, {data.x_name}; "
        f"{m.dtype} on {a.device}; lr={m.lr:g}",
        "",
    ]
    rows: list[list[str]] = [["", *(_heading(r) for r in runs)], ["loss", *(f"{r.loss:.10g}" for r in runs)]]
    for key, label in (("train_accuracy", "training accuracy"), ("test_accuracy", "held-out accuracy")):
        if key in scores:
            rows.append([label, *(f"{scores[key][r.engine]:.2%}" for r in runs)])
    lines += _grid(rows + _run_rows(runs))
    shapes = ", ".join(f"{k} {tuple(np.shape(v))}" for k, v in m.params.items())
    own = "; --json prints them, also in the data's own units" if data.x_mean is not None else ""
    lines.append(f"parameters {shapes}: for {units(data)}{own}")
    lines += _classes_line(data)
    lines += _diff_lines(runs, diffs)
    lines += [f"{r.engine}: {r.message}" for r in runs if r.message]
    return "\n".join(lines)


def compare_table(
    runs: Sequence[TrainResult],
    diffs: Mapping[str, Mapping[str, float]],
    lsq: dict[str, np.ndarray],
    lsq_loss: float,
    data: Dataset,
    model: Model | None = None,
) -> str:
    """The regression twins side by side (manual first, autograd last) with least squares, then the
    largest difference of each pair in `diffs`."""
    m, a = runs[0], runs[-1]
    x_desc = f"{data.x_name}{' (standardized)' if data.standardized else ''}"
    start = (
        "zeros"
        if m.history.iteration.size == 0 or all(not np.any(v[0]) for v in m.history.params.values())
        else "seeded random values"
    )
    lines = [
        f"{m.model} on {data.name}: n={data.n}, x={x_desc}, y={data.y_name}; "
        f"{m.dtype} on {a.device}; lr={m.lr:g}; start: {start}",
        "",
    ]
    rows: list[list[str]] = [["", *(_heading(r) for r in runs), "least squares"]]
    for name in m.params:
        rows.append([name, *(fmt(r.params[name]) for r in runs), fmt(lsq.get(name, np.nan))])
    rows.append(["loss", *(fmt(r.loss) for r in runs), fmt(lsq_loss)])
    lines += _grid(rows + _run_rows(runs, pad=1))
    lines.append(_units_line(m, model, data))
    lines += _diff_lines(runs, diffs)
    lines += exact_hint(m)
    lines += [f"{r.engine}: {r.message}" for r in runs if r.message]
    return "\n".join(lines)


def exact_hint(r: TrainResult) -> list[str]:
    """One line naming the exact engine as the faster choice after many stepped iterations of a linear model."""
    if r.model not in EXACT_MODELS or r.engine == "exact" or r.iterations < EXACT_HINT_ITERATIONS:
        return []
    if r.extra.get("processes", 1) > 1:
        return []  # the exact engine runs in one process
    return [
        f"faster: `gradtwin train --engine exact` computes these {r.iterations:,} iterations of {r.model} "
        "in closed form, after one pass over the data"
    ]


def time_text(seconds: float) -> str:
    """Seconds as microseconds or milliseconds, three digits."""
    return f"{seconds * 1e6:.3g} us" if seconds < 1e-3 else f"{seconds * 1e3:.3g} ms"


def twins_table(
    runs: Sequence[TrainResult], diffs: Mapping[str, Mapping[str, float]], data: Dataset, start: str
) -> str:
    """Your own model's twins side by side (no reference answer is known for it), then their largest difference.

    A parameter of few numbers is shown in full, a larger one by its shape and norm.
    """
    m, a = runs[0], runs[-1]
    lines = [
        f"{m.model} on {data.name}: n={data.n}; {m.dtype} on {a.device}; lr={m.lr:g}; start: {start}",
        "",
    ]
    rows: list[list[str]] = [["", *(_heading(r) for r in runs)]]
    for name in m.params:
        rows.append([name, *(_shown(r.params[name]) for r in runs)])
    rows.append(["loss", *(fmt(r.loss) for r in runs)])
    lines += _grid(rows + _run_rows(runs))
    lines += _diff_lines(runs, diffs)
    lines += [f"{r.engine}: {r.message}" for r in runs if r.message]
    return "\n".join(lines)


def _shown(value: np.ndarray) -> str:
    if np.size(value) <= SHOWN_NUMBERS:
        return fmt(value)
    return f"shape {tuple(np.shape(value))}, norm {fmt(np.linalg.norm(np.asarray(value, float)), 6)}"

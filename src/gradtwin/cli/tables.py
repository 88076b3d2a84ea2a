"""What the commands print: the comparison tables, one-line summaries and the JSON of a run."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from gradtwin.data import Dataset
from gradtwin.training import TrainResult


def result_json(r: TrainResult) -> dict[str, Any]:
    """A run as the JSON keys the commands print."""
    return {
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


def fmt(v: Any, digits: int = 10) -> str:
    """Numbers for the tables; a NaN or an infinity reads 'non-finite', never 'nan' or 'inf'."""
    arr = np.asarray(v, dtype=np.float64)
    if arr.ndim == 0:
        return f"{float(arr):.{digits}g}" if math.isfinite(arr) else "non-finite"
    return "[" + ", ".join(fmt(x, 6) for x in arr.ravel()) + "]"


def classifier_table(
    m: TrainResult, a: TrainResult, diffs: dict[str, float], scores: dict[str, dict[str, float]], data: Dataset
) -> str:
    """The classifier twins side by side: loss, accuracies, iterations, then their largest difference."""
    held_out = f", {data.test.n} held out" if data.test is not None else ", nothing held out"
    lines = [
        f"{m.model} on {data.name}: n={data.n} training rows{held_out}, {data.x_name}; "
        f"{m.dtype} on {a.device}; lr={m.lr:g}",
        "",
    ]
    rows: list[tuple[str, str, str]] = [("", "manual (NumPy)", "autograd (PyTorch)")]
    rows.append(("loss", f"{m.loss:.10g}", f"{a.loss:.10g}"))
    for key, label in (("train_accuracy", "training accuracy"), ("test_accuracy", "held-out accuracy")):
        if key in scores:
            rows.append((label, f"{scores[key]['manual']:.2%}", f"{scores[key]['autograd']:.2%}"))
    rows.append(("iterations", str(m.iterations), str(a.iterations)))
    rows.append(("stop reason", m.stop_reason, a.stop_reason))
    rows.append(("time / iteration", time_text(m.seconds_per_iteration), time_text(a.seconds_per_iteration)))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines += [
        "",
        f"largest |manual - autograd| over the whole run ({m.history.iteration.size} recorded iterations):",
        "  " + ", ".join(f"{k} {v:.3g}" for k, v in diffs.items()),
    ]
    lines += [f"{r.engine}: {r.message}" for r in (m, a) if r.message]
    return "\n".join(lines)


def compare_table(
    m: TrainResult,
    a: TrainResult,
    diffs: dict[str, float],
    lsq: dict[str, np.ndarray],
    lsq_loss: float,
    data: Dataset,
) -> str:
    """The regression twins side by side with least squares, then their largest difference."""
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
    arrays = "NumPy" if m.extra.get("array") == "numpy" else "torch, no autograd"
    rows: list[tuple[str, str, str, str]] = [("", f"manual ({arrays})", "autograd (PyTorch)", "least squares")]
    for name in m.params:
        rows.append((name, fmt(m.params[name]), fmt(a.params[name]), fmt(lsq.get(name, np.nan))))
    rows.append(("loss", fmt(m.loss), fmt(a.loss), fmt(lsq_loss)))
    rows.append(("iterations", str(m.iterations), str(a.iterations), ""))
    rows.append(("stop reason", m.stop_reason, a.stop_reason, ""))
    rows.append(("time / iteration", time_text(m.seconds_per_iteration), time_text(a.seconds_per_iteration), ""))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    rec = m.history.iteration.size
    lines += [
        "",
        f"largest |manual - autograd| over the whole run ({rec} recorded iterations):",
        "  " + ", ".join(f"{k} {fmt(v, 3)}" for k, v in diffs.items()),
    ]
    for r in (m, a):
        if r.message:
            lines.append(f"{r.engine}: {r.message}")
    return "\n".join(lines)


def time_text(seconds: float) -> str:
    """Seconds as microseconds or milliseconds, three digits."""
    return f"{seconds * 1e6:.3g} us" if seconds < 1e-3 else f"{seconds * 1e3:.3g} ms"

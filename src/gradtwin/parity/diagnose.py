"""Diagnoses of a gradient mismatch: the patterns that name a likely mistake.

Each function looks at a hand-derived gradient `h` against the reference `r` (autograd in
float64, refereed by finite differences) with the elementwise tolerance `tol`, and returns a
sentence when its pattern explains the whole mismatch, else None.
"""

from __future__ import annotations

import numpy as np

_TINY = np.finfo(np.float64).tiny


def _close(a: np.ndarray, b: np.ndarray, tol: np.ndarray) -> bool:
    return bool(np.all(np.abs(a - b) <= tol))


def constant_ratio(h: np.ndarray, r: np.ndarray, tol: np.ndarray, n: int | None) -> str | None:
    """h = c * r for one constant c: opposite sign, a factor 2 or 1/2, n or 1/n, or another constant."""
    mask = np.abs(r) > 2 * tol
    if not mask.any():
        return None
    c = float(np.median(h[mask] / r[mask]))
    if not np.isfinite(c) or not _close(h, c * r, (1 + abs(c)) * tol) or abs(c - 1) < 1e-9:
        return None
    names = {1.0: "", 2.0: "twice", 0.5: "half"}
    if n is not None and n > 2:
        names.update({float(n): f"n = {n} times", 1.0 / n: f"1/n = 1/{n} times"})
    for value, name in names.items():
        for sign in (1.0, -1.0):
            if abs(c - sign * value) <= 1e-6 * abs(value):
                return _ratio_sentence(sign * value, name, n)
    return f"the hand-derived gradient is {c:.6g} times the true one: a constant factor is wrong"


def _ratio_sentence(c: float, name: str, n: int | None) -> str:
    if c == -1.0:
        return (
            "opposite sign: the hand-derived gradient is minus the true one (d/d(Y - pred) instead of d/d(pred - Y)?)"
        )
    flip = "minus " if c < 0 else ""
    hints = {
        "twice": "a factor 2 counted twice",
        "half": "a lost factor 2 (d/dx x^2 = 2x)",
        f"n = {n} times": "a sum where the loss takes a mean (a lost 1/n)",
        f"1/n = 1/{n} times": "a mean where the loss takes a sum (an extra 1/n)",
    }
    return f"the hand-derived gradient is {flip}{name} the true one: {hints[name]}"


def transposed(h: np.ndarray, r: np.ndarray, tol: np.ndarray) -> str | None:
    """h matches the transpose of r (a square matrix with its indices swapped)."""
    if h.ndim != 2 or h.shape[0] != h.shape[1] or not _close(h.T, r, tol.T):
        return None
    return "matches the transpose of the true gradient: the index order is swapped (X.T @ d against d.T @ X)"


def transposed_shape(name: str, shape: tuple[int, ...], agrees: bool) -> str:
    """The sentence for a gradient returned with its parameter's shape reversed."""
    back = "and transposed back it agrees" if agrees else "and even transposed back it disagrees"
    return (
        f"the hand-derived gradient of {name} has shape {shape[::-1]}, the transpose of {name}'s shape {shape}, "
        f"{back}: return its transpose"
    )


def located(h: np.ndarray, r: np.ndarray, tol: np.ndarray) -> str | None:
    """The wrong elements form one element, one row, one column or one block of a matrix."""
    bad = ~(np.abs(h - r) <= tol)
    where = np.argwhere(bad)
    if where.size == 0 or bad.sum() == bad.size:
        return None
    count = f"{int(bad.sum())} of {bad.size} elements"
    if len(where) == 1:
        return f"only one element, {list(int(i) for i in where[0])}, is wrong: an indexing or off-by-one mistake?"
    if bad.ndim != 2:
        return None
    rows, cols = np.unique(where[:, 0]), np.unique(where[:, 1])
    if len(rows) == 1:
        return f"only row {int(rows[0])} is wrong ({count}): a mistake in one input feature or one unit's path"
    if len(cols) == 1:
        return f"only column {int(cols[0])} is wrong ({count}): a mistake in one output's path"
    r0, r1, c0, c1 = int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1
    if bad[r0:r1, c0:c1].all():
        return f"only the block [{r0}:{r1}, {c0}:{c1}] is wrong ({count}): a slice taken with the wrong bounds?"
    return None


def summarize(h: np.ndarray, r: np.ndarray, tol: np.ndarray) -> str:
    """How many elements differ, when no pattern explains them."""
    bad = int(np.sum(~(np.abs(h - r) <= tol)))
    share = f" ({100 * bad / h.size:.3g} %)" if h.size > 1 else ""
    return (
        f"{bad} of {h.size} element(s) differ{share}; no simple pattern (sign, factor, transpose, one element, "
        "row, column or block, kink) explains them"
    )

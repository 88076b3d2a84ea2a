"""Diagnoses of a gradient mismatch: the patterns that name a likely mistake.

Each function looks at a hand-derived gradient `h` against the reference `r` (autograd in
float64, refereed by finite differences) with the elementwise tolerance `tol`, and returns a
sentence when its pattern explains the whole mismatch, else None.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

_TINY = np.finfo(np.float64).tiny


def _close(a: np.ndarray, b: np.ndarray, tol: np.ndarray) -> bool:
    return bool(np.all(np.abs(a - b) <= tol))


def constant_ratio(h: np.ndarray, r: np.ndarray, tol: np.ndarray, n: int | None) -> str | None:
    """h = k * r for one constant k that fits every element within its tolerance, named when simple.

    The names, simplest first: opposite sign, twice, half, n, 1/n (n the samples), n/(n-1) and
    (n-1)/n (a variance's n against n - 1), 2n, n/2, 2/n, 1/(2n), then p/q with q <= 12 and
    p <= 24 ("3 times", "2/3 times"); any other k is given as a number.
    """
    mask = np.abs(r) > 2 * tol
    if not mask.any():
        return None
    c = float(np.median(h[mask] / r[mask]))
    if not np.isfinite(c) or not _close(h, c * r, (1 + abs(c)) * tol) or abs(c - 1) < 1e-9:
        return None
    if abs(c + 1.0) <= 1e-6:
        return _ratio_sentence(-1.0, "", "")
    for value, name, hint in _factors(n):
        for sign in (1.0, -1.0):
            k = sign * value
            if abs(c - k) <= 1e-6 * value or (abs(c - k) <= 1e-3 * value and _close(h, k * r, (1 + value) * tol)):
                return _ratio_sentence(k, name, hint)
    return f"the hand-derived gradient is {c:.6g} times the true one: a constant factor is wrong"


def _factors(n: int | None) -> list[tuple[float, str, str]]:
    """(k > 0, its name, the likely mistake), simplest first; k = 1 is not a mistake and is left out."""
    out = [(2.0, "twice", "a factor 2 counted twice"), (0.5, "half", "a lost factor 2 (d/dx x^2 = 2x)")]
    if n is not None and n > 2:
        out += [
            (float(n), f"n = {n} times", "a sum where the loss takes a mean (a lost 1/n)"),
            (1.0 / n, f"1/n = 1/{n} times", "a mean where the loss takes a sum (an extra 1/n)"),
            (n / (n - 1), f"n/(n-1) = {n}/{n - 1} times", "a variance's derivative with n - 1 where the forward "
             "pass divides by n (the unbiased estimate in the backward, the biased one in the forward)"),
            ((n - 1) / n, f"(n-1)/n = {n - 1}/{n} times", "a variance's derivative with n where the forward pass "
             "divides by n - 1 (torch.var's default, unbiased)"),
            (2.0 * n, f"2n = {2 * n} times", "a sum where the loss takes a mean, and a factor 2 counted twice"),
            (n / 2.0, f"n/2 = {n}/2 times", "a sum where the loss takes a mean, and a lost factor 2"),
            (2.0 / n, f"2/n = 2/{n} times", "an extra 1/n, and a factor 2 counted twice"),
            (0.5 / n, f"1/(2n) = 1/{2 * n} times", "an extra 1/n, and a lost factor 2"),
        ]  # fmt: skip
    seen = {round(v, 12) for v, _, _ in out} | {1.0}
    for q in range(1, 13):
        for p in range(1, 25):
            v = p / q
            if math.gcd(p, q) == 1 and round(v, 12) not in seen:
                seen.add(round(v, 12))
                name = f"{p} times" if q == 1 else f"{p}/{q} times"
                hint = (
                    f"a factor {p} too many"
                    if q == 1
                    else f"a factor {q} lost"
                    if p == 1
                    else "a constant factor is wrong"
                )
                out.append((v, name, hint))
    return out


def _ratio_sentence(c: float, name: str, hint: str) -> str:
    if c == -1.0:
        return (
            "opposite sign: the hand-derived gradient is minus the true one (d/d(Y - pred) instead of d/d(pred - Y)?)"
        )
    flip = "minus " if c < 0 else ""
    return f"the hand-derived gradient is {flip}{name} the true one: {hint}"


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


def pattern(
    h: np.ndarray,
    r: np.ndarray,
    tol: np.ndarray,
    n: int | None,
    indices: Sequence[np.ndarray] = (),
    related: Mapping[str, np.ndarray] | None = None,
) -> str:
    """The first pattern that explains the whole mismatch of h against r, or a count of what differs.

    indices: integer arrays of the data (rows looked up); related: dL/dT of tapped tensors (float64).
    """
    return (
        constant_ratio(h, r, tol, n)
        or transposed(h, r, tol)
        or wrong_axis(h, r, tol, related or {})
        or repeated_rows(h, r, tol, indices)
        or located(h, r, tol)
        or summarize(h, r, tol)
    )


def reducible(got: tuple[int, ...], want: tuple[int, ...]) -> tuple[int, ...] | None:
    """The axes of `got` over which a tensor of shape `want` is broadcast (summing there gives `want`), or None."""
    try:
        if np.broadcast_shapes(got, want) != tuple(got):
            return None
    except ValueError:
        return None
    lead = len(got) - len(want)
    axes = (*range(lead), *(lead + i for i, w in enumerate(want) if w == 1 and got[lead + i] != 1))
    return tuple(axes) or None


def unreduced(name: str, shape: tuple[int, ...], got: tuple[int, ...], axes: tuple[int, ...], agrees: bool) -> str:
    """The sentence for a gradient returned with the broadcast shape, not summed over the broadcast axes."""
    where = f"axis {axes[0]}" if len(axes) == 1 else f"axes {list(axes)}"
    then = "summed there it agrees" if agrees else "even summed there it disagrees"
    return (
        f"a missing sum over a broadcast axis: the hand-derived gradient of {name} has shape {got}, not {name}'s "
        f"shape {shape}; {name} is broadcast over {where} in the forward pass, so its gradient is the sum over "
        f"{where}, and {then}"
    )


def wrong_axis(h: np.ndarray, r: np.ndarray, tol: np.ndarray, related: Mapping[str, np.ndarray]) -> str | None:
    """h is dL/dT summed over one axis where the true gradient is dL/dT summed over another (a bias broadcast
    over the samples, summed over the features): T one of the tapped tensors, dL/dT autograd's."""
    for name, g in related.items():
        if g.ndim < 2:
            continue
        sums = [g.sum(axis=a) for a in range(g.ndim)]
        if not any(x.shape == r.shape for x in sums):
            continue
        # the sums' own rounding, generously: the hand code sums its own dL/dT, in its own dtype
        loose = {a: tol + 1e-6 * np.abs(g).sum(axis=a) for a, x in enumerate(sums) if x.shape == r.shape}
        right = [a for a, t in loose.items() if _close(sums[a], r, t)]
        for a in right:
            for b, t in loose.items():
                if b != a and _close(sums[b], h, t):
                    return (
                        f"summed over the wrong axis: the hand-derived gradient is dL/d{name} summed over axis {b}, "
                        f"but the parameter is broadcast over axis {a} of {name}: sum over axis {a}"
                    )
    return None


def repeated_rows(h: np.ndarray, r: np.ndarray, tol: np.ndarray, indices: Sequence[np.ndarray]) -> str | None:
    """The wrong rows are exactly rows that an integer array of the data looks up more than once, and every row
    looked up once agrees: `dE[idx] = g` (one contribution kept) where np.add.at(dE, idx, g) (+=) was meant."""
    if h.ndim < 1 or h.shape[0] < 2:
        return None
    bad = ~(np.abs(h - r) <= tol)
    bad_rows = bad.reshape(h.shape[0], -1).any(axis=1)
    if not bad_rows.any() or bad_rows.all():
        return None
    for idx in indices:
        flat = np.asarray(idx).reshape(-1)
        if flat.dtype.kind not in "iu" or flat.size == 0 or flat.min() < 0 or flat.max() >= h.shape[0]:
            continue
        counts = np.bincount(flat, minlength=h.shape[0])
        if np.all(counts[bad_rows] > 1) and np.any(counts == 1):
            rows = [int(i) for i in np.flatnonzero(bad_rows)]
            shown = ", ".join(map(str, rows[:SHOWN_ROWS])) + (", ..." if len(rows) > SHOWN_ROWS else "")
            return (
                f"only rows looked up more than once are wrong (rows {shown}: {len(rows)} of "
                f"{int((counts > 1).sum())} repeated rows; every row looked up once agrees): each holds one "
                "contribution, not their sum; accumulate with += for every use (np.add.at(dE, idx, g), "
                "index_add_), not dE[idx] = g"
            )
    return None


SHOWN_ROWS = 5

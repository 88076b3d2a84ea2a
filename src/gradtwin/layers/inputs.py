"""What each layer accepts: the one-line errors both twins give.

The manual twin calls these on NumPy arrays (or torch tensors without autograd), the autograd twin on
torch tensors, so each check reads only .shape, .ndim and .dtype and compares values with operators both
kinds of array have; a NumPy copy is made only where a check needs one. One copy of each check, so the
twins cannot drift apart in what they refuse or in the words they refuse it with (and the native errors,
several lines of C++ from F.conv2d or an IndexError from F.embedding, never reach the user).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from array_api_compat import array_namespace

from gradtwin.errors import DataError, DataTypeError, UsageError

ATTENTION_NAMES = ("Wq", "Wk", "Wv")  # attention's params, and, optionally, "Wo"


def _numpy(A: Any) -> np.ndarray:
    """A as a NumPy array: itself, or a detached cpu copy of a torch tensor."""
    return np.asarray(A.detach().cpu() if hasattr(A, "detach") else A)


def as_int(value: Any) -> int | None:
    """value as an int if it is a whole number (2, 2.0, a 0-d integer array), else None."""
    try:
        whole = int(value)
    except (TypeError, ValueError):
        return None
    return whole if whole == value else None


def conv2d_sizes(W: Any, X: Any, stride: Any, padding: Any) -> tuple[int, int, int, int]:
    """(stride, padding, H_out, W_out), or one error naming the argument that does not fit."""
    s, p = as_int(stride), as_int(padding)
    if s is None or p is None or s < 1 or p < 0:
        raise UsageError(
            f"conv2d: stride must be an integer >= 1 and padding >= 0; got stride={stride}, padding={padding}"
        )
    if len(X.shape) != 4 or X.shape[1] != W.shape[1]:
        raise UsageError(
            f"conv2d: X must be 4-D (N, C_in, H, W) with C_in = {W.shape[1]}, W's second axis; "
            f"got shape {tuple(X.shape)}"
        )
    Hp, Wp, kh, kw = X.shape[2] + 2 * p, X.shape[3] + 2 * p, W.shape[2], W.shape[3]
    if kh > Hp or kw > Wp:
        raise UsageError(
            f"conv2d: the kernel (kh, kw) must fit in the padded input (H + 2*padding, W + 2*padding); got kernel "
            f"({kh}, {kw}) and padded input ({Hp}, {Wp})"
        )
    return s, p, (Hp - kh) // s + 1, (Wp - kw) // s + 1


def maxpool2d_sizes(X: Any, kernel: Any, stride: Any) -> tuple[int, int, int, int]:
    """(k, s, H_out, W_out), or one error naming the argument that does not fit (stride None: the kernel)."""
    stride = kernel if stride is None else stride
    k, s = as_int(kernel), as_int(stride)
    if k is None or s is None or k < 1 or s < 1:
        raise UsageError(f"maxpool2d: kernel and stride must be integers >= 1; got kernel={kernel}, stride={stride}")
    if len(X.shape) != 4 or k > X.shape[2] or k > X.shape[3]:
        raise UsageError(f"maxpool2d: X must be 4-D (N, C, H, W) with H, W >= kernel = {k}; got shape {tuple(X.shape)}")
    return k, s, (X.shape[2] - k) // s + 1, (X.shape[3] - k) // s + 1


def attention_shapes(params: dict[str, Any], X: Any) -> None:
    """One error naming the inputs when their shapes do not fit together."""
    names = sorted(params, key=lambda k: ((*ATTENTION_NAMES, "Wo", k).index(k), k))  # Wq, Wk, Wv, Wo, the rest
    if not set(ATTENTION_NAMES) <= set(params) <= {*ATTENTION_NAMES, "Wo"}:
        raise UsageError(f"attention: params must be Wq, Wk, Wv and, optionally, Wo; got {', '.join(names)}")
    if X.ndim not in (2, 3) or X.shape[-2] < 1:
        raise DataError(f"attention: X must be 2-D (T, d) or 3-D (B, T, d) with T >= 1; got shape {tuple(X.shape)}")
    d = X.shape[-1]
    Wq, Wk, Wv = (params[k] for k in ATTENTION_NAMES)
    fits = all(W.ndim == 2 and W.shape[0] == d for W in (Wq, Wk, Wv)) and tuple(Wk.shape) == tuple(Wq.shape)
    if "Wo" in params:
        fits = fits and params["Wo"].ndim == 2 and Wv.ndim == 2 and params["Wo"].shape[0] == Wv.shape[1]
    if not fits:
        wo = ", Wo (d_v, d_out)" if "Wo" in params else ""
        got = ", ".join(f"{k} {tuple(params[k].shape)}" for k in names)
        raise DataError(
            f"attention: Wq and Wk must be (d, d_k), Wv (d, d_v){wo} with d = {d}, the last axis of X; got {got}"
        )


def dropout_probability(p: Any, X: Any = None, keep: Any = None) -> float:
    """p as a float if it is a number in [0, 1) (0-d arrays and tensors too); keep, if given, of X's shape and 0/1."""
    try:
        raw = p.detach() if hasattr(p, "detach") else p  # a torch p may carry a graph (the checker's does)
        value = math.nan if isinstance(raw, (str, bytes, bool)) or getattr(raw, "ndim", 0) != 0 else float(raw)
    except (TypeError, ValueError):
        value = math.nan
    if not 0.0 <= value < 1.0:
        raise UsageError(f"dropout: p must be the probability of dropping an element, in [0, 1); got {p!r}")
    if X is not None and keep is not None:
        if tuple(keep.shape) != tuple(X.shape):
            raise UsageError(f"dropout: keep (the mask) must have X's shape {tuple(X.shape)}; got {tuple(keep.shape)}")
        other = int(((keep != 0) & (keep != 1)).sum())
        if other:
            raise UsageError(
                f"dropout: keep (the mask) must hold only 0 (drop) and 1 (keep); got {other} other value(s)"
            )
    return value


def embedding_indices(X: Any, V: int) -> None:
    """X must hold integers in [0, V): one error naming the first bad index and V."""
    x = _numpy(X)
    if x.dtype.kind not in "iu":
        raise DataTypeError(f"embedding: X must hold integer indices; got dtype {x.dtype}")
    bad = np.argwhere((x < 0) | (x >= V))
    if bad.size:
        at = tuple(int(i) for i in bad[0])
        raise DataError(
            f"embedding: X must hold indices in [0, V) with V = {V}, the rows of W; got {int(x[at])} at {at}"
        )


WHOLE = 0.1  # indices travel in X as float64 whole numbers; a checker's nudge (far below 0.1) reads the same index


def window_indices(X: Any, V: int, width: int, model: str, why: str) -> Any:
    """X (n, width) of whole numbers in [0, V) as int64 indices, or one DataError naming what does not fit.

    The values are rounded to the nearest whole number: a value within WHOLE of one is that index (the
    loss does not depend on X between indices), anything else is refused, as is an index outside [0, V).
    Shapes::  X (n, width) float  ->  (n, width) int64, in X's array namespace
    """
    if len(X.shape) != 2 or X.shape[1] != width or X.shape[0] < 1:
        raise DataError(f"{model}: X must be 2-D (n, {width}), {why}; got shape {tuple(X.shape)}")
    x = _numpy(X).astype(np.float64)
    whole = np.round(x)  # (n, width)
    bad = ~(np.abs(x - whole) <= WHOLE) | (whole < 0) | (whole >= V)  # NaN fails the first test
    if bad.any():
        at = tuple(int(i) for i in np.argwhere(bad)[0])
        raise DataError(
            f"{model}: X must hold whole-number character indices in [0, V) with V = {V}; got {float(x[at])!r} at {at}"
        )
    A = X.detach() if hasattr(X, "detach") else X  # indices carry no gradient, whatever X was handed in with
    xp = array_namespace(A)
    return xp.astype(xp.round(A), xp.int64)


def image_side(X: Any) -> int:
    """s with X (n, s*s): each row a square one-channel image; or one DataError naming X's width (cnn)."""
    d = X.shape[1] if len(X.shape) == 2 else None
    s = math.isqrt(d) if d is not None else 0
    if d is None or s * s != d:
        got = f"width {d}" if d is not None else f"shape {tuple(X.shape)}"
        raise DataError(f"cnn: X must be 2-D (n, s*s), each row a square image of s*s pixels; got {got}")
    return s


def same_padding(K: Any) -> int:
    """A convolution's zero padding that keeps an image's size: kh // 2 pixels on every side (odd kh)."""
    return int(K.shape[2]) // 2


def batch_rows(X: Any) -> None:
    """Refuse what has no batch statistics: X must be (n, d) with n >= 2, as torch requires in training."""
    if len(X.shape) != 2 or X.shape[0] < 2:
        raise DataError(
            f"batchnorm: X must be 2-D (n, d) with n >= 2 rows (one row's batch statistics normalise it to 0); "
            f"got shape {tuple(X.shape)}"
        )


def _integral(dtype: Any) -> bool:
    """Whether a NumPy or torch dtype holds integers (bool does not)."""
    if isinstance(dtype, np.dtype):
        return dtype.kind in "iu"
    return not (dtype.is_floating_point or dtype.is_complex) and str(dtype) != "torch.bool"


def cross_entropy_inputs(X: Any, Y: Any) -> None:
    """One error naming the input when the logits X (n, k) and the labels Y (n,) do not fit together."""
    if X.ndim != 2 or Y.ndim != 1 or X.shape[0] != Y.shape[0] or min(X.shape) < 1:
        raise DataError(
            f"cross_entropy: X (the logits) must be 2-D (n, k) with n, k >= 1 and Y 1-D (n,); got X "
            f"{tuple(X.shape)}, Y {tuple(Y.shape)}"
        )
    if not _integral(Y.dtype):
        kind = str(Y.dtype).removeprefix("torch.")  # float64 from NumPy and torch alike
        raise DataTypeError(f"cross_entropy: Y must hold integer class indices; got dtype {kind}")
    k = X.shape[1]
    bad = (Y < 0) | (Y >= k)  # (n,)
    if bool(bad.any()):
        i = int(np.flatnonzero(_numpy(bad))[0])
        raise DataError(
            f"cross_entropy: Y must hold class indices in [0, k) with k = {k}, the columns of X; got {int(Y[i])} "
            f"at row {i}"
        )

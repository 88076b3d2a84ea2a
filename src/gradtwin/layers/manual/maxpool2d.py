"""2-D max-pooling, derived by hand: each output is the largest input in its kernel window.

`xp` is the array namespace of X (NumPy, or torch tensors without autograd). The loops run over
the k * k offsets of the window, never over pixels. Ties go as in PyTorch's F.max_pool2d: the
whole gradient to the first tied element of the window in row-major order (lowest row, then lowest
column; the scan keeps a maximum unless a later element is strictly larger). A pool that does not
tile the input drops the trailing rows and columns that no full window reaches (PyTorch's floor
mode, ceil_mode=False): they get no gradient.
"""

from __future__ import annotations

from typing import Any

from array_api_compat import array_namespace, device

from gradtwin.layers.inputs import maxpool2d_sizes

Params = dict[str, Any]


def _shifted(A: Any, i: int, j: int, s: int, Ho: int, Wo: int) -> Any:
    """A[:, :, i + s*y, j + s*x] for y < Ho, x < Wo: the element at offset (i, j) of every window."""
    return A[:, :, i : i + s * (Ho - 1) + 1 : s, j : j + s * (Wo - 1) + 1 : s]


def _argmax(X: Any, k: int, s: int, Ho: int, Wo: int) -> tuple[Any, Any]:
    """(out, which): each window's maximum and the number i*k + j of the offset that holds it, the
    first in row-major order among ties (strictly larger replaces, equal keeps); a NaN replaces
    whatever came before and propagates, as in PyTorch's kernel."""
    xp = array_namespace(X)
    out = _shifted(X, 0, 0, s, Ho, Wo)  # (N, C, Ho, Wo)
    which = xp.zeros(out.shape, dtype=xp.int64, device=device(X))  # (N, C, Ho, Wo)
    for i in range(k):
        for j in range(k):
            candidate = _shifted(X, i, j, s, Ho, Wo)  # (N, C, Ho, Wo)
            larger = (candidate > out) | xp.isnan(candidate)  # (N, C, Ho, Wo)  a tie keeps the earlier element
            out = xp.where(larger, candidate, out)
            which = xp.where(larger, i * k + j, which)
    return out, which


def forward(params: Params, X: Any, kernel: Any, stride: Any = None) -> Any:
    """out[n, c, y, x] = max_{i, j < k} X[n, c, s*y + i, s*x + j]   (stride s defaults to the kernel k).

    Shapes::  X (N, C, H, W)  ->  out (N, C, H_out, W_out),  H_out = (H - k) // s + 1 (floor)
    """
    k, s, Ho, Wo = maxpool2d_sizes(X, kernel, stride)
    return _argmax(X, k, s, Ho, Wo)[0]


def backward(params: Params, X: Any, dout: Any, kernel: Any, stride: Any = None) -> Params:
    """dL/dX: each window's upstream gradient goes to the one element that is its maximum.

    Forward::  out[n, c, y, x] = X[n, c, s*y + i*, s*x + j*],  (i*, j*) the window's first maximum
    Chain::    dout[n, c, y, x]/dX[n, c, s*y + i, s*x + j] = [(i, j) == (i*, j*)]
               dL/dX[n, c, u, v] = sum over the windows (y, x) whose maximum sits at (u, v) of dout[n, c, y, x]
                 (overlapping windows, s < k, add up; tied elements other than the first get 0)
    Shapes::   X (N, C, H, W), dout (N, C, H_out, W_out)  ->  dX (N, C, H, W)
    """
    xp = array_namespace(X, dout)
    k, s, Ho, Wo = maxpool2d_sizes(X, kernel, stride)
    _, which = _argmax(X, k, s, Ho, Wo)  # (N, C, Ho, Wo)
    dX = xp.zeros(X.shape, dtype=X.dtype, device=device(X))  # (N, C, H, W)
    zero = xp.zeros_like(dout)  # (N, C, Ho, Wo)
    for i in range(k):
        for j in range(k):
            routed = xp.where(which == i * k + j, dout, zero)  # (N, C, Ho, Wo)  the windows whose max is at (i, j)
            dX[:, :, i : i + s * (Ho - 1) + 1 : s, j : j + s * (Wo - 1) + 1 : s] += routed  # (N, C, Ho, Wo) view
    return {"X": dX}

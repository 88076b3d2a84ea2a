"""2-D convolution (cross-correlation, as in PyTorch) with stride and zero padding, derived by hand.

`xp` is the array namespace of the data (NumPy, or torch tensors without autograd). The loops run
over the kh * kw kernel offsets, never over pixels: offset (i, j) multiplies W[:, :, i, j] with the
input shifted by (i, j) and sampled every `stride` pixels, one matrix product over all pixels at once.
That is fast enough to train on small images, so there is no im2col variant.
"""

from __future__ import annotations

from typing import Any

from array_api_compat import array_namespace, device

from gradtwin.layers.inputs import conv2d_sizes

Params = dict[str, Any]


def _pad(A: Any, top: int, bottom: int, left: int, right: int) -> Any:
    """A (N, C, H, W) with zero rows above and below and zero columns left and right."""
    xp = array_namespace(A)
    N, C, H, W = A.shape
    out = xp.zeros((N, C, top + H + bottom, left + W + right), dtype=A.dtype, device=device(A))
    out[:, :, top : top + H, left : left + W] = A
    return out


def _shifted(A: Any, i: int, j: int, s: int, Ho: int, Wo: int) -> Any:
    """A[:, :, i + s*y, j + s*x] for y < Ho, x < Wo: what kernel offset (i, j) sees at every output pixel."""
    return A[:, :, i : i + s * (Ho - 1) + 1 : s, j : j + s * (Wo - 1) + 1 : s]


def _times(A: Any, K: Any) -> Any:
    """sum_c A[n, c, y, x] K[o, c] -> (N, O, Ho, Wo): one kernel offset's product over all pixels."""
    xp = array_namespace(A)
    return xp.permute_dims(xp.tensordot(A, K, axes=([1], [1])), (0, 3, 1, 2))


def forward(params: Params, X: Any, stride: Any = 1, padding: Any = 0) -> Any:
    """out[n, o, y, x] = b[o] + sum_{c, i, j} Xp[n, c, s*y + i, s*x + j] W[o, c, i, j],  Xp = X zero-padded by p.

    Shapes::  X (N, C_in, H, W), W (C_out, C_in, kh, kw), b (C_out,)  ->  out (N, C_out, H_out, W_out),
              H_out = (H + 2p - kh) // s + 1   (rows the last window does not reach are dropped, as in PyTorch)
    """
    W, b = params["W"], params["b"]
    s, p, Ho, Wo = conv2d_sizes(W, X, stride, padding)
    Xp = _pad(X, p, p, p, p)  # (N, C_in, H + 2p, W + 2p)
    out = b[None, :, None, None]  # (1, C_out, 1, 1)
    for i in range(W.shape[2]):
        for j in range(W.shape[3]):
            out = out + _times(_shifted(Xp, i, j, s, Ho, Wo), W[:, :, i, j])  # (N, C_out, Ho, Wo)
    return out


def backward(params: Params, X: Any, dout: Any, stride: Any = 1, padding: Any = 0) -> Params:
    """dL/dX, dL/dW and dL/db of the convolution, for the upstream gradient dout = dL/dout.

    Forward::  out[n, o, y, x] = b[o] + sum_{c, i, j} Xp[n, c, s*y + i, s*x + j] W[o, c, i, j]
    Chain::    dL/db[o] = sum_{n, y, x} dout[n, o, y, x]
               dL/dW[o, c, i, j] = sum_{n, y, x} dout[n, o, y, x] Xp[n, c, s*y + i, s*x + j]
               D = dout dilated by s (s - 1 zeros between neighbours), zero-padded by kh - 1, kw - 1
               dL/dXp[n, c, u, v] = sum_{o, i, j} D[n, o, u + i, v + j] W[o, c, kh-1-i, kw-1-j]
                 (the full correlation of D with the kernel flipped in both spatial axes)
               dL/dX = dL/dXp without its p-pixel border
    Shapes::   X (N, C_in, H, W), W (C_out, C_in, kh, kw), dout (N, C_out, H_out, W_out)
               ->  dX (N, C_in, H, W), dW (C_out, C_in, kh, kw), db (C_out,)
    """
    xp = array_namespace(X, dout)
    W = params["W"]
    s, p, Ho, Wo = conv2d_sizes(W, X, stride, padding)
    N, _, H, Wd = X.shape
    C_out, _, kh, kw = W.shape
    Xp = _pad(X, p, p, p, p)  # (N, C_in, H + 2p, W + 2p)
    db = xp.sum(dout, axis=(0, 2, 3))  # (C_out,)
    dW = xp.zeros(W.shape, dtype=W.dtype, device=device(W))  # (C_out, C_in, kh, kw)
    for i in range(kh):
        for j in range(kw):
            seen = _shifted(Xp, i, j, s, Ho, Wo)  # (N, C_in, Ho, Wo)  what W[:, :, i, j] multiplied
            dW[:, :, i, j] = xp.tensordot(dout, seen, axes=([0, 2, 3], [0, 2, 3]))  # (C_out, C_in)
    # the input gradient: a full correlation of the dilated dout with the flipped kernel
    dilated = xp.zeros((N, C_out, s * (Ho - 1) + 1, s * (Wo - 1) + 1), dtype=dout.dtype, device=device(dout))
    dilated[:, :, ::s, ::s] = dout  # (N, C_out, s*(Ho-1)+1, s*(Wo-1)+1)
    Hr, Wr = Xp.shape[2] - (s * (Ho - 1) + kh), Xp.shape[3] - (s * (Wo - 1) + kw)  # rows/columns no window reaches
    D = _pad(dilated, kh - 1, kh - 1 + Hr, kw - 1, kw - 1 + Wr)  # (N, C_out, Hp + kh - 1, Wp + kw - 1)
    W_flipped = xp.flip(W, axis=(2, 3))  # (C_out, C_in, kh, kw)  W_flipped[o, c, i, j] = W[o, c, kh-1-i, kw-1-j]
    W_io = xp.permute_dims(W_flipped, (1, 0, 2, 3))  # (C_in, C_out, kh, kw)  from outputs back to inputs
    dXp = xp.zeros(Xp.shape, dtype=X.dtype, device=device(X))  # (N, C_in, H + 2p, W + 2p)
    for i in range(kh):
        for j in range(kw):
            dXp = dXp + _times(_shifted(D, i, j, 1, Xp.shape[2], Xp.shape[3]), W_io[:, :, i, j])  # (N, C_in, Hp, Wp)
    dX = dXp[:, :, p : p + H, p : p + Wd]  # (N, C_in, H, W)  the padding's border gets no gradient
    return {"X": dX, "W": dW, "b": db}

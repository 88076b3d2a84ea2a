"""Single-head causal self-attention by PyTorch: F.scaled_dot_product_attention, backward by autograd.

Params: Wq, Wk (d, d_k), Wv (d, d_v) and, optionally, an output projection Wo (d_v, d_out).
X is one sequence (T, d) or a batch of them (B, T, d); position i attends to positions j <= i.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from gradtwin.errors import DataError, UsageError

Params = dict[str, torch.Tensor]
NAMES = ("Wq", "Wk", "Wv")  # and, optionally, "Wo"


def forward(params: Params, X: torch.Tensor) -> torch.Tensor:
    """out = softmax(mask(Q K^T / sqrt(d_k))) V [Wo], with Q = X Wq, K = X Wk, V = X Wv.

    Shapes::  X (B, T, d) or (T, d)  ->  out (B, T, d_out) or (T, d_out); d_out = d_v without Wo
    """
    _check(params, X)
    Q = X @ params["Wq"]  # (B, T, d_k)
    K = X @ params["Wk"]  # (B, T, d_k)
    V = X @ params["Wv"]  # (B, T, d_v)
    A = F.scaled_dot_product_attention(Q, K, V, is_causal=True)  # (B, T, d_v), scale 1/sqrt(d_k)
    return A @ params["Wo"] if "Wo" in params else A  # (B, T, d_out)


def backward(params: Params, X: torch.Tensor, dout: torch.Tensor) -> Params:
    """dL/dX and dL/d(each weight) for dout = dL/d(out): autograd's vector-Jacobian product of forward."""
    leaves = {k: torch.as_tensor(v).detach().requires_grad_(True) for k, v in {**params, "X": X}.items()}
    out = forward({k: leaves[k] for k in params}, leaves["X"])
    grads = torch.autograd.grad(out, list(leaves.values()), torch.as_tensor(dout))
    return dict(zip(leaves, grads, strict=True))


def _check(params: Params, X: torch.Tensor) -> None:
    """One error naming the inputs when their shapes do not fit together (the manual twin's words)."""
    names = sorted(params, key=lambda k: ((*NAMES, "Wo", k).index(k), k))  # Wq, Wk, Wv, Wo, then the rest
    if not set(NAMES) <= set(params) <= {*NAMES, "Wo"}:
        raise UsageError(f"attention: params must be Wq, Wk, Wv and, optionally, Wo; got {', '.join(names)}")
    if X.ndim not in (2, 3) or X.shape[-2] < 1:
        raise DataError(f"attention: X must be 2-D (T, d) or 3-D (B, T, d) with T >= 1; got shape {tuple(X.shape)}")
    d = X.shape[-1]
    Wq, Wk, Wv = (params[k] for k in NAMES)
    fits = all(W.ndim == 2 and W.shape[0] == d for W in (Wq, Wk, Wv)) and tuple(Wk.shape) == tuple(Wq.shape)
    if "Wo" in params:
        fits = fits and params["Wo"].ndim == 2 and Wv.ndim == 2 and params["Wo"].shape[0] == Wv.shape[1]
    if not fits:
        wo = ", Wo (d_v, d_out)" if "Wo" in params else ""
        got = ", ".join(f"{k} {tuple(params[k].shape)}" for k in names)
        raise DataError(
            f"attention: Wq and Wk must be (d, d_k), Wv (d, d_v){wo} with d = {d}, the last axis of X; got {got}"
        )

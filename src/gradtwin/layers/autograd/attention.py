"""Single-head causal self-attention by PyTorch: F.scaled_dot_product_attention, backward by autograd.

Params: Wq, Wk (d, d_k), Wv (d, d_v) and, optionally, an output projection Wo (d_v, d_out).
X is one sequence (T, d) or a batch of them (B, T, d); position i attends to positions j <= i.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from gradtwin.layers.inputs import ATTENTION_NAMES, attention_shapes

Params = dict[str, torch.Tensor]
NAMES = ATTENTION_NAMES  # Wq, Wk, Wv and, optionally, "Wo"


def forward(params: Params, X: torch.Tensor) -> torch.Tensor:
    """out = softmax(mask(Q K^T / sqrt(d_k))) V [Wo], with Q = X Wq, K = X Wk, V = X Wv.

    Shapes::  X (B, T, d) or (T, d)  ->  out (B, T, d_out) or (T, d_out); d_out = d_v without Wo
    """
    attention_shapes(params, X)
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

"""One pre-LN transformer block as a next-character model, with gradients from PyTorch autograd.

The same block as the manual twin (see there): E = Etok[X] + Epos, H1 = E + attention(LN1(E)),
H2 = H1 + MLP(LN2(H1)), Z = LNf(H2) Wout + bout at every position, each position trained on the
character after it. F.embedding, F.layer_norm and F.scaled_dot_product_attention (by the attention
layer's autograd twin) are the reference; the final layer norm is there when params hold gammaf.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from gradtwin.autograd.backward import loss_and_gradients
from gradtwin.errors import DataError
from gradtwin.layers.autograd import attention
from gradtwin.layers.inputs import window_indices
from gradtwin.steps.tap import tap

Params = dict[str, torch.Tensor]
ATTENTION = ("Wq", "Wk", "Wv", "Wo")
EPS = 1e-5  # layer norm's, as torch's default and the manual layer twin's


def forward(params: Params, X: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every intermediate of the block, by name, in forward order (each tapped for the step-by-step view).

    Shapes::  X (n, T), Etok (V, d), Epos (T, d), Wq Wk Wv Wo (d, d), W1 (d, 4d), W2 (4d, d), Wout (d, V)
              ->  E N1 A H1 N2 (n, T, d), U R (n, T, 4d), M H2 Hf (n, T, d), Z (n, T, V)
    """
    idx = indices(params, X)  # (n, T) int64
    E = tap("E", F.embedding(idx, params["Etok"]) + params["Epos"])  # (n, T, d)
    N1 = tap("N1", _layer_norm(params, "1", E))  # (n, T, d)
    A = tap("A", attention.forward({k: params[k] for k in ATTENTION}, N1))  # (n, T, d)
    H1 = tap("H1", E + A)  # (n, T, d)
    N2 = tap("N2", _layer_norm(params, "2", H1))  # (n, T, d)
    U = tap("U", N2 @ params["W1"] + params["b1"])  # (n, T, 4d)
    R = tap("R", torch.relu(U))  # (n, T, 4d)
    M = tap("M", R @ params["W2"] + params["b2"])  # (n, T, d)
    H2 = tap("H2", H1 + M)  # (n, T, d)
    Hf = tap("Hf", _layer_norm(params, "f", H2)) if "gammaf" in params else H2  # (n, T, d)
    Z = tap("Z", Hf @ params["Wout"] + params["bout"])  # (n, T, V)
    return {"idx": idx, "E": E, "N1": N1, "A": A, "H1": H1, "N2": N2, "U": U, "R": R, "M": M, "H2": H2, "Hf": Hf,
            "Z": Z}  # fmt: skip


def predict(params: Params, X: torch.Tensor) -> torch.Tensor:
    """The character after each window: the largest logit at the last position.   Shapes::  X (n, T) -> (n,) int64"""
    return torch.argmax(forward(params, X)["Z"][:, -1, :], dim=1)


def loss(params: Params, X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the n * T positions.   Loss::  L = 1/(nT) sum_it (lse_it - Z_{it,y_it})   ->  ()"""
    fw = forward(params, X)
    Z = fw["Z"]  # (n, T, V)
    y = targets(fw["idx"], Y, Z.shape[-1])  # (n, T)
    return F.cross_entropy(Z.reshape(-1, Z.shape[-1]), y.reshape(-1))  # () log_softmax + nll: stable


def gradients(params: Params, X: torch.Tensor, Y: torch.Tensor) -> Params:
    """dL/d(each parameter) by `loss(...).backward()`."""
    return loss_and_gradients(loss, params, X, Y)[1]


def indices(params: Params, X: torch.Tensor) -> torch.Tensor:
    """X as int64 character indices, or one error: X must be (n, T) whole numbers in [0, V) (`layers.inputs`).

    Shapes::  X (n, T) float, Epos (T, d), Etok (V, d)  ->  (n, T) int64
    """
    T, V = params["Epos"].shape[0], params["Etok"].shape[0]
    return window_indices(X, V, T, "transformer", f"T = {T} (the rows of Epos): a window of character indices a row")


def targets(idx: torch.Tensor, Y: torch.Tensor, V: int) -> torch.Tensor:
    """The character each position predicts: the next one in the window, Y after the last; or one error.

    Shapes::  idx (n, T) int64, Y (n,) int  ->  (n, T) int64,  y_it = idx_{i,t+1} (t < T - 1), Y_i (t = T - 1)
    """
    if Y.ndim != 1 or Y.shape[0] != idx.shape[0]:
        raise DataError(
            f"transformer: Y must be 1-D (n,) with n = {idx.shape[0]}, the rows of X; got shape {tuple(Y.shape)}"
        )
    bad = (Y != torch.floor(Y)) | (Y < 0) | (Y >= V) if Y.is_floating_point() else (Y < 0) | (Y >= V)
    if bool(bad.any()):
        i = int(torch.nonzero(bad)[0, 0])
        raise DataError(
            f"transformer: Y must hold character indices in [0, V) with V = {V}; got {Y[i].item()!r} at row {i}"
        )
    return torch.cat([idx[:, 1:], Y.to(torch.int64)[:, None]], dim=1)  # (n, T)


def _layer_norm(params: Params, which: str, X: torch.Tensor) -> torch.Tensor:
    """F.layer_norm over the last axis with layer norm `which`'s gamma and beta ('1', '2' or 'f')."""
    return F.layer_norm(X, X.shape[-1:], weight=params["gamma" + which], bias=params["beta" + which], eps=EPS)

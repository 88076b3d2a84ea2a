"""Rounding scales of any PyTorch loss: how large the quantities are that each gradient element is built from.

A worst-case rounding bound needs sum|terms|, which a model's hand-written `gradient_scale`
gives for the built-in models. For a user's loss we do not know the terms, so we bound them
with two quantities autograd can compute for any loss, both in float64:

  S_j = sum_k |d g_j / d x_k| * |x_k|          (1) sensitivity to every input x_k
      + max( c * sum_i |d L_i / d theta_j| ,   (2) the terms of the sum over samples
             |g_j| )

(1) runs over every element of the parameters and of the data. A computation that is
backward stable returns the exact gradient of inputs perturbed by a few unit roundoffs
relative to each input, so its error is at most gamma(K) times (1); this is the part that
sees cancellation inside a term (a residual X@w - Y near the optimum is tiny, its rounding
error is not) and the rounding of the inputs into a narrower dtype.
(2) is the sum over samples of |per-sample gradient|: with L = c * sum_i L_i (c = 1/n for a
mean, 1 for a sum) this is exactly sum|terms| of the outer sum, the quantity Higham's bound
for a sum multiplies. It sees terms that are large but insensitive to their inputs.
When the loss does not split over the rows of the data, (2) falls back to |g_j|.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from gradtwin.parity.rounding import tolerance

TorchLoss = Callable[..., torch.Tensor]
_CHUNK_ELEMENTS = 1 << 22  # rows of the Jacobian computed at once, times the inputs' size


def autograd_scales(
    torch_loss: TorchLoss, params: dict[str, np.ndarray], data: Sequence[np.ndarray], n_terms: int
) -> tuple[dict[str, np.ndarray], float]:
    """(S_j for every parameter, keyed like `params`; the same scale for the loss value)."""
    p = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in params.items()}
    d = [
        torch.tensor(x) if x.dtype.kind == "i" else torch.tensor(x, dtype=torch.float64, requires_grad=True)
        for x in data
    ]
    leaves = [*p.values(), *(x for x in d if x.requires_grad)]
    loss = torch_loss(p, *d)
    loss_sens = _weighted(torch.autograd.grad(loss, leaves, retain_graph=True, allow_unused=True), leaves)
    grads = torch.autograd.grad(loss, list(p.values()), create_graph=True, allow_unused=True)
    flat = torch.cat([_or_zeros(g, v).reshape(-1) for g, v in zip(grads, p.values(), strict=True)])
    sens = _jacobian_weighted(flat, leaves)
    terms, loss_terms = _per_sample_terms(torch_loss, params, data, float(loss.detach()), n_terms)
    g = flat.detach().abs().numpy()
    total = sens + (np.maximum(terms, g) if terms is not None else g)
    loss_total = float(loss_sens.sum()) + max(loss_terms if loss_terms is not None else 0.0, abs(float(loss.detach())))
    out: dict[str, np.ndarray] = {}
    start = 0
    for name, v in params.items():
        out[name] = total[start : start + v.size].reshape(v.shape)
        start += v.size
    return out, loss_total


def _or_zeros(g: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    return torch.zeros_like(like) if g is None else g


def _weighted(rows: Sequence[torch.Tensor | None], leaves: Sequence[torch.Tensor]) -> np.ndarray:
    """sum_k |row_k| * |x_k| over every leaf (None: the leaf does not reach the output)."""
    total = torch.zeros((), dtype=torch.float64)
    for r, x in zip(rows, leaves, strict=True):
        if r is not None:
            total = total + (r.detach().abs() * x.detach().abs()).sum()
    return total.numpy()


def _jacobian_weighted(flat: torch.Tensor, leaves: Sequence[torch.Tensor]) -> np.ndarray:
    """For each element j of `flat`: sum_k |d flat_j / d x_k| * |x_k|, one Jacobian chunk at a time."""
    out = np.zeros(flat.numel())
    if not flat.requires_grad:  # the gradient depends on nothing: the loss is linear in every input
        return out
    size = sum(x.numel() for x in leaves)
    chunk = max(1, min(flat.numel(), _CHUNK_ELEMENTS // max(size, 1)))
    for start in range(0, flat.numel(), chunk):
        stop = min(start + chunk, flat.numel())
        rows = _jacobian_rows(flat, leaves, start, stop)
        for r, x in zip(rows, leaves, strict=True):
            if r is not None:
                out[start:stop] += (r.detach().abs() * x.detach().abs()).reshape(stop - start, -1).sum(1).numpy()
    return out


def _jacobian_rows(
    flat: torch.Tensor, leaves: Sequence[torch.Tensor], start: int, stop: int
) -> Sequence[torch.Tensor | None]:
    """Rows start..stop of d flat / d leaves, batched when autograd can, one by one otherwise."""
    eye = torch.zeros(stop - start, flat.numel(), dtype=flat.dtype)
    eye[torch.arange(stop - start), torch.arange(start, stop)] = 1.0
    try:
        return torch.autograd.grad(
            flat, leaves, grad_outputs=eye, retain_graph=True, allow_unused=True, is_grads_batched=True
        )
    except RuntimeError:  # an operation without a batching rule: fall back to one row at a time
        per_row = [
            torch.autograd.grad(flat[j], leaves, retain_graph=True, allow_unused=True) for j in range(start, stop)
        ]
        return [
            None if all(r[k] is None for r in per_row) else torch.stack([_or_zeros(r[k], x) for r in per_row])
            for k, x in enumerate(leaves)
        ]


def samples_of(data: Sequence[np.ndarray]) -> int | None:
    """n, the length of the leading axis every data array shares, or None if they share none."""
    lengths = {x.shape[0] if x.ndim else None for x in data}
    if len(lengths) != 1 or None in lengths:
        return None
    return int(next(iter(lengths)))  # type: ignore[arg-type]


def _per_sample_terms(
    torch_loss: TorchLoss, params: dict[str, np.ndarray], data: Sequence[np.ndarray], loss: float, n_terms: int
) -> tuple[np.ndarray | None, float | None]:
    """(c * sum_i |grad L_i|, flattened like the parameters; c * sum_i |L_i|), or (None, None).

    L_i is `torch_loss` on row i alone. c is 1/n when the full loss is the mean of the
    L_i within float64 rounding, else 1 (a sum, or a sum plus a penalty: 1 is the safe side).
    """
    n = samples_of(data)
    if n is None or n < 2:
        return None, None
    p = {k: torch.tensor(v, dtype=torch.float64) for k, v in params.items()}
    d = [torch.tensor(x) for x in data]
    try:
        losses, grads = _per_sample(torch_loss, p, d)
    except Exception:  # the loss does not run on one row: no split over samples
        return None, None
    if losses.shape != (n,) or not np.all(np.isfinite(losses)):
        return None, None
    mean_err = abs(loss - float(np.mean(losses)))
    bound = 4 * float(tolerance(np.float64, n_terms, np.sum(np.abs(losses)) / n + abs(loss)))
    c = 1.0 / n if mean_err <= bound else 1.0
    return c * np.sum(np.abs(grads), axis=0), c * float(np.sum(np.abs(losses)))


def _per_sample(torch_loss: TorchLoss, p: dict[str, torch.Tensor], d: list[torch.Tensor]) -> tuple[np.ndarray, Any]:
    """Each row's loss and flattened gradient: vmap where the loss allows it, else a loop."""
    from torch.func import grad_and_value, vmap

    def one(pp: dict[str, torch.Tensor], *rows: torch.Tensor) -> torch.Tensor:
        return torch_loss(pp, *(r.unsqueeze(0) for r in rows))

    try:
        g, v = vmap(grad_and_value(one), in_dims=(None, *([0] * len(d))))(p, *d)
        flat = torch.cat([g[k].reshape(v.shape[0], -1) for k in p], dim=1)
        return v.detach().numpy(), flat.detach().numpy()
    except Exception:  # not vmap-able (.item(), data-dependent control flow): one row at a time
        values, rows = [], []
        for i in range(d[0].shape[0]):
            leaves = {k: x.detach().requires_grad_(True) for k, x in p.items()}
            value = torch_loss(leaves, *(x[i : i + 1] for x in d))
            gs = torch.autograd.grad(value, list(leaves.values()), allow_unused=True)
            rows.append(torch.cat([_or_zeros(gi, x).reshape(-1) for gi, x in zip(gs, leaves.values(), strict=True)]))
            values.append(float(value.detach()))
        return np.asarray(values), torch.stack(rows).numpy()

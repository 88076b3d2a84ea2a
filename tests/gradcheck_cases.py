"""User-style models for measuring the gradient checker: correct hand gradients and planted bugs.

Each model is what a user would hand to `check_gradients`: a NumPy gradient function and a
PyTorch loss over named parameters. `problem(model, seed, ...)` draws data and parameters,
optionally at the optimum (where the gradients are tiny and rounding dominates). Shared by
tests/test_gradcheck_measure.py and comparisons/gradcheck_measure.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

Params = dict[str, Any]


def _sigmoid(z: Any) -> Any:
    """1 / (1 + exp(-z)), accurate relative to its value for every z (1 + tanh(z/2) is not, at z << 0)."""
    e = np.exp(-np.abs(z))  # (n,): never overflows
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


# Linear regression, mean squared error. X (n, d), Y (n,), w (d,), b ().
def linreg_grad(p: Params, X: Any, Y: Any) -> Params:
    n = X.shape[0]
    r = X @ p["w"] + p["b"] - Y  # (n,)
    return {"w": (2.0 / n) * (X.T @ r), "b": (2.0 / n) * np.sum(r)}


def linreg_loss(p: Params, X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    return torch.mean((X @ p["w"] + p["b"] - Y) ** 2)


# Logistic regression, mean binary cross-entropy plus lam/2 |w|^2. Y in {0, 1}.
LAM = 1e-2


def logreg_grad(p: Params, X: Any, Y: Any) -> Params:
    n = X.shape[0]
    d = (_sigmoid(X @ p["w"] + p["b"]) - Y) / n  # (n,)
    return {"w": X.T @ d + LAM * p["w"], "b": np.sum(d)}


def logreg_loss(p: Params, X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    z = X @ p["w"] + p["b"]
    return F.binary_cross_entropy_with_logits(z, Y) + 0.5 * LAM * torch.sum(p["w"] ** 2)


# Softmax regression, mean cross-entropy. W (d, k), b (k,), Y one-hot (n, k).
def softmax_grad(p: Params, X: Any, Y: Any) -> Params:
    n = X.shape[0]
    z = X @ p["W"] + p["b"]  # (n, k)
    e = np.exp(z - z.max(axis=1, keepdims=True))  # (n, k)
    d = (e / e.sum(axis=1, keepdims=True) - Y) / n  # (n, k)
    return {"W": X.T @ d, "b": d.sum(axis=0)}


def softmax_loss(p: Params, X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    z = X @ p["W"] + p["b"]
    return -torch.mean(torch.sum(Y * torch.log_softmax(z, dim=1), dim=1))


# One-hidden-layer ReLU network, mean squared error. W1 (d, h), b1 (h,), w2 (h,), b2 ().
def mlp_grad(p: Params, X: Any, Y: Any, strict: bool = True) -> Params:
    n = X.shape[0]
    z = X @ p["W1"] + p["b1"]  # (n, h)
    a = np.maximum(z, 0)  # (n, h)
    r = a @ p["w2"] + p["b2"] - Y  # (n,)
    dpred = (2.0 / n) * r  # (n,)
    da = np.outer(dpred, p["w2"])  # (n, h)
    dz = da * ((z > 0) if strict else (z >= 0))  # (n, h): relu'(0) = 0, as torch takes it
    return {"W1": X.T @ dz, "b1": dz.sum(axis=0), "w2": a.T @ dpred, "b2": np.sum(dpred)}


def mlp_loss(p: Params, X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    a = torch.relu(X @ p["W1"] + p["b1"])
    return torch.mean((a @ p["w2"] + p["b2"] - Y) ** 2)


@dataclass(frozen=True)
class UserModel:
    name: str
    grad: Callable[..., Params]
    loss: Callable[..., torch.Tensor]


MODELS = {
    "linreg": UserModel("linreg", linreg_grad, linreg_loss),
    "logreg": UserModel("logreg", logreg_grad, logreg_loss),
    "softmax": UserModel("softmax", softmax_grad, softmax_loss),
    "mlp": UserModel("mlp", mlp_grad, mlp_loss),
}


def problem(
    model: str, seed: int, n: int, d: int, x_exp: float, p_exp: float, at_optimum: bool, noiseless: bool
) -> tuple[Params, tuple[np.ndarray, np.ndarray]]:
    """Data and parameters: X at scale 10**x_exp, parameters at 10**p_exp or at the optimum.

    At the optimum the gradient is zero up to rounding: linreg solves least squares (noise-
    free data make every residual vanish too); logreg and softmax take Newton steps.
    """
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)) * 10.0**x_exp + rng.standard_normal(d) * 10.0**x_exp
    scale = 10.0**p_exp
    if model == "linreg":
        w_true = rng.standard_normal(d) * scale
        Y = X @ w_true + (0.0 if noiseless else rng.standard_normal(n) * scale)
        p = {"w": rng.standard_normal(d) * scale, "b": np.asarray(rng.standard_normal() * scale)}
        if at_optimum:
            A = np.column_stack([X, np.ones(n)])
            sol = np.linalg.lstsq(A, Y, rcond=None)[0]
            p = {"w": sol[:d], "b": np.asarray(sol[d])}
        return p, (X, Y)
    if model == "logreg":
        Y = (rng.random(n) < _sigmoid(X @ rng.standard_normal(d) / 10.0**x_exp)).astype(np.float64)
        p = {"w": rng.standard_normal(d) * scale, "b": np.asarray(rng.standard_normal() * scale)}
        return (_newton(logreg_grad, p, (X, Y)) if at_optimum else p), (X, Y)
    if model == "softmax":
        k = max(2, d)
        Y = np.eye(k)[rng.integers(0, k, n)]
        p = {"W": rng.standard_normal((d, k)) * scale, "b": rng.standard_normal(k) * scale}
        return (_newton(softmax_grad, p, (X, Y), steps=30) if at_optimum else p), (X, Y)
    h = 3
    Y = rng.standard_normal(n) * 10.0**x_exp
    p = {
        "W1": rng.standard_normal((d, h)) * scale,
        "b1": rng.standard_normal(h) * scale,
        "w2": rng.standard_normal(h) * scale,
        "b2": np.asarray(rng.standard_normal() * scale),
    }
    return p, (X, Y)


def _newton(grad: Callable[..., Params], p: Params, data: tuple[np.ndarray, ...], steps: int = 20) -> Params:
    """Approach the optimum by gradient steps with a finite-difference Hessian (small problems only)."""
    names = list(p)
    shapes = [np.shape(p[k]) for k in names]
    sizes = [int(np.prod(s)) for s in shapes]

    def flat_grad(v: np.ndarray) -> np.ndarray:
        q = _unflat(v, names, shapes, sizes)
        g = grad(q, *data)
        return np.concatenate([np.ravel(g[k]) for k in names])

    v = np.concatenate([np.ravel(p[k]) for k in names])
    for _ in range(steps):
        g = flat_grad(v)
        eps = 1e-6
        H = np.stack([(flat_grad(v + eps * e) - g) / eps for e in np.eye(v.size)], axis=1)
        H = 0.5 * (H + H.T) + 1e-8 * np.eye(v.size)
        try:
            step = np.linalg.solve(H, g)
        except np.linalg.LinAlgError:
            break
        v = v - np.clip(step, -10, 10)
    return _unflat(v, names, shapes, sizes)


def _unflat(v: np.ndarray, names: list[str], shapes: list[tuple[int, ...]], sizes: list[int]) -> Params:
    out, start = {}, 0
    for k, s, m in zip(names, shapes, sizes, strict=True):
        out[k] = v[start : start + m].reshape(s)
        start += m
    return out


# Planted bugs: each takes a correct gradient function and returns a wrong one.
def scaled(grad: Callable[..., Params], c: float | str) -> Callable[..., Params]:
    """Every gradient times c; c = 'n' or '1/n' uses the number of samples."""

    def bugged(p: Params, X: Any, Y: Any) -> Params:
        n = X.shape[0]
        f = {"n": n, "1/n": 1.0 / n}.get(c, c) if isinstance(c, str) else c  # type: ignore[call-overload]
        return {k: f * v for k, v in grad(p, X, Y).items()}

    return bugged


def one_wrong(grad: Callable[..., Params], name: str) -> Callable[..., Params]:
    """Only `name` wrong: its gradient halved (a lost factor 2 in one path)."""

    def bugged(p: Params, X: Any, Y: Any) -> Params:
        g = dict(grad(p, X, Y))
        g[name] = 0.5 * g[name]
        return g

    return bugged


def transposed(grad: Callable[..., Params], name: str) -> Callable[..., Params]:
    """`name`'s gradient returned transposed."""

    def bugged(p: Params, X: Any, Y: Any) -> Params:
        g = dict(grad(p, X, Y))
        g[name] = g[name].T
        return g

    return bugged


def mlp_kink_bug(p: Params, X: Any, Y: Any) -> Params:
    """relu'(0) taken as 1: differs from torch only where a pre-activation is exactly 0."""
    return mlp_grad(p, X, Y, strict=False)

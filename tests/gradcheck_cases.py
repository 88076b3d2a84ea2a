"""User-style models for measuring the gradient checker: correct hand gradients and planted bugs.

Each model is what a user would hand to `check_gradients`: a NumPy gradient function (and its
torch twin, for bfloat16, which NumPy lacks) and a PyTorch loss over named parameters.
`problem(model, seed, ...)` draws data and parameters, optionally at the optimum (where the
gradients are tiny and rounding dominates). `large_problem` builds the 10^4 to 10^6 parameter
cases (a tanh network with cross-entropy, softmax regression), and the planted bugs below them
change one element, one row, one block, one parameter or every sign. Shared by
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


# The same four derivations in torch, line for line: the hand gradients a bfloat16 check needs.
def linreg_grad_torch(p: Params, X: torch.Tensor, Y: torch.Tensor) -> Params:
    n = X.shape[0]
    r = X @ p["w"] + p["b"] - Y  # (n,)
    return {"w": (2.0 / n) * (X.T @ r), "b": (2.0 / n) * torch.sum(r)}


def logreg_grad_torch(p: Params, X: torch.Tensor, Y: torch.Tensor) -> Params:
    n = X.shape[0]
    d = (torch.sigmoid(X @ p["w"] + p["b"]) - Y) / n  # (n,)
    return {"w": X.T @ d + LAM * p["w"], "b": torch.sum(d)}


def softmax_grad_torch(p: Params, X: torch.Tensor, Y: torch.Tensor) -> Params:
    n = X.shape[0]
    z = X @ p["W"] + p["b"]  # (n, k)
    d = (torch.softmax(z, dim=1) - Y) / n  # (n, k)
    return {"W": X.T @ d, "b": d.sum(dim=0)}


def mlp_grad_torch(p: Params, X: torch.Tensor, Y: torch.Tensor) -> Params:
    n = X.shape[0]
    z = X @ p["W1"] + p["b1"]  # (n, h)
    a = torch.relu(z)  # (n, h)
    r = a @ p["w2"] + p["b2"] - Y  # (n,)
    dpred = (2.0 / n) * r  # (n,)
    dz = torch.outer(dpred, p["w2"]) * (z > 0)  # (n, h): relu'(0) = 0, as torch takes it
    return {"W1": X.T @ dz, "b1": dz.sum(dim=0), "w2": a.T @ dpred, "b2": torch.sum(dpred)}


@dataclass(frozen=True)
class UserModel:
    name: str
    grad: Callable[..., Params]
    loss: Callable[..., torch.Tensor]
    torch_grad: Callable[..., Params] | None = None

    def hand(self, dtype: str) -> tuple[Callable[..., Params], str]:
        """(hand gradient, manual_array) for a check in `dtype`: torch for bfloat16, NumPy otherwise."""
        if dtype == "bfloat16":
            assert self.torch_grad is not None, f"{self.name} has no torch hand gradient"
            return self.torch_grad, "torch"
        return self.grad, "numpy"


MODELS = {
    "linreg": UserModel("linreg", linreg_grad, linreg_loss, linreg_grad_torch),
    "logreg": UserModel("logreg", logreg_grad, logreg_loss, logreg_grad_torch),
    "softmax": UserModel("softmax", softmax_grad, softmax_loss, softmax_grad_torch),
    "mlp": UserModel("mlp", mlp_grad, mlp_loss, mlp_grad_torch),
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


# ---- large problems: 10^4 to 10^6 parameter elements ------------------------------------------


def tanh_mlp_grad(p: Params, X: Any, y: Any) -> Params:
    """Mean cross-entropy of a tanh network, by hand.

    Forward::  H = tanh(X W1 + b1) ;  Z = H W2 + b2 ;  P = softmax(Z) (by row)
               L = -1/n * sum_i log P[i, y_i]
    Chain::    dZ = (P - onehot(y)) / n ;  dW2 = H.T dZ ;  db2 = sum_i dZ[i]
               dZ1 = (dZ W2.T) * (1 - H^2) ;  dW1 = X.T dZ1 ;  db1 = sum_i dZ1[i]
    Shapes::   X (n, d), y (n,) ints in [0, c), W1 (d, h), b1 (h,), W2 (h, c), b2 (c,)
    """
    n = X.shape[0]
    H = np.tanh(X @ p["W1"] + p["b1"])  # (n, h)
    Z = H @ p["W2"] + p["b2"]  # (n, c)
    E = np.exp(Z - Z.max(axis=1, keepdims=True))  # (n, c)
    dZ = E / E.sum(axis=1, keepdims=True)  # (n, c)
    dZ[np.arange(n), y] -= 1
    dZ /= n
    dZ1 = (dZ @ p["W2"].T) * (1 - H * H)  # (n, h)
    return {"W1": X.T @ dZ1, "b1": dZ1.sum(axis=0), "W2": H.T @ dZ, "b2": dZ.sum(axis=0)}


def tanh_mlp_loss(p: Params, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(torch.tanh(X @ p["W1"] + p["b1"]) @ p["W2"] + p["b2"], y)


LARGE_MODELS = {
    "tanh_mlp": UserModel("tanh_mlp", tanh_mlp_grad, tanh_mlp_loss),
    "softmax": UserModel("softmax", softmax_grad, softmax_loss),
}
# (model, size) -> (n rows, d inputs, h hidden, c classes); softmax regression has no hidden layer.
LARGE_SHAPES: dict[tuple[str, str], tuple[int, int, int, int]] = {
    ("tanh_mlp", "1e4"): (128, 100, 90, 10),  # 10,000 parameters
    ("tanh_mlp", "1e5"): (256, 256, 375, 10),  # 100,135
    ("tanh_mlp", "1e6"): (256, 784, 1024, 10),  # 814,090: the 784-1024-10 on a batch of 256
    ("softmax", "1e4"): (256, 1000, 0, 10),  # 10,010
    ("softmax", "1e5"): (256, 1000, 0, 100),  # 100,100
    ("softmax", "1e6"): (256, 1000, 0, 1000),  # 1,001,000
}


def large_problem(model: str, size: str, seed: int) -> tuple[Params, tuple[np.ndarray, np.ndarray]]:
    """X ~ N(0, 1), W ~ N(0, 1/fan_in), b ~ N(0, 0.1^2); labels uniform (one-hot for softmax)."""
    n, d, h, c = LARGE_SHAPES[(model, size)]
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))  # (n, d)
    y = rng.integers(0, c, n)  # (n,)
    if model == "softmax":
        p = {"W": rng.standard_normal((d, c)) / np.sqrt(d), "b": 0.1 * rng.standard_normal(c)}
        return p, (X, np.eye(c)[y])
    p = {
        "W1": rng.standard_normal((d, h)) / np.sqrt(d),  # (d, h)
        "b1": 0.1 * rng.standard_normal(h),  # (h,)
        "W2": rng.standard_normal((h, c)) / np.sqrt(h),  # (h, c)
        "b2": 0.1 * rng.standard_normal(c),  # (c,)
    }
    return p, (X, y)


LARGE_BUGS = ("element x2", "element +1% max", "row off by one", "block zeroed", "sign", "one param x2")
BLOCK = 16  # rows and columns of the zeroed block (fewer where the matrix is narrower)


def large_bug(grad: Callable[..., Params], bug: str, shapes: dict[str, tuple[int, ...]], seed: int) -> tuple[
    Callable[..., Params], str
]:  # fmt: skip
    """The hand gradient with `bug` planted at a place drawn from `seed`, and that place in words.

    element x2        one element of the largest matrix doubled
    element +1% max   one element of it moved by 0.01 * max |g| of that matrix
    row off by one    its row i replaced by row i + 1 (an indexing slip)
    block zeroed      a BLOCK x BLOCK block of it set to 0 (a tile never written)
    sign              every gradient negated
    one param x2      one parameter, drawn, doubled
    """
    rng = np.random.default_rng(seed)
    big = max(shapes, key=lambda k: int(np.prod(shapes[k])))
    rows, cols = shapes[big]
    r, c = int(rng.integers(rows)), int(rng.integers(cols))

    def change(g: Params) -> Params:
        g = dict(g)
        m = g[big].copy()
        if bug == "element x2":
            m[r, c] *= 2
        elif bug == "element +1% max":
            m[r, c] += 0.01 * np.max(np.abs(m))
        elif bug == "row off by one":
            m[min(r, rows - 2)] = m[min(r, rows - 2) + 1]
        elif bug == "block zeroed":
            r0, c0 = min(r, rows - BLOCK), min(c, max(cols - BLOCK, 0))
            m[r0 : r0 + BLOCK, c0 : c0 + BLOCK] = 0
        elif bug == "sign":
            return {k: -v for k, v in g.items()}
        elif bug == "one param x2":
            return {**g, name: 2 * g[name]}
        else:
            raise ValueError(f"bug must be one of {LARGE_BUGS}; got {bug!r}")
        g[big] = m
        return g

    name = sorted(shapes)[int(rng.integers(len(shapes)))]
    r0, c0 = min(r, rows - BLOCK), min(c, max(cols - BLOCK, 0))
    where = {
        "element x2": f"{big}[{r}, {c}]",
        "element +1% max": f"{big}[{r}, {c}]",
        "row off by one": f"{big} row {min(r, rows - 2)}",
        "block zeroed": f"{big}[{r0}:{r0 + BLOCK}, {c0}:{c0 + BLOCK}]",
        "sign": "all",
        "one param x2": name,
    }[bug]

    def bugged(p: Params, X: Any, Y: Any) -> Params:
        return change(grad(p, X, Y))

    return bugged, where

"""The exact-dynamics engine: a linear model's whole gradient-descent trajectory in closed form.

For pred = X @ w + b with mean squared error, write p = [w; b] and A = [X 1] (n, P), P = d + 1.
The loss is quadratic, so its gradient is affine and full-batch gradient descent is a linear
recurrence::

    L(p) = 1/n * |A p - Y|^2        H = 2/n * A.T @ A (P, P)       g(p) = H p - 2/n * A.T @ Y
    p_{k+1} = p_k - lr * g(p_k)     g(p_{k+1}) = (I - lr H) g(p_k)

With H = Q diag(lam) Q.T and g0' = Q.T g(p_0), each eigen-direction j evolves on its own with
ratio r_j = 1 - lr * lam_j::

    p_k  = p_0 - Q (s_k * g0'),     s_kj = lr * sum_{m<k} r_j^m = (1 - r_j^k) / lam_j   (= lr*k if lam_j = 0)
    L_k  = L_0 - sum_j g0'_j^2 * (1 - r_j^(2k)) / (2 lam_j)
         = L* + sum_{lam_j > 0} r_j^(2k) * g0'_j^2 / (2 lam_j)

L* is the least-squares loss. Everything needs only the sufficient statistics, gathered in one
pass over the data: the means of X and Y and the centred sums S = Xc.T Xc, s = Xc.T Yc and
syy = Yc.Yc (Xc = X - mean). Accuracy:
- centring first keeps the mean's square out of S, so L* = (syy - s.T S^+ s) / n loses only
  about u / (1 - R^2) relatively, not u * mean(Y)^2 / L*;
- near the optimum the loss is a floor plus a sum of positive terms, never a difference of two
  large numbers, so it keeps its relative accuracy as it approaches L*. Directions with
  lam < sqrt(u) * lam_max (near-singular H) would lose digits in g^2 / (2 lam), so their
  (small, slow) decrease is subtracted instead, and the floor is the loss with them at p_0;
- 1 - r^k is computed as -expm1(k * log1p(-lr lam)), which stays accurate when lr*lam is tiny
  (near-singular H); eigenvalues below P * 8u * lam_max are exact zeros of H gone through
  rounding, and their directions do not move (their gradient is zero in exact arithmetic).

Limit: statistics cannot resolve a loss below about (P+1) u * syy / n (the variance of Y times
a few unit roundoffs); when the model fits almost perfectly (L* near 0, e.g. n <= d + 1) the
loss near the optimum is right in absolute terms only, while the twins, which form residuals,
keep relative digits. Parameters are unaffected.

Everything is float64 on the CPU. With dtype float32 the data are rounded to float32 first,
so the trajectory is the exact one of the problem the float32 twins see; they differ from it
by their own rounding (bounded by `parity.drift.drift_tolerance` with one implementation).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from gradtwin.data import Dataset
from gradtwin.devices import numpy_dtype, resolve_device
from gradtwin.errors import UsageError
from gradtwin.models import Model

EXACT_MODELS = ("linear1d", "linear")
BLOCK_BYTES = 1 << 21  # rows of X per block of the statistics pass (~2 MiB, cache-resident)


@dataclass(frozen=True)
class Statistics:
    """Sufficient statistics of a linear least-squares problem (float64)."""

    n: float  # the number of rows, or the sum of the weights v
    mean_x: np.ndarray  # (d,)
    mean_y: float
    S: np.ndarray  # (d, d)  centred X.T X
    s: np.ndarray  # (d,)    centred X.T Y
    syy: float  # centred Y.Y


def statistics(X: np.ndarray, Y: np.ndarray, weight: np.ndarray | None = None) -> Statistics:
    """One pass over X (n, d) and Y (n,) in row blocks, merged with Chan et al.'s update.

    Each block of Z = [X Y] is copied into one reused buffer and centred on its own mean
    (accurate sums), then blocks are combined: G = G_a + G_b + n_a n_b / n * delta delta.T,
    with delta the difference of their means. One matrix product per block gives S, s and syy.
    With sample weights v (n,) every count becomes a sum of weights and every mean a weighted
    mean (G_b = Z.T diag(v) Z): the weighted loss sum_i v_i r_i^2 / sum_i v_i has the same
    closed form with n replaced by sum_i v_i.
    """
    n, d = X.shape
    rows = max(1, min(n, BLOCK_BYTES // (8 * (d + 1))))
    count, mean = 0.0, np.zeros(d + 1)  # running means of [X Y]
    G = np.zeros((d + 1, d + 1))  # centred [X Y].T [X Y]: S, s and syy in one matrix
    centred = np.empty((rows, d + 1))  # (rows, d + 1) reused by every block: no n-sized temporaries
    ones = np.ones(rows)
    for start in range(0, n, rows):
        Xb, Yb = X[start : start + rows], Y[start : start + rows]  # (m, d), (m,) views
        m = Xb.shape[0]
        Z = centred[:m]  # (m, d + 1)
        Z[:, :d] = Xb
        Z[:, d] = Yb
        vb = ones[:m] if weight is None else weight[start : start + rows]  # (m,)
        mass = float(m) if weight is None else float(np.sum(vb))
        if mass == 0.0:  # a block of zero weights adds nothing
            continue
        mz = (vb @ Z) / mass  # (d + 1,) a matrix-vector product: faster than Z.mean(axis=0)
        Z -= mz
        total = count + mass
        delta = mz - mean  # (d + 1,)
        gram = Z.T @ Z if weight is None else (Z.T * vb) @ Z  # (d + 1, d + 1)
        G += gram + (count * mass / total) * np.outer(delta, delta)  # one product per block
        mean += delta * (mass / total)
        count = total
    return Statistics(count, mean[:d].copy(), float(mean[d]), G[:d, :d].copy(), G[:d, d].copy(), float(G[d, d]))


def hessian(stats: Statistics) -> np.ndarray:
    """H = 2/n [X 1].T [X 1] = 2 [[S/n + mu mu.T, mu], [mu.T, 1]]   (P, P)"""
    d = stats.mean_x.size
    mu = stats.mean_x
    H = np.empty((d + 1, d + 1))
    H[:d, :d] = stats.S / stats.n + np.outer(mu, mu)
    H[:d, d] = H[d, :d] = mu
    H[d, d] = 1.0
    return 2.0 * H


def gradient(stats: Statistics, p: np.ndarray) -> np.ndarray:
    """g(p) for p = [w; b] (P,), from centred statistics: e = mean residual, no ybar^2 cancels.

    dL/dw = 2 (S w - s) / n + 2 mu e,   dL/db = 2 e,   e = b + mu.w - ybar
    """
    w, b = p[:-1], p[-1]
    e = b + stats.mean_x @ w - stats.mean_y  # ()
    return np.concatenate([2.0 * (stats.S @ w - stats.s) / stats.n + 2.0 * stats.mean_x * e, [2.0 * e]])


def loss_at(stats: Statistics, p: np.ndarray) -> float:
    """L(p) from centred statistics: (w.S w - 2 w.s + syy) / n + e^2, e = b + mu.w - ybar (no ybar^2)."""
    w, b = p[:-1], p[-1]
    e = b + stats.mean_x @ w - stats.mean_y
    return max(0.0, float(w @ stats.S @ w - 2.0 * w @ stats.s + stats.syy) / stats.n + float(e * e))


def least_squares_loss(stats: Statistics) -> float:
    """L* = (syy - s.T S^+ s) / n, clamped at 0 (rounding could take it just below)."""
    sig, V = np.linalg.eigh(stats.S)
    keep = sig > _zero_threshold(sig)
    proj = V.T @ stats.s  # (d,)
    explained = float(np.sum(proj[keep] ** 2 / sig[keep]))
    return max(0.0, (stats.syy - explained) / stats.n)


def _zero_threshold(eigenvalues: np.ndarray) -> float:
    """Eigenvalues at or below this are zeros of a singular matrix, blurred by rounding."""
    top = float(np.max(np.abs(eigenvalues))) if eigenvalues.size else 0.0
    return eigenvalues.size * 8 * float(np.finfo(np.float64).eps) * top


class Trajectory:
    """Gradient descent from `p0` with `lr`: parameters and loss at any iterations, vectorised."""

    def __init__(
        self,
        stats: Statistics,
        p0: np.ndarray,
        lr: float,
        names: tuple[str, str],
        scalar_w: bool,
        eigen: tuple[np.ndarray, np.ndarray] | None = None,
    ):
        self.stats, self.lr, self.names, self.scalar_w = stats, lr, names, scalar_w
        self.p0 = np.asarray(p0, dtype=np.float64)  # (P,)
        lam, self.Q = eigen if eigen is not None else np.linalg.eigh(hessian(stats))  # (P,), (P, P)
        self.zero = lam <= _zero_threshold(lam)  # (P,) singular directions
        self.lam = np.where(self.zero, 0.0, lam)  # (P,)
        # Slow directions: lam so small that its own rounding (~ P u lam_max) would spoil g^2/(2 lam);
        # their loss decrease is summed from L_0 instead, and it is small beside L.
        self.slow = self.lam < np.sqrt(np.finfo(np.float64).eps) * self.lam.max()  # (P,)
        self.g0 = self.Q.T @ gradient(stats, self.p0)  # (P,) gradient at p0 in the eigenbasis
        lr_lam = lr * self.lam
        self.negative = lr_lam > 1.0  # r_j < 0
        # log |r_j|, from log1p so that a tiny lr*lam keeps its digits
        with np.errstate(divide="ignore", invalid="ignore"):
            self.log_abs_r = np.where(self.negative, np.log1p(lr_lam - 2.0), np.log1p(-np.minimum(lr_lam, 1.0)))
        fast_lam = np.where(self.slow, 1.0, self.lam)
        self.excess0 = np.where(self.slow, 0.0, self.g0**2 / (2.0 * fast_lam))  # (P,) L_0 - L_floor per direction
        # L_floor: the loss after every fast direction has converged, slow ones still at p0
        newton = np.where(self.slow, 0.0, self.g0 / fast_lam)  # (P,)
        self.L_floor = loss_at(stats, self.p0 - self.Q @ newton)
        self.L_star = least_squares_loss(stats)
        self.seconds = 0.0

    @property
    def stable_bound(self) -> float:
        """2 / lambda_max: above this learning rate the loss grows without bound."""
        return 2.0 / float(self.lam.max())

    def with_lr(self, lr: float) -> Trajectory:
        """The same start and data at another learning rate (the eigendecomposition is reused)."""
        lam = np.where(self.zero, 0.0, self.lam)
        return Trajectory(self.stats, self.p0, lr, self.names, self.scalar_w, (lam, self.Q))

    def _pow(self, k: np.ndarray, factor: int) -> np.ndarray:
        """|r_j|^(factor * k)  (K, P); r^0 = 1 even where r = 0."""
        exponent = np.where(k[:, None] == 0, 0.0, (factor * k)[:, None] * self.log_abs_r)  # (K, P)
        return np.exp(exponent)

    def losses(self, k: np.ndarray) -> np.ndarray:
        """L_k for iterations k (K,).

        Per direction the loss falls by g0_j^2 (1 - r_j^(2k)) / (2 lam_j) from L_0. Fast directions
        are written as L_floor + r^(2k) g0^2 / (2 lam): positive terms that shrink, no cancellation
        near the optimum. Slow ones subtract their decrease, (1 - r^(2k)) / (2 lam) = -expm1(2k log|r|)
        / (2 lam) -> lr * k as lam -> 0, which stays accurate however small lam is.
        """
        k = np.asarray(k, dtype=np.float64)
        with np.errstate(over="ignore", invalid="ignore"):
            loss = self.L_floor + self._pow(k, 2) @ self.excess0  # (K,)
            if self.slow.any():
                lam = self.lam[self.slow]
                exponent = np.where(k[:, None] == 0, 0.0, 2.0 * k[:, None] * self.log_abs_r[self.slow])
                safe = np.where(lam == 0.0, 1.0, lam)
                drop = np.where(lam == 0.0, self.lr * k[:, None], -np.expm1(exponent) / (2.0 * safe))  # (K, q)
                loss = loss - drop @ self.g0[self.slow] ** 2
            return loss

    def steps(self, k: np.ndarray) -> np.ndarray:
        """s_kj = (1 - r_j^k) / lam_j, or lr * k where lam_j = 0   (K, P)"""
        k = np.asarray(k, dtype=np.float64)
        kk = k[:, None]  # (K, 1)
        with np.errstate(over="ignore", invalid="ignore"):
            rk = self._pow(k, 1)  # |r|^k (K, P)
            odd = (k % 2 == 1)[:, None] & self.negative  # r^k < 0
            exponent = np.where(kk == 0, 0.0, kk * self.log_abs_r)
            one_minus = np.where(odd, 1.0 + rk, -np.expm1(exponent))  # 1 - r^k  (K, P)
            safe = np.where(self.zero, 1.0, self.lam)
            return np.where(self.zero, self.lr * kk, one_minus / safe)

    def params(self, k: np.ndarray) -> dict[str, np.ndarray]:
        """p_k for iterations k: {"w": (K,) or (K, d), "b": (K,)}."""
        with np.errstate(over="ignore", invalid="ignore"):
            p = self.p0 - (self.steps(k) * self.g0) @ self.Q.T  # (K, P)
        w = p[:, 0] if self.scalar_w else p[:, :-1]
        return {self.names[0]: np.ascontiguousarray(w), self.names[1]: np.ascontiguousarray(p[:, -1])}


def _design(X: np.ndarray) -> np.ndarray:
    return X.reshape(X.shape[0], -1)  # (n, d): 1-D X is one feature


class ExactEngine:
    """`--engine exact`: the whole trajectory in closed form (linear models with squared error only).

    Not a twin's engine: it computes no gradients and takes no steps. `train` hands it the data,
    the start and lr, and evaluates the `Trajectory` it returns under the same stop rules.
    """

    name = "exact"

    def __init__(self, model: Model, dtype: str = "float64", device: str = "cpu") -> None:
        if model.family not in EXACT_MODELS:
            raise UsageError(
                f"engine 'exact' needs a linear model with squared error ({', '.join(EXACT_MODELS)}); "
                f"got model {model.name!r}"
            )
        self.model, self.dtype = model, dtype
        self.device = resolve_device(device, dtype)
        if self.device.type != "cpu":
            raise UsageError(f"engine 'exact' runs on the cpu; got device {str(self.device)!r}")

    def asarray(self, values: np.ndarray) -> np.ndarray:
        """The data as the twins of this dtype see it, held in float64."""
        return np.asarray(values, dtype=numpy_dtype(self.dtype)).astype(np.float64)

    def statistics(self, data: Dataset) -> Statistics:
        X = _design(self.asarray(data.X))
        weight = None if data.weight is None else self.asarray(data.weight)
        return statistics(X, self.asarray(data.Y), weight)

    def trajectory(self, data: Dataset, start: dict[str, np.ndarray], lr: float) -> Trajectory:
        """Statistics (one pass), eigendecomposition, then a `Trajectory` ready to evaluate."""
        clock = time.perf_counter()
        stats = self.statistics(data)
        p0 = np.concatenate([np.ravel(self.asarray(start["w"])), np.ravel(self.asarray(start["b"]))])  # (P,)
        traj = Trajectory(stats, p0, lr, ("w", "b"), scalar_w=data.X.ndim == 1)
        traj.seconds = time.perf_counter() - clock
        return traj


@dataclass
class Sweep:
    """Gradient descent at many learning rates at once, from the same start and data."""

    lrs: np.ndarray  # (m,)
    iterations: int
    final_loss: np.ndarray  # (m,) loss after `iterations` steps
    stable: np.ndarray  # (m,) bool: lr < 2 / lam_max
    rate: np.ndarray  # (m,) max_j |1 - lr lam_j| over non-zero lam: the excess shrinks by rate^2 per step
    least_squares_loss: float
    lam_min: float  # smallest non-zero eigenvalue of H
    lam_max: float

    @property
    def stable_bound(self) -> float:
        """2 / lam_max: above it the loss grows without bound."""
        return 2.0 / self.lam_max

    @property
    def fastest_lr(self) -> float:
        """2 / (lam_min + lam_max): the lr with the smallest worst-direction rate."""
        return 2.0 / (self.lam_min + self.lam_max)


def sweep(traj: Trajectory, lrs: np.ndarray, iterations: int) -> Sweep:
    """Final loss, stability and convergence rate for every lr in `lrs`, from one eigendecomposition."""
    lrs = np.asarray(lrs, dtype=np.float64)
    lam = traj.lam[~traj.zero]  # (q,) non-zero eigenvalues
    rate = np.abs(1.0 - lrs[:, None] * lam).max(axis=1)  # (m,)
    last = np.array([iterations])
    final = np.array([traj.with_lr(float(lr)).losses(last)[0] for lr in lrs])  # (m,)
    return Sweep(
        lrs=lrs,
        iterations=iterations,
        final_loss=final,
        stable=rate < 1.0,
        rate=rate,
        least_squares_loss=traj.L_star,
        lam_min=float(lam.min()),
        lam_max=float(lam.max()),
    )

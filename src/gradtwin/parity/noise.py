"""How noisy a loss is in float64: Moré and Wild's difference-table estimate (ECnoise, 2011).

A loss can round far more than u * |loss|: PyTorch's binary_cross_entropy_with_logits adds
-z and +z inside one kernel, so a loss of 1e-9 carries an error near u * |z|. No derivative
shows that, but the loss's own values do: along a line p + t*v at m + 1 points a few ulps
apart, the smooth part of the loss is a low-degree polynomial that k-th differences erase,
while rounding noise survives them with variance binom(2k, k) * sigma^2. The estimate
sigma_k = sqrt(gamma_k / (m + 1 - k) * sum (Delta^k f)^2), gamma_k = (k!)^2 / (2k)!, is the
standard deviation of the noise; `loss_noise` returns the largest over k = 3..6 and over
four spacings of the points.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

POINTS = 9  # m + 1 evaluations along the line
# Relative spacings tried. The loss must move across several of its rounding quanta, or the
# values sit on one plateau (or step in a pattern so regular that differences vanish), yet stay
# smooth; no one spacing is right for every loss, so the largest estimate over these is taken.
SPACINGS = (1e-8, 1e-7, 1e-6, 1e-5)


def loss_noise(
    loss: Callable[[dict[str, np.ndarray]], float],
    params: dict[str, np.ndarray],
    seed: int = 0,
    spacings: tuple[float, ...] = SPACINGS,
) -> float:
    """Standard deviation of the rounding noise of `loss` near `params` (0 if the values are constant)."""
    rng = np.random.default_rng(seed)
    return max(_noise_along(loss, params, rng, step) for step in spacings)


def _noise_along(
    loss: Callable[[dict[str, np.ndarray]], float], params: dict[str, np.ndarray], rng: np.random.Generator, step: float
) -> float:
    """The largest sigma_k, k = 3..6, from POINTS values along one random line at this spacing."""
    direction = {
        k: rng.choice([-1.0, 1.0], size=v.shape) * step * np.maximum(np.abs(v), 1.0) for k, v in params.items()
    }
    values = np.array(
        [loss({k: v + (i - POINTS // 2) * direction[k] for k, v in params.items()}) for i in range(POINTS)]
    )
    return sigma_of(values)


def sigma_of(values: np.ndarray) -> float:
    """ECnoise's estimate from equally spaced values: the largest sigma_k over k = 3..6 (inf if any is not finite)."""
    if not np.all(np.isfinite(values)):
        return math.inf
    sigma = 0.0
    diff = np.asarray(values, dtype=np.float64)
    for k in range(1, 7):
        diff = np.diff(diff)
        if k >= 3:
            gamma_k = math.factorial(k) ** 2 / math.factorial(2 * k)
            sigma = max(sigma, math.sqrt(gamma_k / diff.size * float(np.sum(diff**2))))
    return sigma

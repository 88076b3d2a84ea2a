"""Finite differences near kinks: tell a loss that is not differentiable at a point from one that is.

Central differences with step h straddle any kink within h of the point (a ReLU whose input
is near 0) and then miss the derivative by up to half the jump, while Richardson's estimate
|D(h) - D(2h)| can stay small. For an element where a comparison fails, `probe` looks at the
one-sided slopes at steps h, h/4, ... h/4^5:
- if their gap shrinks (by half or more from one step to the next, or below rounding), the loss
  is smooth on that scale, and the central difference there, with error at most half the gap
  plus rounding, replaces the first estimate;
- if the gap grows (like 1/step), rounding noise dominates: the larger step's estimate is
  kept, with the gap as its error bound;
- if the gap stays the same at every step, the loss has a kink at the point: any value between
  the left and the right slope is a subgradient, and the finite-difference referee accepts it.
`loss_error` is the a-priori rounding bound of one loss evaluation (not a noise estimate taken
across the kink, which would mistake the kink for noise).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from gradtwin.parity.finite_diff import fd_step

STEPS = 6


@dataclass(frozen=True)
class Probe:
    """What the one-sided slopes say about one element: smooth (with a better estimate) or a kink."""

    kink: bool
    left: float
    right: float
    bound: float  # error bound of the midpoint (smooth), or the slack on the interval (kink)

    @property
    def value(self) -> float:
        return 0.5 * (self.left + self.right)

    @property
    def half_width(self) -> float:
        """Accept anything in [left, right] (kink) or within the bound of the midpoint (smooth)."""
        return 0.5 * abs(self.right - self.left) * self.kink + self.bound


class Kinks(dict[tuple[int, ...], Probe]):
    """The kinks found in one parameter, by element; `joint` probes all of them moved together.

    Each element alone may lie between its one-sided slopes while the vector does not: at a tie
    of g * max(x1, x2), (g, g) passes element by element, yet every subgradient sums to g.
    """

    joint: Probe | None = None


def probe(loss: Callable[[dict[str, np.ndarray]], float], params: dict[str, np.ndarray], name: str,
          idx: tuple[int, ...], loss_error: float, direction: np.ndarray | None = None) -> Probe:  # fmt: skip
    """One-sided slopes of `loss` in params[name][idx] at shrinking steps (float64); with `direction`
    (an array of params[name]'s shape), the one-sided slopes along it instead."""
    p = {k: np.array(v, dtype=np.float64) for k, v in params.items()}
    x0 = p[name].copy()
    if direction is None:
        direction = np.zeros_like(x0)
        direction[idx] = 1.0
    mid = loss(p)
    h0 = float(fd_step(float(np.max(np.abs(x0[direction != 0]), initial=0.0))))
    prev: tuple[float, float] | None = None
    for k in range(STEPS):
        s = h0 / 4**k
        p[name] = x0 + s * direction
        up = loss(p)
        p[name] = x0 - s * direction
        down = loss(p)
        p[name] = x0
        left, right = (mid - down) / s, (up - mid) / s
        rounding = 4 * loss_error / s
        gap = abs(right - left)
        if prev is not None:
            prev_gap = abs(prev[1] - prev[0])
            if gap <= 0.5 * prev_gap or gap <= rounding:  # smooth on this scale
                return Probe(False, left, right, 0.5 * gap + rounding)
            if gap >= 2 * prev_gap:  # noise: the gap grows like 1/s; the larger step was the better one
                return Probe(False, prev[0], prev[1], gap)
            if k == STEPS - 1:  # the same jump at every step: a kink at the point
                drift = max(abs(left - prev[0]), abs(right - prev[1]))
                return Probe(True, left, right, drift + rounding)
        prev = (left, right)
    raise AssertionError("unreachable: the last step returns")

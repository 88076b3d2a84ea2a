"""Rounding-error bounds: the unit roundoff, gamma(k), and the tolerance they give a sum.

Tolerances are bounds, not guesses. A sum of K rounded terms, computed in any order, is
within gamma(K) * sum|terms| of the exact sum, gamma(K) = K*u / (1 - K*u), u the unit
roundoff of the dtype (Higham, Accuracy and Stability of Numerical Algorithms, sec. 3.1).
Each twin may err by that much, so two twins may differ by twice that. `parity.scales`
supplies each model's sum|terms|, evaluated with absolute values so that cancellation in
the data cannot shrink the tolerance below what rounding can really do.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

# Rounding steps a term passes through besides the sum itself: a product, a sum and a
# difference in the residual, the 2/n factor, the product with X, and the cast of X, Y and
# the parameters into a narrower dtype. Counted generously; it is tiny beside n.
ROUNDING_OPS = 10


def unit_roundoff(dtype: Any) -> float:
    """u = eps / 2: the largest relative error of one correctly rounded operation."""
    if dtype in ("bfloat16", torch.bfloat16):
        return float(torch.finfo(torch.bfloat16).eps) / 2.0  # 2^-8: NumPy has no bfloat16
    if isinstance(dtype, torch.dtype):
        return float(torch.finfo(dtype).eps) / 2.0
    return float(np.finfo(dtype).eps) / 2.0


def gamma(k: int, dtype: Any) -> float:
    """gamma(k) = k*u / (1 - k*u), the bound on k successive roundings (inf if k*u >= 1)."""
    ku = k * unit_roundoff(dtype)
    return ku / (1.0 - ku) if ku < 1.0 else math.inf


def tolerance(dtype: Any, n_terms: int, scale: Any, ops: int = ROUNDING_OPS) -> np.ndarray:
    """Bound on |computed - exact| of one twin: gamma(n_terms + ops) * scale (elementwise)."""
    return gamma(n_terms + ops, dtype) * np.asarray(scale, dtype=np.float64)


# The relative rounding model (|error| <= u * |value| per operation) fails below float32's
# smallest normal number: there a result may come out subnormal, or flushed to zero (torch's
# vectorized exp does that), an absolute error of up to that number. Adding FLUSH to the
# magnitude of every value that can land there (an exp, a sigmoid, a product, a division)
# keeps gamma * scale a bound, since gamma >= u32 in float32. In float64 it adds about
# gamma64 * 2e-31 to a tolerance: nothing, and float64's own smallest normal (2e-308) is
# covered many times over.
FLUSH = float(np.finfo(np.float32).tiny) / (float(np.finfo(np.float32).eps) / 2.0)


# The worst case gamma(K) is used while K*u stays at or below this: it then bounds to 0.1 %.
# Beyond it (float32 from K = 16,777, float16 and bfloat16 almost always) the worst case
# grows useless (it means nothing once K*u >= 1) and the probabilistic bound takes over.
WORST_CASE_LIMIT = 1e-3
FAILURE = 1e-6  # the probability, per check, that a probabilistic bound is allowed to fail


@dataclass(frozen=True)
class Bound:
    """A relative rounding bound: gamma, which kind, and the probability it fails (0: never)."""

    gamma: float
    kind: str  # "worst case" or "probabilistic"
    failure: float
    lam: float = 0.0

    def describe(self) -> str:
        if self.kind == "worst case":
            return f"worst case gamma(K) = {self.gamma:.3g} (Higham sec. 3.1)"
        return (
            f"probabilistic gamma~(K) = exp(lambda sqrt(K) u + K u^2/(1-u)) - 1 = {self.gamma:.3g}, "
            f"lambda = {self.lam:.3g} (Higham and Mary 2019, Thm 3.1): fails with probability <= {self.failure:.0e}"
        )


def rounding_bound(dtype: Any, n_roundings: int, outputs: int = 1, failure: float = FAILURE) -> Bound:
    """The bound on n_roundings successive roundings, for `outputs` results at once.

    Worst case, gamma(K) = K u / (1 - K u), while K u <= WORST_CASE_LIMIT. Beyond it,
    Higham and Mary (SIAM J. Sci. Comput. 41(5), 2019, Thm 3.1): if the rounding errors are
    independent with mean zero, a sum of K terms errs by at most
        gamma~(K) = exp(lambda sqrt(K) u + K u^2 / (1 - u)) - 1   times sum|terms|
    except with probability K * 2 exp(-lambda^2 (1 - u)^2 / 2). Over `outputs` results the
    union bound asks 2 K outputs exp(-lambda^2 (1-u)^2 / 2) <= failure, which fixes lambda.
    """
    u = unit_roundoff(dtype)
    k = max(int(n_roundings), 1)
    if k * u <= WORST_CASE_LIMIT:
        return Bound(k * u / (1.0 - k * u), "worst case", 0.0)
    lam = math.sqrt(2.0 * math.log(2.0 * k * max(outputs, 1) / failure)) / (1.0 - u)
    exponent = lam * math.sqrt(k) * u + k * u * u / (1.0 - u)
    return Bound(math.expm1(exponent) if exponent < 700 else math.inf, "probabilistic", failure, lam)

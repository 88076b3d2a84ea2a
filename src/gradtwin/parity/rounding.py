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
from typing import Any

import numpy as np

# Rounding steps a term passes through besides the sum itself: a product, a sum and a
# difference in the residual, the 2/n factor, the product with X, and the cast of X, Y and
# the parameters into a narrower dtype. Counted generously; it is tiny beside n.
ROUNDING_OPS = 10


def unit_roundoff(dtype: Any) -> float:
    """u = eps / 2: the largest relative error of one correctly rounded operation."""
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

"""Dropout with inverted scaling, derived by hand: kept elements scaled by 1/(1 - p), dropped ones zeroed.

The mask is data, not drawn inside the layer: `mask(shape, p, seed)` draws it once, seeded, and
the same array goes to forward and backward, of this twin and of the autograd one (which draws
nothing and imports nothing from here). So the backward reuses the forward's mask by
construction, and the two twins cannot disagree by drawing differently. `keep` holds 1 where
an element is kept and 0 where it is dropped; p is the probability of dropping, in [0, 1).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from array_api_compat import array_namespace

from gradtwin.layers.inputs import dropout_probability

Params = dict[str, Any]


def mask(shape: tuple[int, ...], p: float, seed: int = 0) -> np.ndarray:
    """The keep mask: 1.0 with probability 1 - p, else 0.0, from NumPy's generator seeded with `seed`.

    Shapes::  shape (n, d)  ->  keep (n, d) float64
    """
    dropout_probability(p)
    return (np.random.default_rng(seed).random(shape) >= p).astype(np.float64)


def forward(params: Params, X: Any, keep: Any, p: float) -> Any:
    """out = X * keep / (1 - p): its expectation is X, so at evaluation the layer is the identity.

    Shapes::  X (n, d), keep (n, d) of 0 and 1, p ()  ->  out (n, d)
    """
    xp = array_namespace(X, keep)
    scale = 1.0 / (1.0 - dropout_probability(p, X, keep))  # ()
    return X * xp.astype(keep, X.dtype) * scale  # (n, d)


def backward(params: Params, X: Any, dout: Any, keep: Any, p: float) -> Params:
    """dL/dX for the upstream gradient dout = dL/dout: the forward's own mask and scale.

    Forward:: out = X * keep / (1 - p)
    Chain::   dL/dX = dout * keep / (1 - p)        (dout/dX = keep / (1 - p): the same mask, the same scale)
    Shapes::  X (n, d), dout (n, d), keep (n, d), p ()  ->  dX (n, d)
    """
    xp = array_namespace(X, dout, keep)
    scale = 1.0 / (1.0 - dropout_probability(p, X, keep))  # ()
    dX = dout * xp.astype(keep, X.dtype) * scale  # (n, d)
    return {"X": dX}

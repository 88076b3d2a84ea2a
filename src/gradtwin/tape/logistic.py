"""Binary logistic regression, mean cross-entropy from the logits, with gradients from gradtwin's own autodiff.

With `weight` v (n,) the loss is the weighted mean sum_i v_i l_i / sum_i v_i, as in the manual twin.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from gradtwin.autodiff import Tensor, ops, tap
from gradtwin.tape.backward import loss_and_gradients

Params = dict[str, Tensor]


def logits(params: Params, X: Any) -> Tensor:
    """z = X @ w + b.   Shapes::  X (n, d), w (d,), b ()  ->  z (n,)"""
    return X @ params["w"] + params["b"]  # two graph nodes


def predict(params: Params, X: Any) -> np.ndarray:
    """Class labels: 1 where z > 0 (sigma(z) > 1/2), else 0.   Shapes::  X (n, d) -> (n,) int64"""
    return (logits(params, X) > 0).data.astype(np.int64)


def loss(params: Params, X: Any, Y: Any, weight: Any = None) -> Tensor:
    """Mean cross-entropy.   Loss::  L = 1/n * sum_i softplus(s_i * z_i),  s_i = 1 - 2 Y_i   ->  ()

    Weighted::  L = sum_i v_i softplus(s_i * z_i) / sum_i v_i
    """
    z = tap("z", logits(params, X))  # (n,)
    s = 1.0 - 2.0 * np.asarray(Y).astype(z.dtype)  # (n,) +1 or -1, exact
    # the engine's softplus is max(t, 0) + log1p(e^-|t|): finite and accurate for any logit, 1e30 included
    terms = ops.softplus(s * z)  # (n,)
    if weight is None:
        return ops.mean(terms)  # ()
    return weight @ terms / ops.sum(weight)  # ()


def gradients(params: dict[str, Any], X: Any, Y: Any, weight: Any = None) -> dict[str, Any]:
    """dL/dw and dL/db by `loss(...).backward()`.   Shapes::  -> dw (d,), db ()"""
    return loss_and_gradients(functools.partial(loss, weight=weight), params, X, Y)[1]

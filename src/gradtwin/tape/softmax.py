"""Multinomial (k-class) logistic regression, mean cross-entropy, with gradients from gradtwin's own autodiff.

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
    """Z = X @ W + b.   Shapes::  X (n, d), W (d, k), b (k,)  ->  Z (n, k)"""
    return X @ params["W"] + params["b"]  # two graph nodes


def predict(params: Params, X: Any) -> np.ndarray:
    """Class labels: the index of the largest logit.   Shapes::  X (n, d) -> (n,) int64"""
    return np.argmax(logits(params, X).data, axis=1).astype(np.int64)


def loss(params: Params, X: Any, Y: Any, weight: Any = None) -> Tensor:
    """Mean cross-entropy.   Loss::  L = 1/n * sum_i (logsumexp_c Z_ic - Z_{i,Y_i})   ->  ()"""
    return cross_entropy(tap("Z", logits(params, X)), Y, weight)


def gradients(params: dict[str, Any], X: Any, Y: Any, weight: Any = None) -> dict[str, Any]:
    """dL/dW and dL/db by `loss(...).backward()`.   Shapes::  -> dW (d, k), db (k,)"""
    return loss_and_gradients(functools.partial(loss, weight=weight), params, X, Y)[1]


def cross_entropy(Z: Tensor, Y: Any, weight: Any = None) -> Tensor:
    """1/n * sum_i (lse_i - Z_{i,Y_i}), or sum_i v_i (...) / sum_i v_i; Y must be integers to index.

    Shapes::  Z (n, k), Y (n,), v (n,) -> ()
    """
    # logsumexp subtracts each row's largest logit first: stable at any logit
    terms = ops.logsumexp(Z, axis=1) - Z[np.arange(Z.shape[0]), np.asarray(Y)]  # (n,) lse_i - Z_{i,Y_i}
    if weight is None:
        return ops.mean(terms)  # ()
    return weight @ terms / ops.sum(weight)  # ()

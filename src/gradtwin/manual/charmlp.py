"""A character-level language model (the "makemore" MLP), its backward pass composed from the layers' by hand.

The `context` previous characters (indices into a vocabulary of V, stored in X as float64 whole
numbers) are looked up in an embedding table C, concatenated, and fed through a linear layer W1
(no bias: batch norm's beta takes its place), batch normalisation with the batch's own statistics,
tanh, and a linear output W2, b2; the loss is the mean cross-entropy of the next character. The
backward pass chains the layer twins' hand backward passes (`layers.manual.embedding`,
`layers.manual.batchnorm`) and the softmax head (`manual.softmax`).
"""

from __future__ import annotations

from typing import Any

from array_api_compat import array_namespace

from gradtwin.layers.inputs import window_indices
from gradtwin.layers.manual import batchnorm, embedding
from gradtwin.manual.softmax import cross_entropy, cross_entropy_gradient

Params = dict[str, Any]
EPS = batchnorm.EPS  # added to the variance before the square root, as torch's default
Stats = tuple[Any, Any] | None  # (mu (h,), var (h,)) fixed batch-norm statistics, or None: the batch's own


def indices(params: Params, X: Any) -> Any:
    """X as int64 character indices, or one error naming what does not fit (`layers.inputs.window_indices`).

    X must be (n, context) with context * e = the rows of W1, whole numbers in [0, V).
    Shapes::  X (n, context) float -> (n, context) int64
    """
    e, rows = params["C"].shape[1], params["W1"].shape[0]
    why = f"context = {rows // e} characters (W1 has {rows} rows, {e} per character)"
    return window_indices(X, params["C"].shape[0], rows // e, "charmlp", why)


def forward(params: Params, X: Any, stats: Stats = None) -> tuple[Any, Any, Any, Any, Any, Any]:
    """Emb, Ecat, Z1, Zbn, H and Z2 (the logits); batch norm uses `stats` = (mu, var) if given (sampling).

    Shapes::  X (n, t), C (V, e), W1 (t*e, h), gamma (h,), beta (h,), W2 (h, V), b2 (V,)
              ->  (n, t, e), (n, t*e), (n, h), (n, h), (n, h), (n, V)
    """
    xp = array_namespace(params["C"])
    Xi = indices(params, X)  # (n, t)
    Emb = embedding.forward({"W": params["C"]}, Xi)  # (n, t, e)
    Ecat = xp.reshape(Emb, (Emb.shape[0], -1))  # (n, t*e)  position 0's e values first, then position 1's...
    Z1 = Ecat @ params["W1"]  # (n, h)
    norm = {"gamma": params["gamma"], "beta": params["beta"]}
    if stats is None:
        Zbn = batchnorm.forward(norm, Z1)  # (n, h)
    else:
        mu, var = stats  # (h,), (h,)
        Zbn = params["gamma"] * (Z1 - mu) / xp.sqrt(var + EPS) + params["beta"]  # (n, h)
    H = xp.tanh(Zbn)  # (n, h)
    Z2 = H @ params["W2"] + params["b2"]  # (n, V)
    return Emb, Ecat, Z1, Zbn, H, Z2


def predict(params: Params, X: Any) -> Any:
    """The most likely next character (batch statistics of X).   Shapes::  X (n, t) -> (n,) int64"""
    xp = array_namespace(X)
    return xp.astype(xp.argmax(forward(params, X)[5], axis=1), xp.int64)


def loss(params: Params, X: Any, Y: Any) -> Any:
    """Mean cross-entropy of the next character.   Loss::  L = 1/n * sum_i (logsumexp_c Z2_ic - Z2_{i,Y_i})  -> ()"""
    return cross_entropy(forward(params, X)[5], Y)


def backward(params: Params, X: Any, Y: Any) -> Params:
    """Back-propagation through the layers, one local derivative per line, from the loss back to C.

    Forward:: Emb = C[X] ;  Ecat = concat_t Emb_t ;  Z1 = Ecat W1 ;  Zbn = batchnorm(Z1; gamma, beta)
              H = tanh(Zbn) ;  Z2 = H W2 + b2 ;  L = 1/n sum_i (lse_i - Z2_{i,Y_i})
    Chain::   dL/dZ2 = (softmax(Z2) - onehot(Y)) / n         (the softmax head)
              dL/dH = dL/dZ2 @ W2.T                          (dZ2/dH = W2)
              dL/dZbn = dL/dH * (1 - H^2)                    (dH/dZbn = tanh' = 1 - H^2)
              dL/dZ1 = batchnorm.backward(dL/dZbn)           (the layer's chain, centring term included)
              dL/dEcat = dL/dZ1 @ W1.T                       (dZ1/dEcat = W1)
              dL/dEmb = dL/dEcat split into t blocks of e    (concatenation: columns t*e..t*e+e-1 are Emb_t)
              dL/dW2 = H.T @ dL/dZ2                          (dZ2/dW2 = H)
              dL/db2 = sum_i dL/dZ2_i                        (dZ2/db2 = 1)
              dL/dgamma = sum_i dL/dZbn_i * Zhat_i           (from the batch-norm layer)
              dL/dbeta = sum_i dL/dZbn_i                     (from the batch-norm layer)
              dL/dW1 = Ecat.T @ dL/dZ1                       (dZ1/dW1 = Ecat)
              dL/dC = sum over positions that look up v of dL/dEmb  (the embedding's scatter-add)
    Shapes::  X (n, t), Y (n,) int  ->  dZ2 (n, V), dH (n, h), dZbn (n, h), dZ1 (n, h), dEcat (n, t*e),
              dEmb (n, t, e), dW2 (h, V), db2 (V,), dgamma (h,), dbeta (h,), dW1 (t*e, h), dC (V, e)
    """
    xp = array_namespace(params["C"])
    Xi = indices(params, X)  # (n, t)
    Emb, Ecat, Z1, _, H, Z2 = forward(params, X)  # (n, t, e), (n, t*e), (n, h), Zbn unused, (n, h), (n, V)
    norm = {"gamma": params["gamma"], "beta": params["beta"]}
    dZ2 = cross_entropy_gradient(Z2, Y)  # (n, V)  the softmax head
    dH = dZ2 @ params["W2"].T  # (n, h)  dZ2/dH = W2
    dZbn = dH * (1.0 - H * H)  # (n, h)  dH/dZbn = 1 - H^2
    bn = batchnorm.backward(norm, Z1, dZbn)  # {"X": (n, h), "gamma": (h,), "beta": (h,)}
    dZ1 = bn["X"]  # (n, h)
    dEcat = dZ1 @ params["W1"].T  # (n, t*e)  dZ1/dEcat = W1
    dEmb = xp.reshape(dEcat, Emb.shape)  # (n, t, e)  the concatenation's blocks, in position order
    dW2 = H.T @ dZ2  # (h, V)  dZ2/dW2 = H
    db2 = xp.sum(dZ2, axis=0)  # (V,)    dZ2/db2 = 1
    dW1 = Ecat.T @ dZ1  # (t*e, h)  dZ1/dW1 = Ecat
    dC = embedding.backward({"W": params["C"]}, Xi, dEmb)["W"]  # (V, e)  repeated characters accumulate
    return {
        "Z2": dZ2,
        "H": dH,
        "Zbn": dZbn,
        "Z1": dZ1,
        "Ecat": dEcat,
        "Emb": dEmb,
        "W2": dW2,
        "b2": db2,
        "gamma": bn["gamma"],
        "beta": bn["beta"],
        "W1": dW1,
        "C": dC,
    }


def gradients(params: Params, X: Any, Y: Any) -> Params:
    """dL/dC, dL/dW1, dL/dgamma, dL/dbeta, dL/dW2, dL/db2: the parameters' part of `backward`.

    Shapes::  X (n, t), Y (n,) int  ->  dC (V, e), dW1 (t*e, h), dgamma (h,), dbeta (h,), dW2 (h, V), db2 (V,)
    """
    steps = backward(params, X, Y)
    return {name: steps[name] for name in ("C", "W1", "gamma", "beta", "W2", "b2")}


def statistics(params: Params, X: Any) -> tuple[Any, Any]:
    """The batch-norm statistics of X: mean and biased variance of Z1 over the rows.   Shapes::  -> (h,), (h,)"""
    xp = array_namespace(params["C"])
    Z1 = forward(params, X)[2]  # (n, h)
    mu = xp.mean(Z1, axis=0)  # (h,)
    Zc = Z1 - mu  # (n, h)
    return mu, xp.mean(Zc * Zc, axis=0)  # (h,), (h,)  biased: 1/n, as batch norm's training mode

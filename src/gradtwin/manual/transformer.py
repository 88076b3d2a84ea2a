"""One pre-LN transformer block as a next-character model, with its backward pass composed by hand.

X (n, T) holds the indices of T characters a row (whole numbers stored as floats, cast to int64
here; they get no gradient). Each position t predicts the character after it: X[:, t + 1] for
t < T - 1 and Y for the last, so every window trains all T positions and the causal mask is what
keeps a position from reading its own answer. The block, as in GPT-2:

    E  = Etok[X] + Epos                              token and position embeddings
    H1 = E + attention(layernorm1(E))                single-head causal self-attention, Wo projection
    H2 = H1 + relu(layernorm2(H1) W1 + b1) W2 + b2   the MLP, 4 d hidden units
    Z  = layernorm_f(H2) Wout + bout                 logits at every position (layernorm_f optional)

The hand backward is the layer twins' (`gradtwin.layers.manual`: embedding, layernorm, attention)
chained through the residual sums, plus the cross-entropy head of `manual.softmax`. The final
layer norm is there when params hold gammaf and betaf. `xp` is the array namespace of X: NumPy,
or torch tensors without autograd.
"""

from __future__ import annotations

from typing import Any

from array_api_compat import array_namespace

from gradtwin.errors import DataError
from gradtwin.layers.inputs import window_indices
from gradtwin.layers.manual import attention, embedding, layernorm
from gradtwin.manual.mlp import activate, activation_derivative
from gradtwin.manual.softmax import cross_entropy, cross_entropy_gradient

Params = dict[str, Any]
ATTENTION = ("Wq", "Wk", "Wv", "Wo")


def forward(params: Params, X: Any) -> dict[str, Any]:
    """Every intermediate of the block, by name, in forward order.

    Shapes::  X (n, T), Etok (V, d), Epos (T, d), Wq Wk Wv Wo (d, d), W1 (d, 4d), W2 (4d, d), Wout (d, V)
              ->  E N1 A H1 N2 (n, T, d), U R (n, T, 4d), M H2 Hf (n, T, d), Z (n, T, V)
    """
    idx = indices(params, X)  # (n, T) int64
    E = embedding.forward({"W": params["Etok"]}, idx) + params["Epos"]  # (n, T, d)
    N1 = layernorm.forward(_norm(params, "1"), E)  # (n, T, d)
    A = attention.forward({k: params[k] for k in ATTENTION}, N1)  # (n, T, d)
    H1 = E + A  # (n, T, d)
    N2 = layernorm.forward(_norm(params, "2"), H1)  # (n, T, d)
    U = N2 @ params["W1"] + params["b1"]  # (n, T, 4d)
    R = activate(U, "relu")  # (n, T, 4d)
    M = R @ params["W2"] + params["b2"]  # (n, T, d)
    H2 = H1 + M  # (n, T, d)
    Hf = layernorm.forward(_norm(params, "f"), H2) if "gammaf" in params else H2  # (n, T, d)
    Z = Hf @ params["Wout"] + params["bout"]  # (n, T, V)
    return {"idx": idx, "E": E, "N1": N1, "A": A, "H1": H1, "N2": N2, "U": U, "R": R, "M": M, "H2": H2, "Hf": Hf,
            "Z": Z}  # fmt: skip


def predict(params: Params, X: Any) -> Any:
    """The character after each window: the largest logit at the last position.   Shapes::  X (n, T) -> (n,) int64"""
    xp = array_namespace(X)
    return xp.astype(xp.argmax(forward(params, X)["Z"][:, -1, :], axis=1), xp.int64)


def loss(params: Params, X: Any, Y: Any) -> Any:
    """Mean cross-entropy over the n * T positions.   Loss::  L = 1/(nT) sum_it (lse_it - Z_{it,y_it})   ->  ()"""
    Z = forward(params, X)["Z"]  # (n, T, V)
    return cross_entropy(_rows(Z), _rows(targets(indices(params, X), Y, Z.shape[-1])))


def backward(params: Params, X: Any, Y: Any) -> Params:
    """Back-propagation through the block, one step a line, from the loss back to E, then the parameters.

    Forward:: E = Etok[X] + Epos ;  N1 = LN1(E) ;  A = attn(N1) ;  H1 = E + A ;  N2 = LN2(H1)
              U = N2 W1 + b1 ;  R = relu(U) ;  M = R W2 + b2 ;  H2 = H1 + M ;  Hf = LNf(H2) ;  Z = Hf Wout + bout
              L = 1/(nT) sum_it (lse_it - Z_{it,y_it}),  y_it = X_{i,t+1} (t < T-1), Y_i (t = T-1)
    Chain::   dL/dZ  = (softmax(Z) - onehot(y)) / (nT)          (the softmax head, at every position)
              dL/dHf = dL/dZ @ Wout.T                           (dZ/dHf = Wout)
              dL/dH2 = LNf.backward(H2, dL/dHf)                 (layernorm twin; dL/dHf itself without LNf)
              dL/dM  = dL/dH2                                   (H2 = H1 + M: the branch gets dL/dH2 as it is)
              dL/dR  = dL/dM @ W2.T                             (dM/dR = W2)
              dL/dU  = dL/dR * [U > 0]                          (relu' = 1 where U > 0, 0 elsewhere)
              dL/dN2 = dL/dU @ W1.T                             (dU/dN2 = W1)
              dL/dH1 = dL/dH2 + LN2.backward(H1, dL/dN2)        (H1 reaches H2 by the residual and by the MLP)
              dL/dA  = dL/dH1                                   (H1 = E + A)
              dL/dN1 = attn.backward(N1, dL/dA)                 (attention twin: the causal mask, 1/sqrt(d))
              dL/dE  = dL/dH1 + LN1.backward(E, dL/dN1)         (E reaches H1 by the residual and by attention)
              dL/dWout = sum_it Hf_it.T dL/dZ_it ;  dL/dbout = sum_it dL/dZ_it
              dL/dgammaf = LNf.backward(H2, dL/dHf)[gamma] ;  dL/dbetaf = sum_it dL/dHf_it
              dL/dW2 = sum_it R_it.T dL/dM_it ;  dL/db2 = sum_it dL/dM_it
              dL/dW1 = sum_it N2_it.T dL/dU_it ;  dL/db1 = sum_it dL/dU_it
              dL/dgamma2 = LN2.backward(H1, dL/dN2)[gamma] ;  dL/dbeta2 = sum_it dL/dN2_it
              dL/dWq = attn.backward(N1, dL/dA)[Wq] ;  dL/dWk = attn.backward(N1, dL/dA)[Wk]
              dL/dWv = attn.backward(N1, dL/dA)[Wv] ;  dL/dWo = attn.backward(N1, dL/dA)[Wo]
              dL/dgamma1 = LN1.backward(E, dL/dN1)[gamma] ;  dL/dbeta1 = sum_it dL/dN1_it
              dL/dEpos = sum_i dL/dE_i                         (Epos is added to every window: summed over n)
              dL/dEtok = onehot(X).T @ dL/dE                    (embedding twin: repeated characters accumulate)
    Shapes::  X (n, T), Y (n,) int  ->  dZ (n, T, V), dHf dH2 dM (n, T, d), dR dU (n, T, 4d),
              dN2 dH1 dA dN1 dE (n, T, d), then each parameter's gradient of its shape
    """
    xp = array_namespace(X)
    fw = forward(params, X)
    n, T, V = fw["Z"].shape
    y = targets(fw["idx"], Y, V)  # (n, T) int64
    dZ = xp.reshape(cross_entropy_gradient(_rows(fw["Z"]), _rows(y)), (n, T, V))  # (n, T, V)  the softmax head
    dHf = dZ @ params["Wout"].T  # (n, T, d)  dZ/dHf = Wout
    lnf = layernorm.backward(_norm(params, "f"), fw["H2"], dHf) if "gammaf" in params else {"X": dHf}
    dH2 = lnf["X"]  # (n, T, d)  through the final layer norm
    dM = dH2  # (n, T, d)  H2 = H1 + M
    dR = dM @ params["W2"].T  # (n, T, 4d)  dM/dR = W2
    dU = dR * activation_derivative(fw["U"], fw["R"], "relu")  # (n, T, 4d)  relu'(U)
    dN2 = dU @ params["W1"].T  # (n, T, d)  dU/dN2 = W1
    ln2 = layernorm.backward(_norm(params, "2"), fw["H1"], dN2)  # dL/dH1 by the MLP branch, dgamma2, dbeta2
    dH1 = dH2 + ln2["X"]  # (n, T, d)  the residual path plus the MLP branch
    dA = dH1  # (n, T, d)  H1 = E + A
    att = attention.backward({k: params[k] for k in ATTENTION}, fw["N1"], dA)  # dN1, dWq, dWk, dWv, dWo
    dN1 = att["X"]  # (n, T, d)
    ln1 = layernorm.backward(_norm(params, "1"), fw["E"], dN1)  # dL/dE by the attention branch, dgamma1, dbeta1
    dE = dH1 + ln1["X"]  # (n, T, d)  the residual path plus the attention branch
    steps = {"Z": dZ, "Hf": dHf, "H2": dH2, "M": dM, "R": dR, "U": dU, "N2": dN2, "H1": dH1, "A": dA, "N1": dN1,
             "E": dE}  # fmt: skip
    if "gammaf" not in params:
        del steps["Hf"]  # no final norm: Hf is H2, and the autograd twin taps no Hf
    grads = {
        "Wout": _rows(fw["Hf"]).T @ _rows(dZ),  # (d, V)  dZ/dWout = Hf
        "bout": xp.sum(dZ, axis=(0, 1)),  # (V,)  dZ/dbout = 1
        "W2": _rows(fw["R"]).T @ _rows(dM),  # (4d, d)  dM/dW2 = R
        "b2": xp.sum(dM, axis=(0, 1)),  # (d,)
        "W1": _rows(fw["N2"]).T @ _rows(dU),  # (d, 4d)  dU/dW1 = N2
        "b1": xp.sum(dU, axis=(0, 1)),  # (4d,)
        "gamma2": ln2["gamma"],  # (d,)
        "beta2": ln2["beta"],  # (d,)
        **{k: att[k] for k in ATTENTION},  # (d, d) each
        "gamma1": ln1["gamma"],  # (d,)
        "beta1": ln1["beta"],  # (d,)
        "Epos": xp.sum(dE, axis=0),  # (T, d)  every window adds the same Epos
        "Etok": embedding.backward({"W": params["Etok"]}, fw["idx"], dE)["W"],  # (V, d)
    }
    if "gammaf" in params:
        grads |= {"gammaf": lnf["gamma"], "betaf": lnf["beta"]}  # (d,) each
    return {**steps, **{k: grads[k] for k in params}}


def gradients(params: Params, X: Any, Y: Any) -> Params:
    """dL/d(each parameter): the parameters' part of `backward`.   Shapes::  each of its parameter's shape"""
    steps = backward(params, X, Y)
    return {name: steps[name] for name in params}


def indices(params: Params, X: Any) -> Any:
    """X as int64 character indices, or one error: X must be (n, T) whole numbers in [0, V) (`layers.inputs`).

    Shapes::  X (n, T) float, Epos (T, d), Etok (V, d)  ->  (n, T) int64
    """
    T, V = params["Epos"].shape[0], params["Etok"].shape[0]
    return window_indices(X, V, T, "transformer", f"T = {T} (the rows of Epos): a window of character indices a row")


def targets(idx: Any, Y: Any, V: int) -> Any:
    """The character each position predicts: the next one in the window, Y after the last; or one error.

    Shapes::  idx (n, T) int64, Y (n,) int  ->  (n, T) int64,  y_it = idx_{i,t+1} (t < T - 1), Y_i (t = T - 1)
    """
    xp = array_namespace(idx)
    if Y.ndim != 1 or Y.shape[0] != idx.shape[0]:
        raise DataError(
            f"transformer: Y must be 1-D (n,) with n = {idx.shape[0]}, the rows of X; got shape {tuple(Y.shape)}"
        )
    bad = (Y != xp.floor(Y)) | (Y < 0) | (Y >= V) if xp.isdtype(Y.dtype, "real floating") else (Y < 0) | (Y >= V)
    if bool(xp.any(bad)):
        i = int(xp.nonzero(bad)[0][0])
        raise DataError(
            f"transformer: Y must hold character indices in [0, V) with V = {V}; got {Y[i].item()!r} at row {i}"
        )
    return xp.concat([idx[:, 1:], xp.astype(Y, xp.int64)[:, None]], axis=1)  # (n, T)


def _norm(params: Params, which: str) -> Params:
    """Layer norm `which`'s gamma and beta ('1', '2' or 'f') under the names the layer twin reads."""
    return {"gamma": params["gamma" + which], "beta": params["beta" + which]}


def _rows(A: Any) -> Any:
    """Every position of every window as one row.   Shapes::  (n, T, m) -> (n * T, m); (n, T) -> (n * T,)"""
    xp = array_namespace(A)
    return xp.reshape(A, (-1, A.shape[-1]) if A.ndim == 3 else (-1,))

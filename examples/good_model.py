"""A correct hand-derived gradient, for `gradtwin check --file examples/good_model.py`.

Logistic regression with mean binary cross-entropy:
    L = 1/n * sum_i [ log(1 + exp(z_i)) - Y_i z_i ],   z_i = X_i . w + b
    dL/dz_i = (sigmoid(z_i) - Y_i) / n,   dL/dw = X.T @ dL/dz,   dL/db = sum_i dL/dz_i
"""

import numpy as np
import torch


def sigmoid(z):
    e = np.exp(-np.abs(z))  # never overflows
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def manual_gradients(params, X, Y):
    n = X.shape[0]
    dz = (sigmoid(X @ params["w"] + params["b"]) - Y) / n  # (n,)
    return {"w": X.T @ dz, "b": np.sum(dz)}


def torch_loss(params, X, Y):
    z = X @ params["w"] + params["b"]
    return torch.nn.functional.binary_cross_entropy_with_logits(z, Y)


def make_problem():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((50, 3))
    Y = (rng.random(50) < 0.5).astype(float)
    return {"w": rng.standard_normal(3), "b": np.array(0.1)}, (X, Y)

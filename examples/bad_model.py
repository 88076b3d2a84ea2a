"""A wrong hand-derived gradient, for `gradtwin check --file examples/bad_model.py` (exits 1).

The same logistic regression as good_model.py, with two classic mistakes: dL/dw uses
Y - sigmoid(z) (the sign of the residual flipped) and dL/db sums where the loss takes a
mean (a lost 1/n). The report names both: opposite sign for w, n times for b.
"""

import numpy as np
import torch


def sigmoid(z):
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def manual_gradients(params, X, Y):
    n = X.shape[0]
    r = sigmoid(X @ params["w"] + params["b"]) - Y  # (n,)
    return {"w": X.T @ (-r) / n, "b": np.sum(r)}


def torch_loss(params, X, Y):
    z = X @ params["w"] + params["b"]
    return torch.nn.functional.binary_cross_entropy_with_logits(z, Y)


def make_problem():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((50, 3))
    Y = (rng.random(50) < 0.5).astype(float)
    return {"w": rng.standard_normal(3), "b": np.array(0.1)}, (X, Y)

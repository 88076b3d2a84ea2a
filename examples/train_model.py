"""Poisson regression, a model gradtwin does not ship: `gradtwin compare --file examples/train_model.py`.

Counts Y_i ~ Poisson(exp(z_i)), z_i = X_i . w + b; the loss is the mean negative log-likelihood
(without the constant log Y_i!):
    L = 1/n * sum_i [ exp(z_i) - Y_i z_i ]
    dL/dz_i = (exp(z_i) - Y_i) / n,   dL/dw = X.T @ dL/dz,   dL/db = sum_i dL/dz_i
    Shapes:  X (n, d), Y (n,), w (d,), b ()  ->  dw (d,), db ()
"""

import numpy as np
import torch

LR = 0.1  # compare's and train's defaults for this model (--lr, --iterations override them)
ITERATIONS = 500


def manual_loss(params, X, Y):
    z = X @ params["w"] + params["b"]  # (n,)
    return np.mean(np.exp(z) - Y * z)


def manual_gradients(params, X, Y):
    n = X.shape[0]
    dz = (np.exp(X @ params["w"] + params["b"]) - Y) / n  # (n,)
    return {"w": X.T @ dz, "b": np.sum(dz)}


def torch_loss(params, X, Y):
    z = X @ params["w"] + params["b"]
    return torch.nn.functional.poisson_nll_loss(z, Y, log_input=True)  # mean(exp(z) - Y z)


def make_problem():
    """200 counts drawn from exp(0.8 x1 - 0.5 x2 + 1); training starts from zeros."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 2))  # (n, d)
    Y = rng.poisson(np.exp(X @ np.array([0.8, -0.5]) + 1.0)).astype(float)  # (n,)
    return {"w": np.zeros(2), "b": np.array(0.0)}, (X, Y)

"""Training the classifiers: whole-history parity of the twins, convergence to independent references."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from conftest import CLASSIFIERS, DEVICES, DTYPES
from gradtwin.data import Dataset, synthetic_classes
from gradtwin.models import MODELS, Model, mlp
from gradtwin.parity.drift import drift_tolerance
from gradtwin.training import TrainResult, make_engine, train
from gradtwin.training.loop import _batches
from gradtwin.training.metrics import accuracy


def history_bound(model: Model, data: Dataset, run: TrainResult, batch_size: int | None, batch_seed: int) -> np.ndarray:
    """Bound on |manual - autograd| of every parameter after each recorded step (record_every=1).

    `parity.drift.drift_tolerance` for two twins, over the batches the run used: per step the
    two may differ by the step tolerance, and gradient descent with lr <= 2/L on a convex,
    L-smooth loss is nonexpansive (rho = 1), so the per-step bounds add up. For the mlp the loss
    is not convex: the same bound then asserts that the run did not amplify rounding differences,
    which is what its twins' histories being equal means.
    """
    assert np.array_equal(run.history.iteration, np.arange(run.history.iteration.size))  # every step recorded
    steps = run.history.iteration.size - 1
    batches = _batches(data.n, batch_size, batch_seed)
    rows = [None] * steps if batches is None else batches
    return drift_tolerance(model, run.history.params, data.X, data.Y, np.dtype(run.dtype), run.lr, rows)


def _smoothness(model: Model, data: Dataset) -> float:
    """L with every batch's loss Hessian <= L*I: c * max_i |[x_i, 1]|^2, c = 1/4 (logistic), 1/2 (softmax).

    The Hessian is a mean over rows of [x_i,1][x_i,1]^T times sigma(1 - sigma) <= 1/4, or times
    diag(p) - p p^T, whose largest eigenvalue is at most 1/2 (`Model.curvature` gives the whole
    data's). For every batch at once: a mean is at most its largest term.
    """
    c = 0.25 if model.name == "logistic" else 0.5
    Xt = np.hstack([data.X, np.ones((data.n, 1))])  # (n, d + 1)
    return c * float(np.max(np.sum(Xt**2, axis=1)))


def _twin_runs(
    model: Model, data: Dataset, lr: float, iterations: int, dtype: str, device: str, batch_size: int | None
) -> list[TrainResult]:
    return [
        train(make_engine(e, model, dtype, device), data, lr, iterations, batch_size=batch_size, batch_seed=5)
        for e in ("manual", "autograd")
    ]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("batch_size", [None, 16], ids=["full-batch", "mini-batch"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", CLASSIFIERS)
def test_whole_histories_agree(name: str, dtype: str, batch_size: int | None, device: str) -> None:
    """Both twins from the same start, same batches: every recorded step within the accumulated bound."""
    model = MODELS[name] if "activation" not in MODELS[name].options else mlp(8, MODELS[name].options["activation"])
    data = synthetic_classes(n=60, d=3, k=2 if name == "logistic" else 3, seed=2, scale=2.0)
    lr = 1.0 / _smoothness(model, data) if name in ("logistic", "softmax") else 0.5
    manual, autograd = _twin_runs(model, data, lr, 40, dtype, device, batch_size)
    assert manual.stop_reason == autograd.stop_reason == "iterations"
    np.testing.assert_array_equal(manual.history.iteration, autograd.history.iteration)
    bound = history_bound(model, data, manual, batch_size, batch_seed=5)
    travelled = max(float(np.max(np.abs(v[-1] - v[0]))) for v in manual.history.params.values())
    # the bound must be able to fail: a twin that went a tenth of the way elsewhere is caught
    # (worst-case float32 bounds through the mlp's layers are loose, about 2% of the way)
    assert bound[-1] < 0.1 * travelled
    for k in manual.history.params:
        diff = np.abs(manual.history.params[k] - autograd.history.params[k]).reshape(bound.size, -1).max(axis=1)
        worst = int(np.argmax(diff - bound))
        assert np.all(diff <= bound), f"{k}: step {worst} differs by {diff[worst]:.3g}, bound {bound[worst]:.3g}"
    assert manual.loss < manual.history.loss[0]  # and it did learn


def _hessian_min_eig(model: Model, params: dict[str, np.ndarray], data: Dataset) -> float:
    """Smallest eigenvalue of the loss's Hessian (softmax: on the sum-zero subspace, where it is identifiable)."""
    Xt = np.hstack([data.X, np.ones((data.n, 1))])  # (n, d + 1)
    if model.name == "logistic":
        s = 1.0 / (1.0 + np.exp(-(Xt @ np.append(params["w"], params["b"]))))  # (n,)
        return float(np.linalg.eigvalsh(Xt.T @ (Xt * (s * (1 - s))[:, None]) / data.n)[0])
    theta = np.vstack([params["W"], params["b"]])  # (d + 1, k)
    Z = Xt @ theta
    P = np.exp(Z - Z.max(axis=1, keepdims=True))
    P /= P.sum(axis=1, keepdims=True)  # (n, k)
    k = P.shape[1]
    H = sum(np.kron(np.outer(x, x), np.diag(p) - np.outer(p, p)) for x, p in zip(Xt, P, strict=True)) / data.n
    C = np.linalg.qr(np.eye(k) - 1.0 / k)[0][:, : k - 1]  # (k, k-1) orthonormal, columns sum to 0
    Q = np.kron(np.eye(Xt.shape[1]), C)  # vec of (d+1, k), row-major
    return float(np.linalg.eigvalsh(Q.T @ H @ Q)[0])


def _centred(model: Model, params: dict[str, np.ndarray]) -> np.ndarray:
    """The identifiable part of the parameters as one vector (softmax: minus each row's mean over classes)."""
    if model.name == "logistic":
        return np.append(params["w"], params["b"])
    theta = np.vstack([params["W"], params["b"]])
    return (theta - theta.mean(axis=1, keepdims=True)).ravel()


def _sklearn(model: Model, data: Dataset) -> dict[str, np.ndarray]:
    clf = LogisticRegression(C=np.inf, tol=1e-12, max_iter=100_000).fit(data.X, data.Y)  # no penalty
    if model.name == "logistic":
        return {"w": clf.coef_[0], "b": np.asarray(clf.intercept_[0])}
    return {"W": clf.coef_.T, "b": clf.intercept_}


@pytest.mark.parametrize("dtype", ["float64"])
@pytest.mark.parametrize("name", ["logistic", "softmax"])
def test_converges_to_sklearn_logistic_regression(name: str, dtype: str) -> None:
    """Gradient descent reaches scikit-learn's unpenalized maximum likelihood, within ||g|| / mu.

    On a mu-strongly convex loss |theta - theta*| <= |grad(theta)| / mu, for our iterate and
    for scikit-learn's alike, so they are within (|g_ours| + |g_sklearn|) / mu of each other.
    mu is the smallest Hessian eigenvalue at either point, halved to cover its change along
    the (tiny) segment between them. The data are drawn labels, not separable, so theta* exists.
    """
    model = MODELS[name]
    data = synthetic_classes(n=400, d=3, k=2 if name == "logistic" else 3, seed=4, scale=1.0)
    curvature = model.curvature(data.X)
    assert curvature is not None
    lr = 1.0 / curvature
    reference = _sklearn(model, data)
    for run in _twin_runs(model, data, lr, 3000, dtype, "cpu", None):
        g_ours = _centred(model, model.manual.gradients(run.params, data.X, data.Y))
        g_ref = _centred(model, model.manual.gradients(reference, data.X, data.Y))
        mu = 0.5 * min(_hessian_min_eig(model, run.params, data), _hessian_min_eig(model, reference, data))
        tol = (np.linalg.norm(g_ours) + np.linalg.norm(g_ref)) / mu + 1e-12
        assert tol < 1e-6, f"not converged enough to say anything: tolerance {tol:.3g}"
        gap = np.linalg.norm(_centred(model, run.params) - _centred(model, reference))
        assert gap <= tol, f"{run.engine}: |theta - theta_sklearn| = {gap:.3g} > {tol:.3g}"


@pytest.mark.slow
def test_mlp_learns_the_digits_in_both_twins() -> None:
    """The registered mlp at its defaults: >= 95% held out, in both twins, with equal histories."""
    model = MODELS["mlp"]
    data = model.default_data(standardized=True)
    assert data.test is not None
    manual, autograd = _twin_runs(model, data, model.default_lr, model.default_iterations, "float64", "cpu", None)
    for run in (manual, autograd):
        assert accuracy(make_engine(run.engine, model), run.params, data.test) >= 0.95
    bound = history_bound(model, data, manual, None, 0)
    for k in manual.history.params:
        diff = np.abs(manual.history.params[k] - autograd.history.params[k]).reshape(bound.size, -1).max(axis=1)
        assert np.all(diff <= bound), k


def test_labels_reach_both_twins_as_int64() -> None:
    """Labels are never cast to float on their way into an engine (autograd indexes with them)."""
    data = synthetic_classes(n=20, d=2, k=3, seed=0)
    assert data.Y.dtype == np.int64
    for name in ("manual", "autograd"):
        for dtype in DTYPES:
            Y = make_engine(name, MODELS["softmax"], dtype).asarray(data.Y)
            assert str(Y.dtype) in ("int64", "torch.int64")

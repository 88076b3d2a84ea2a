"""Diagnoses of tensor-shaped mistakes, each on a planted bug: broadcast sums, repeated rows, factors, variances."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from gradtwin import check_gradients, tap
from gradtwin.errors import UsageError
from gradtwin.parity import diagnose


def _mlp(seed: int = 0, n: int = 12, d: int = 3, h: int = 4) -> tuple[dict[str, np.ndarray], tuple[np.ndarray, ...]]:
    rng = np.random.default_rng(seed)
    X, Y = rng.normal(size=(n, d)), rng.normal(size=n)
    return {"W1": rng.normal(size=(d, h)), "b1": rng.normal(size=h), "W2": rng.normal(size=h), "b2": np.array(0.1)}, (
        X,
        Y,
    )


def mlp_loss(p: dict[str, torch.Tensor], X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    Z = tap("Z", X @ p["W1"] + p["b1"])  # (n, h)
    pred = torch.tanh(Z) @ p["W2"] + p["b2"]  # (n,)
    return ((pred - Y) ** 2).mean()


def mlp_grads(bug: str | None = None) -> Any:
    def grads(p: dict[str, Any], X: Any, Y: Any) -> dict[str, Any]:
        Z = X @ p["W1"] + p["b1"]  # (n, h)
        H = np.tanh(Z)  # (n, h)
        dpred = 2 * (H @ p["W2"] + p["b2"] - Y) / len(Y)  # (n,)
        dZ = np.outer(dpred, p["W2"]) * (1 - H**2)  # (n, h)
        out = {"W1": X.T @ dZ, "b1": dZ.sum(0), "W2": H.T @ dpred, "b2": dpred.sum(), "Z": dZ}
        if bug == "no sum b1":
            out["b1"] = dZ  # (n, h): the sum over the samples forgotten
        if bug == "no sum b2":
            out["b2"] = dpred  # (n,) for ()
        if bug == "wrong axis":
            out["b1"] = dZ.sum(1)  # over the hidden units, not the samples
        return out

    return grads


@pytest.mark.parametrize(("bug", "name", "axis"), [("no sum b1", "b1", "axis 0"), ("no sum b2", "b2", "axis 0")])
@pytest.mark.parametrize("method", ["exhaustive", "sampled"])
def test_a_missing_sum_over_a_broadcast_axis_is_named(bug: str, name: str, axis: str, method: str) -> None:
    params, data = _mlp()
    report = check_gradients(mlp_grads(bug), mlp_loss, params, data, method=method)
    row = next(p for p in report.params if p.name == name)
    assert not report.ok and not row.ok
    assert row.diagnosis is not None and row.diagnosis.startswith("a missing sum over a broadcast axis")
    assert f"broadcast over {axis}" in row.diagnosis and "summed there it agrees" in row.diagnosis
    assert all(p.ok for p in report.params if p.name != name)


def test_a_sum_over_the_wrong_axis_is_named() -> None:
    """Square (n == h): the shapes agree, the values do not; dL/dZ tapped tells which axis was summed."""
    params, data = _mlp(n=4, h=4)
    report = check_gradients(mlp_grads("wrong axis"), mlp_loss, params, data)
    row = next(p for p in report.params if p.name == "b1")
    assert not row.ok and "summed over the wrong axis" in (row.diagnosis or ""), row.diagnosis
    assert "dL/dZ summed over axis 1" in (row.diagnosis or "") and "broadcast over axis 0 of Z" in (row.diagnosis or "")


def test_a_sum_over_the_wrong_axis_of_another_length_is_a_shape_error_that_says_so() -> None:
    params, data = _mlp(n=12, h=4)
    with pytest.raises(UsageError, match=r"got \(12,\) \(an axis of length n = 12, the samples: summed over the wrong"):
        check_gradients(mlp_grads("wrong axis"), mlp_loss, params, data)


def _lookup_problem(seed: int = 0) -> tuple[dict[str, np.ndarray], tuple[np.ndarray, ...]]:
    rng = np.random.default_rng(seed)
    idx = np.array([0, 3, 3, 5, 1, 5, 5, 2, 6])  # rows 3 and 5 looked up more than once; 4 and 7 never
    return {"E": rng.normal(size=(8, 3)), "w": rng.normal(size=3)}, (idx, rng.normal(size=idx.size))


def lookup_loss(p: dict[str, torch.Tensor], idx: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    T = tap("T", p["E"][idx])  # (m, d): an embedding lookup
    return ((T @ p["w"] - Y) ** 2).mean()


def lookup_grads(accumulate: bool) -> Any:
    def grads(p: dict[str, Any], idx: Any, Y: Any) -> dict[str, Any]:
        T = p["E"][idx]  # (m, d)
        dpred = 2 * (T @ p["w"] - Y) / len(Y)  # (m,)
        dT = np.outer(dpred, p["w"])  # (m, d)
        dE = np.zeros_like(p["E"])
        if accumulate:
            np.add.at(dE, idx, dT)  # += for every use of a row
        else:
            dE[idx] = dT  # the bug: one contribution per row, the last
        return {"E": dE, "w": T.T @ dpred, "T": dT}

    return grads


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_assignment_where_accumulation_was_meant_is_named(dtype: str) -> None:
    params, data = _lookup_problem()
    assert check_gradients(lookup_grads(True), lookup_loss, params, data, dtype=dtype).ok
    report = check_gradients(lookup_grads(False), lookup_loss, params, data, dtype=dtype)
    row = next(p for p in report.params if p.name == "E")
    assert not row.ok and "only rows looked up more than once are wrong (rows 3, 5" in (row.diagnosis or "")
    assert "np.add.at" in (row.diagnosis or "")
    assert report.steps is not None and report.steps.ok  # dL/dT is right: the step from T to E is wrong
    assert report.steps.first_wrong == "dL/dT agrees; dL/dE does not: the mistake is in the step from T to E"


@pytest.mark.parametrize(
    ("k", "words"),
    [
        (2.0, "twice the true one"),
        (0.5, "half the true one"),
        (12.0, "n = 12 times the true one"),
        (1 / 12, "1/n = 1/12 times the true one"),
        (3.0, "3 times the true one: a factor 3 too many"),
        (1 / 3, "1/3 times the true one: a factor 3 lost"),
        (2 / 3, "2/3 times the true one"),
        (-3.0, "minus 3 times the true one"),
        (24.0, "2n = 24 times the true one"),
        (12 / 11, "n/(n-1) = 12/11 times the true one"),
        (11 / 12, "(n-1)/n = 11/12 times the true one"),
        (1.37101, "1.37101 times the true one: a constant factor is wrong"),
    ],
)
def test_a_constant_factor_is_named_k_times(k: float, words: str) -> None:
    rng = np.random.default_rng(0)
    r = rng.normal(size=(12, 3))
    tol = np.full(r.shape, 1e-14)
    said = diagnose.constant_ratio(k * r, r, tol, 12)
    assert said is not None and words in said, said


def test_a_factor_that_does_not_fit_every_element_is_not_named() -> None:
    rng = np.random.default_rng(1)
    r = rng.normal(size=(12, 3))
    h = 3.0 * r
    h[0, 0] *= 1.01
    assert diagnose.constant_ratio(h, r, np.full(r.shape, 1e-14), 12) is None


def test_a_factor_of_three_in_the_checker() -> None:
    params, data = _mlp()

    def tripled(p: dict[str, Any], X: Any, Y: Any) -> dict[str, Any]:
        g = mlp_grads()(p, X, Y)
        return {**g, "W2": 3 * g["W2"]}

    row = next(p for p in check_gradients(tripled, mlp_loss, params, data).params if p.name == "W2")
    assert not row.ok and "3 times the true one" in (row.diagnosis or "")


def variance_loss(unbiased: bool) -> Any:
    def loss(p: dict[str, torch.Tensor], X: torch.Tensor) -> torch.Tensor:
        Z = tap("Z", X @ p["W"])  # (n, h)
        m = len(X) - 1 if unbiased else len(X)
        v = tap("v", ((Z - Z.mean(0)) ** 2).sum(0) / m)  # (h,): the batch variance
        return torch.log(v + 1.0).mean()

    return loss


def variance_grads(forward_n: bool, backward_n: bool) -> Any:
    """dL/dZ = dv * 2 (Z - mean) / m with m = n or n - 1: the planted bug is the m that differs from the forward's."""

    def grads(p: dict[str, Any], X: Any) -> dict[str, Any]:
        n = len(X)
        Z = X @ p["W"]  # (n, h)
        Zc = Z - Z.mean(0)  # (n, h)
        v = (Zc**2).sum(0) / (n if forward_n else n - 1)  # (h,)
        dv = 1.0 / (v + 1.0) / v.size  # (h,)
        dZ = dv * 2 * Zc / (n if backward_n else n - 1)  # (n, h)
        return {"W": X.T @ dZ, "v": dv, "Z": dZ}

    return grads


@pytest.mark.parametrize(
    ("forward_n", "words"),
    [(True, "n/(n-1) = 12/11 times the true one"), (False, "(n-1)/n = 11/12 times the true one")],
)
def test_a_variance_with_n_against_n_minus_1_is_named_and_pinned_to_its_step(forward_n: bool, words: str) -> None:
    rng = np.random.default_rng(2)
    params, X = {"W": rng.normal(size=(3, 4))}, rng.normal(size=(12, 3))
    loss = variance_loss(unbiased=not forward_n)
    assert check_gradients(variance_grads(forward_n, forward_n), loss, params, (X,)).ok
    report = check_gradients(variance_grads(forward_n, not forward_n), loss, params, (X,))
    assert report.steps is not None
    assert report.steps.first_wrong == "dL/dv agrees; dL/dZ does not: the mistake is in the step from v to Z"
    step = next(s for s in report.steps.steps if s.name == "Z")
    assert words in (step.diagnosis or "") and "variance" in (step.diagnosis or "")
    assert words in (report.params[0].diagnosis or "")


def batchnorm_loss(p: dict[str, torch.Tensor], X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    Z = X @ p["W"]  # (n, h)
    xc = tap("xc", Z - Z.mean(0))  # (n, h)
    var = tap("var", (xc**2).mean(0))  # (h,): divided by n
    xhat = tap("xhat", xc / torch.sqrt(var + 1e-5))  # (n, h)
    return (((p["g"] * xhat + p["beta"]) @ p["w2"] - Y) ** 2).mean()


def batchnorm_grads(m_minus: int) -> Any:
    """The batch norm backward by hand; the variance's term divided by n - m_minus (1: the planted bug)."""

    def grads(p: dict[str, Any], X: Any, Y: Any) -> dict[str, Any]:
        n = len(X)
        Z = X @ p["W"]  # (n, h)
        xc = Z - Z.mean(0)  # (n, h)
        var = (xc**2).mean(0)  # (h,)
        std = np.sqrt(var + 1e-5)  # (h,)
        xhat = xc / std  # (n, h)
        out = p["g"] * xhat + p["beta"]  # (n, h)
        dpred = 2 * (out @ p["w2"] - Y) / n  # (n,)
        dout = np.outer(dpred, p["w2"])  # (n, h)
        dxhat = dout * p["g"]  # (n, h)
        dvar = (dxhat * xc).sum(0) * -0.5 * std**-3  # (h,)
        dxc = dxhat / std + dvar * 2 * xc / (n - m_minus)  # (n, h): the variance's term of three
        dZ = dxc - dxc.mean(0)  # (n, h)
        return {"W": X.T @ dZ, "g": (dout * xhat).sum(0), "beta": dout.sum(0), "w2": out.T @ dpred,
                "xc": dxc, "var": dvar, "xhat": dxhat}  # fmt: skip

    return grads


def test_a_batch_norm_variance_with_n_minus_1_is_pinned_to_the_step_from_the_variance() -> None:
    """In a full batch norm the factor n/(n-1) sits on one term of dL/dxc: not a constant, but the step is named."""
    rng = np.random.default_rng(3)
    params = {"W": rng.normal(size=(3, 4)), "g": rng.normal(size=4), "beta": rng.normal(size=4),
              "w2": rng.normal(size=4)}  # fmt: skip
    data = (rng.normal(size=(10, 3)), rng.normal(size=10))
    assert check_gradients(batchnorm_grads(0), batchnorm_loss, params, data).ok
    report = check_gradients(batchnorm_grads(1), batchnorm_loss, params, data)
    assert report.steps is not None and not report.ok
    assert report.steps.first_wrong == "dL/dvar agrees; dL/dxc does not: the mistake is in the step from var to xc"
    assert [p.name for p in report.params if not p.ok] == ["W"]

"""The exact-dynamics engine against the iterative twins, step by step; the lr sweep; the CLI."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gradtwin.cli import main
from gradtwin.data import Dataset, standardize
from gradtwin.errors import UsageError
from gradtwin.models import MODELS
from gradtwin.parity.drift import drift_tolerance
from gradtwin.training import ExactEngine, History, make_engine, train
from gradtwin.training.exact import Trajectory, statistics, sweep

REL = 1e-10  # the float64 agreement, relative to the size of the parameters and of the loss


def _relative_gap(a: History, b: History) -> tuple[float, float]:
    """max |dp| / max |p| over the whole run, and the largest per-iteration relative loss gap."""
    assert np.array_equal(a.iteration, b.iteration)
    p_gap = max(float(np.max(np.abs(a.params[k] - b.params[k]))) for k in a.params)
    p_size = max(float(np.max(np.abs(a.params[k]))) for k in a.params)
    loss_gap = float(np.max(np.abs(a.loss - b.loss) / np.abs(b.loss)))
    return p_gap / p_size, loss_gap


def _agree(model_name: str, data: Dataset, lr: float, iterations: int, seed: int | None = 0) -> None:
    model = MODELS[model_name]
    exact = train(make_engine("exact", model), data, lr, iterations, seed=seed)
    for twin in ("manual", "autograd"):
        run = train(make_engine(twin, model), data, lr, iterations, seed=seed)
        assert (run.iterations, run.stop_reason) == (exact.iterations, exact.stop_reason)
        p_rel, loss_rel = _relative_gap(exact.history, run.history)
        assert p_rel <= REL and loss_rel <= REL, (twin, p_rel, loss_rel)


@pytest.mark.parametrize("model", ["linear", "linear1d"])
@pytest.mark.parametrize("fraction", [0.3, 0.999, 1.0 / 0.999])  # slow, fast and oscillating, unstable
def test_exact_history_matches_the_twins_on_diabetes(model: str, fraction: float) -> None:
    m = MODELS[model]
    data = m.default_data(standardized=True)
    _agree(model, data, fraction * m.stable_lr(data.X), 400)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**31), n=st.integers(24, 200), d=st.integers(1, 8), fraction=st.floats(0.05, 0.99))
def test_exact_history_matches_the_twins_on_drawn_problems(seed: int, n: int, d: int, fraction: float) -> None:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)) @ rng.standard_normal((d, d)) + rng.standard_normal(d)  # correlated columns
    Y = X @ rng.standard_normal(d) + rng.standard_normal(n) + 5.0
    data = Dataset(X, Y, name="drawn")
    _agree("linear", data, fraction * MODELS["linear"].stable_lr(X), 150, seed=seed % 1000)


def _with_columns(X: np.ndarray) -> Dataset:
    rng = np.random.default_rng(2)
    return Dataset(X, X @ rng.standard_normal(X.shape[1]) + rng.standard_normal(X.shape[0]) + 3.0, name="made")


def test_singular_hessian_duplicate_columns() -> None:
    rng = np.random.default_rng(1)
    base = rng.standard_normal((300, 3))
    X = np.hstack([base, base[:, :1]])  # column 3 = column 0: H has an exact zero eigenvalue
    data = _with_columns(X)
    traj = ExactEngine(MODELS["linear"]).trajectory(data, MODELS["linear"].init_params(data, 0), 0.1)
    assert traj.zero.sum() == 1
    _agree("linear", data, 0.9 * MODELS["linear"].stable_lr(X), 300)


def test_near_singular_hessian() -> None:
    rng = np.random.default_rng(3)
    base = rng.standard_normal((300, 3))
    X = np.hstack([base, base[:, :1] + 1e-6 * rng.standard_normal((300, 1))])  # lam_min / lam_max ~ 1e-13
    data = _with_columns(X)
    traj = ExactEngine(MODELS["linear"]).trajectory(data, MODELS["linear"].init_params(data, 0), 0.1)
    assert traj.zero.sum() == 0 and traj.lam[0] / traj.lam[-1] < 1e-10
    _agree("linear", data, 0.9 * MODELS["linear"].stable_lr(X), 300)


def test_loss_near_the_optimum_keeps_its_digits() -> None:
    """After thousands of steps the loss is L* to many digits: no catastrophic cancellation."""
    m = MODELS["linear1d"]
    base = m.default_data(standardized=True)
    data = dataclasses.replace(base, Y=base.Y + 1e6)  # a large mean makes y.y huge
    _agree("linear1d", data, 0.9 * m.stable_lr(data.X), 2000)


def test_float32_twins_stay_within_the_derived_bound() -> None:
    """float32 twins vs the exact trajectory of the float32-rounded data: one implementation's drift in float32."""
    m = MODELS["linear"]
    data = m.default_data(standardized=True)
    X32, Y32 = (v.astype(np.float32).astype(np.float64) for v in (data.X, data.Y))  # the data the twins see
    lr, steps = 0.2, 200
    exact = train(make_engine("exact", m, "float32"), data, lr, steps, seed=0)
    for twin in ("manual", "autograd"):
        run = train(make_engine(twin, m, "float32"), data, lr, steps, seed=0)
        assert np.array_equal(run.history.iteration, np.arange(steps + 1))  # recorded at every step
        bound = drift_tolerance(m, run.history.params, X32, Y32, np.float32, lr, [None] * steps, implementations=1)
        gap = np.sqrt(
            np.sum((run.history.params["w"] - exact.history.params["w"]) ** 2, axis=1)
            + (run.history.params["b"] - exact.history.params["b"]) ** 2
        )
        size = np.sqrt(np.sum(exact.history.params["w"] ** 2, axis=1) + exact.history.params["b"] ** 2)
        assert np.all(gap <= bound + REL * size), twin
        assert gap.max() > 1e-9 * size.max()  # far above float64 rounding: the float32 error is really there


@pytest.mark.parametrize("rule", ["target_loss", "diverged"])
def test_stop_rules_stop_at_the_same_iteration(rule: str) -> None:
    m = MODELS["linear"]
    data = m.default_data(standardized=True)
    lr, target = (0.1, 2870.0) if rule == "target_loss" else (1.05 * m.stable_lr(data.X), None)
    runs = [train(make_engine(e, m), data, lr, 5000, target, record_every=10) for e in ("manual", "exact")]
    assert runs[0].stop_reason == runs[1].stop_reason == rule
    assert runs[0].iterations == runs[1].iterations
    assert runs[0].message == runs[1].message.replace("exact", "manual")
    np.testing.assert_array_equal(runs[0].history.iteration, runs[1].history.iteration)


def test_statistics_are_one_pass_merges_of_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(4)
    X = rng.standard_normal((1000, 3)) * [1, 10, 100] + [1e3, -5, 0]
    Y = rng.standard_normal(1000) + 7.0
    monkeypatch.setattr("gradtwin.training.exact.BLOCK_BYTES", 8 * (3 + 1) * 97)  # 97 rows a block, a short last block
    s = statistics(X, Y)
    Xc, Yc = X - X.mean(0), Y - Y.mean()
    np.testing.assert_allclose(s.S, Xc.T @ Xc, rtol=1e-12)
    np.testing.assert_allclose(s.s, Xc.T @ Yc, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose([s.syy, s.mean_y], [Yc @ Yc, Y.mean()], rtol=1e-12)


def test_sweep_marks_and_matches_training() -> None:
    m = MODELS["linear"]
    data = m.default_data(standardized=True)
    traj: Trajectory = ExactEngine(m).trajectory(data, m.init_params(data), 1.0)
    lam = np.linalg.eigvalsh(m.manual.hessian(data.X))
    lrs = np.array([0.01, 0.1, 0.2, 0.26])
    result = sweep(traj, lrs, 100)
    assert result.stable_bound == pytest.approx(2 / lam[-1], rel=1e-12)
    assert result.fastest_lr == pytest.approx(2 / (lam[0] + lam[-1]), rel=1e-9)
    assert result.stable.tolist() == [True, True, True, False]
    for lr, final in zip(lrs[:3], result.final_loss[:3], strict=True):
        run = train(make_engine("manual", m), data, float(lr), 100)
        assert abs(run.loss - final) <= REL * run.loss
    at_fastest = sweep(traj, np.array([result.fastest_lr]), 1).rate[0]
    assert at_fastest == pytest.approx((lam[-1] - lam[0]) / (lam[-1] + lam[0]), rel=1e-9)


def test_exact_engine_refuses_models_it_cannot_solve() -> None:
    others = [m for m in MODELS.values() if m.family not in ("linear", "linear1d")]  # cross-entropies, the mlps
    assert others
    for other in others:
        with pytest.raises(UsageError, match="engine 'exact' needs a linear model with squared error"):
            make_engine("exact", other)
    with pytest.raises(UsageError, match="engine must be one of manual, autograd, tape, exact; got 'fast'"):
        make_engine("fast", MODELS["mlp"])
    with pytest.raises(UsageError, match="full-batch"):
        linear = MODELS["linear"]
        train(make_engine("exact", linear), linear.default_data(standardized=True), 0.1, 10, batch_size=10)


def test_cli_sweep_and_exact_train(tmp_path, capsys) -> None:
    plot = tmp_path / "sweep.png"
    assert main(["sweep", "--lrs", "20", "--iterations", "50", "--json", "--plot", str(plot)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["lr"]) == 20 and out["stable_bound"] > out["fastest_lr"] > 0 and plot.stat().st_size > 0
    assert main(["sweep", "--plot", str(plot)]) == 2  # exists: refuses without --force
    assert "exists" in capsys.readouterr().err
    assert main(["train", "--model", "linear", "--engine", "exact", "--iterations", "20", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["engine"] == "exact"
    assert main(["train", "--model", "linear1d", "--engine", "exact", "--lr", "5", "--iterations", "20"]) == 3
    assert "diverged" in capsys.readouterr().err


def test_standardized_random_problem_from_registry() -> None:
    m = MODELS["linear"]
    data = standardize(m.random_data(np.random.default_rng(9)))
    assert data.n > data.X.shape[1] + 1  # not a perfect fit: the relative loss check applies
    _agree("linear", data, 0.5 * m.stable_lr(data.X), 100)


def test_weighted_exact_history_matches_the_weighted_twins() -> None:
    """Sample weights (zeros and integers among them): the exact engine's weighted statistics give
    the weighted twins' histories step by step, as unweighted data does."""
    rng = np.random.default_rng(5)
    X = rng.standard_normal((120, 4)) + 2.0
    Y = X @ rng.standard_normal(4) + rng.standard_normal(120)
    v = rng.integers(0, 4, size=120).astype(np.float64)
    model = MODELS["linear"]
    data = Dataset(X, Y, name="weighted", weight=v)
    lr = 0.9 * model.stable_lr(X, v)
    exact = train(ExactEngine(model), data, lr, 200, seed=0)
    for twin in ("manual", "autograd"):
        run = train(make_engine(twin, model), data, lr, 200, seed=0)
        p_rel, loss_rel = _relative_gap(exact.history, run.history)
        assert p_rel <= REL and loss_rel <= REL, (twin, p_rel, loss_rel)

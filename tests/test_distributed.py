"""Data-parallel training on 2 gloo processes equals one process, step by step, for every model.

One pair of processes (start-up is the cost) runs every case: model x twin x full batch
or mini-batch, on uneven shards (30% / 70% of the rows). Two comparisons, both derived:
- step by step from shared points: at every parameter vector of the single-process run,
  the distributed loss and gradients of that step's (global) batch agree with the single
  process's within 2 * gamma(K + ops) * sum|terms|, ops counting the all-reduce's extra
  roundings (`distributed.extra_roundings`); the bound holds for any summation order, so
  a sum split into two partial sums is covered;
- free runs (models with a constant Hessian): the whole histories agree within the drift
  bound of `trajectory.drift_tolerance`.
"""

from __future__ import annotations

import itertools
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from gradtwin.training import distributed
from gradtwin.cli import main
from gradtwin.training.factory import make_engine
from gradtwin.models import MODELS
from gradtwin.parity.rounding import ROUNDING_OPS
from gradtwin.parity.compare import compare
from gradtwin.training.loop import _batches, train
from gradtwin.parity.drift import drift_tolerance, gradient_tolerance

WORLD = 2
WEIGHTS = (0.3, 0.7)  # uneven shards
ITERATIONS = 12
BATCH = 64
OPS = ROUNDING_OPS + distributed.extra_roundings(WORLD)
CASES = [(m, e, b) for m in MODELS for e in ("manual", "autograd") for b in (None, BATCH)]


def _problem(model_name: str) -> tuple[Any, float, dict[str, np.ndarray]]:
    model = MODELS[model_name]
    data = model.default_data()
    stable = model.stable_lr(data.X)
    lr = 0.5 * stable if stable is not None and np.isfinite(stable) else 0.1
    return data, lr, model.init_params(data, seed=1)


def _single(case: tuple[str, str, int | None]) -> Any:
    name, engine, batch = case
    data, lr, init = _problem(name)
    eng = make_engine(engine, MODELS[name])
    return train(eng, data, lr, ITERATIONS, init=init, batch_size=batch, batch_seed=3)


def _steps(n: int, batch: int | None) -> list[np.ndarray | None]:
    batches = _batches(n, batch, 3)
    return [None if batches is None else next(batches) for _ in range(ITERATIONS)]


def _worker(out: str, histories: dict[Any, Any]) -> int:
    """One process: every case's distributed run, and its gradients at the single run's points."""
    distributed.setup("cpu")
    rank = distributed.rank()
    results = {}
    for case in CASES:
        name, engine, batch = case
        data, lr, init = _problem(name)
        shard = distributed.shard(data, rank, WORLD, WEIGHTS)
        eng = distributed.DistributedEngine(make_engine(engine, MODELS[name]), shard)
        run = train(eng, shard, lr, ITERATIONS, init=init, batch_size=batch, batch_seed=3)
        X, Y = eng.asarray(shard.X), eng.asarray(shard.Y)
        forced = []
        for t, rows in enumerate(_steps(data.n, batch)):
            params = eng.params({k: v[t] for k, v in histories[case].items()})
            Xb, Yb = (X, Y) if rows is None else (eng.take(X, rows), eng.take(Y, rows))
            loss, grads = eng.loss_and_gradients(params, Xb, Yb)
            forced.append((float(loss), {k: eng.to_numpy(g) for k, g in grads.items()}))
        results[case] = {"history": run.history, "params": run.params, "forced": forced}
    Path(out, f"rank{rank}.pkl").write_bytes(pickle.dumps(results))
    return 0


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    single = {case: _single(case) for case in CASES}
    out = tmp_path_factory.mktemp("distributed")
    histories = {case: single[case].history.params for case in CASES}
    assert distributed.spawn(WORLD, _worker, str(out), histories, limit=240) == 0
    ranks = [pickle.loads(Path(out, f"rank{r}.pkl").read_bytes()) for r in range(WORLD)]
    return {"single": single, "ranks": ranks}


def test_split_rows_covers_every_row_once() -> None:
    for n, world, weights in [(10, 3, None), (442, 2, WEIGHTS), (5, 4, None), (3, 2, (0.0, 1.0))]:
        bounds = distributed.split_rows(n, world, weights)
        assert bounds[0][0] == 0 and bounds[-1][1] == n
        assert all(a[1] == b[0] for a, b in itertools.pairwise(bounds))
    sizes = [b - a for a, b in distributed.split_rows(442, 2, WEIGHTS)]
    assert sizes == [133, 309]


def test_shard_missing_classes_keeps_the_whole_models_shapes() -> None:
    """wine is sorted by class: its first 30% holds class 0 only, yet the model has 3 classes."""
    model = MODELS["softmax"]
    data = model.default_data()
    first = distributed.shard(data, 0, WORLD, WEIGHTS)
    assert set(np.unique(first.Y)) == {0} and first.Y.dtype == np.int64
    assert model.param_shapes(first) == model.param_shapes(data) == {"W": (13, 3), "b": (3,)}
    assert distributed.shard(MODELS["linear1d"].default_data(), 0, WORLD).classes == 0


@pytest.mark.parametrize("case", CASES, ids=[f"{m}-{e}-{'mini' if b else 'full'}" for m, e, b in CASES])
def test_distributed_equals_single_step_by_step(runs: dict[str, Any], case: tuple[str, str, int | None]) -> None:
    name, _, batch = case
    model = MODELS[name]
    data, _lr, _ = _problem(name)
    single = runs["single"][case]
    steps = _steps(data.n, batch)
    eng = make_engine(case[1], model)
    worst: dict[str, float] = {}
    for t, rows in enumerate(steps):
        p_t = {k: v[t] for k, v in single.history.params.items()}
        Xb, Yb = (data.X, data.Y) if rows is None else (data.X[rows], data.Y[rows])
        loss, grads = eng.loss_and_gradients(eng.params(p_t), eng.asarray(Xb), eng.asarray(Yb))
        loss_tol, grad_tol = gradient_tolerance(model, p_t, Xb, Yb, np.float64, OPS)
        d_loss, d_grads = runs["ranks"][0][case]["forced"][t]
        checks = [compare("distributed vs single", "loss", d_loss, eng.to_numpy(loss), loss_tol, t)]
        checks += [compare("distributed vs single", k, d_grads[k], eng.to_numpy(grads[k]), grad_tol[k], t) for k in p_t]
        for c in checks:
            assert c.ok, c.message()
            worst[c.name] = max(worst.get(c.name, 0.0), c.max_abs_err)
    print(f"{name} {case[1]} {'mini' if batch else 'full'}-batch, step-by-step max abs diff: {worst}")


@pytest.mark.parametrize("case", CASES, ids=[f"{m}-{e}-{'mini' if b else 'full'}" for m, e, b in CASES])
def test_distributed_history_equals_single(runs: dict[str, Any], case: tuple[str, str, int | None]) -> None:
    name, _, batch = case
    model = MODELS[name]
    single = runs["single"][case]
    dist_run = [r[case] for r in runs["ranks"]]
    for k in single.params:  # every process ends with the same parameters, bit for bit
        np.testing.assert_array_equal(dist_run[0]["params"][k], dist_run[1]["params"][k])
    h_dist = dist_run[0]["history"]
    np.testing.assert_array_equal(h_dist.iteration, single.history.iteration)
    if getattr(model.manual, "hessian", None) is None:
        pytest.skip(f"{name} has no constant Hessian: compared step by step only")
    data, lr, _ = _problem(name)
    bound = drift_tolerance(model, single.history.params, data.X, data.Y, np.float64, lr, _steps(data.n, batch), OPS)
    for k, values in single.history.params.items():
        diff = np.abs(h_dist.params[k] - values).reshape(len(bound), -1).max(axis=1)
        assert np.all(diff <= bound), f"{k}: worst step {int(np.argmax(diff / bound))}, diff {diff.max():.3g}"
        rel = diff.max() / max(np.abs(values).max(), np.finfo(float).tiny)
        print(f"{name} {case[1]} {'mini' if batch else 'full'}-batch {k}: max abs diff {diff.max():.3g}, rel {rel:.3g}")


def test_cli_nproc_matches_one_process(capfd: pytest.CaptureFixture[str]) -> None:
    """`gradtwin train --nproc 2` (spawned processes, even shards) ends where one process does."""
    import json

    model = MODELS["linear1d"]
    data = model.default_data()
    single = train(make_engine("autograd", model), data, 0.1, 20)
    assert main(["train", "--iterations", "20", "--json", "--nproc", "2", "--engine", "autograd"]) == 0
    two = json.loads(capfd.readouterr().out)
    assert two["iterations"] == 20 and two["stop_reason"] == "iterations"
    bound = drift_tolerance(model, single.history.params, data.X, data.Y, np.float64, 0.1, [None] * 20, OPS)
    for k, v in single.params.items():
        assert abs(two["params"][k] - float(v)) <= bound[-1], (k, two["params"][k], float(v), bound[-1])


def _misbehave(how: str) -> int:
    """A worker for the launcher's own tests: rank 0 behaves as `how` says, rank 1 waits."""
    import os
    import time

    if os.environ["RANK"] == "0":
        if how == "raise":
            raise ValueError("boom in rank 0")
        if how == "exit 3":
            return 3
        if how == "hang":
            time.sleep(600)
        return 0
    time.sleep(600)  # a process that would wait for a collective forever
    return 0


def test_spawn_reports_a_raising_process_and_stops_the_other(capfd: pytest.CaptureFixture[str]) -> None:
    assert distributed.spawn(2, _misbehave, "raise", grace=1.0, limit=120) == 1
    assert "ValueError: boom in rank 0" in capfd.readouterr().err


def test_spawn_passes_on_an_exit_code_and_times_out_with_124() -> None:
    assert distributed.spawn(2, _misbehave, "exit 3", grace=1.0, limit=120) == 3
    assert distributed.spawn(1, _misbehave, "hang", limit=3.0) == 124


def _cuda_worker(out: str, world: int) -> int:
    """One NCCL process on its own GPU: linear1d, both twins, full batch, uneven shards."""
    device = distributed.setup("cuda")
    rank = distributed.rank()
    model = MODELS["linear1d"]
    data, lr, init = _problem("linear1d")
    shard = distributed.shard(data, rank, world, WEIGHTS[:world] if world == 2 else None)
    results = {}
    for engine in ("manual", "autograd"):
        eng = distributed.DistributedEngine(make_engine(engine, model, "float64", device), shard)
        results[engine] = train(eng, shard, lr, ITERATIONS, init=init).history
    Path(out, f"cuda{rank}.pkl").write_bytes(pickle.dumps(results))
    return 0


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_nccl_data_parallel_equals_single_cpu_process(tmp_path: Path) -> None:
    """NCCL on min(2, GPUs) processes, one GPU each, equals one cpu process within the drift bound."""
    world = min(2, torch.cuda.device_count())
    assert distributed.spawn(world, _cuda_worker, str(tmp_path), world, limit=240) == 0
    model = MODELS["linear1d"]
    data, lr, init = _problem("linear1d")
    ops = ROUNDING_OPS + distributed.extra_roundings(world)
    for engine in ("manual", "autograd"):
        single = train(make_engine(engine, model), data, lr, ITERATIONS, init=init).history
        got = pickle.loads(Path(tmp_path, "cuda0.pkl").read_bytes())[engine]
        bound = drift_tolerance(model, single.params, data.X, data.Y, np.float64, lr, [None] * ITERATIONS, ops)
        for k, values in single.params.items():
            diff = np.abs(got.params[k] - values)
            assert np.all(diff <= bound), f"{engine} {k}: max diff {diff.max():.3g}"
            print(f"nccl x{world} {engine} {k}: max abs diff vs cpu single process {diff.max():.3g}")

"""Data-parallel training on 2 gloo processes equals one process, step by step, for every model.

One pair of processes (start-up is the cost) runs every case: model x twin x full batch
or mini-batch, on uneven shards (30% / 70% of the rows). Two comparisons, both derived:
- step by step from shared points: at every parameter vector of the single-process run,
  the distributed loss and gradients of that step's (global) batch agree with the single
  process's within 2 * gamma(K + ops) * sum|terms|, ops counting the all-reduce's extra
  roundings (`distributed.extra_roundings`); the bound holds for any summation order, so
  a sum split into two partial sums is covered;
- free runs, every model: the whole histories agree within the drift bound of
  `parity.drift.drift_tolerance` (rho from the Hessian where it is constant, else 1).
The processes are started by `gradtwin.training.launch` (PyTorch's elastic agent), each running
tests/distributed_cases.py; the launcher's own failure paths and the CLI's `--nproc` are tested too.
"""

from __future__ import annotations

import itertools
import json
import os
import pickle
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from conftest import DEVICES
from distributed_cases import CASES, ITERATIONS, WEIGHTS, WORLD, command, problem, steps
from gradtwin.cli import main
from gradtwin.data import synthetic_linear1d
from gradtwin.errors import UsageError
from gradtwin.models import MODELS
from gradtwin.parity.compare import compare
from gradtwin.parity.drift import drift_tolerance, gradient_tolerance
from gradtwin.parity.rounding import ROUNDING_OPS
from gradtwin.training import distributed
from gradtwin.training.factory import make_engine
from gradtwin.training.launch import launch
from gradtwin.training.loop import train

OPS = ROUNDING_OPS + distributed.extra_roundings(WORLD)
LIMIT = 240  # seconds: no launch here may hang CI
EXACT = "--nproc runs the manual or autograd engine; the exact engine runs in one process"
TOO_MANY = "nproc 3 exceeds the 2 data rows; every process needs at least one row"


def _single(case: tuple[str, str, int | None]) -> Any:
    name, engine, batch = case
    data, lr, init = problem(name)
    eng = make_engine(engine, MODELS[name])
    return train(eng, data, lr, ITERATIONS, init=init, batch_size=batch, batch_seed=3)


def _pids(out: Path, world: int) -> list[int]:
    return [int(Path(out, f"pid{r}").read_text()) for r in range(world)]


def _stopped(pid: int) -> bool:
    """The process is gone (reaped by the launcher), not merely still running somewhere."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    single = {case: _single(case) for case in CASES}
    out = tmp_path_factory.mktemp("distributed")
    Path(out, "histories.pkl").write_bytes(pickle.dumps({case: single[case].history.params for case in CASES}))
    assert launch(WORLD, command("train", out), limit=LIMIT) == 0
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
    data, _lr, _ = problem(name)
    single = runs["single"][case]
    eng = make_engine(case[1], model)
    worst: dict[str, float] = {}
    for t, rows in enumerate(steps(data.n, batch)):
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
    data, lr, _ = problem(name)
    bound = drift_tolerance(model, single.history.params, data.X, data.Y, np.float64, lr, steps(data.n, batch), OPS)
    for k, values in single.history.params.items():
        diff = np.abs(h_dist.params[k] - values).reshape(len(bound), -1).max(axis=1)
        assert np.all(diff <= bound), f"{k}: worst step {int(np.argmax(diff / bound))}, diff {diff.max():.3g}"
        rel = diff.max() / max(np.abs(values).max(), np.finfo(float).tiny)
        print(f"{name} {case[1]} {'mini' if batch else 'full'}-batch {k}: max abs diff {diff.max():.3g}, rel {rel:.3g}")


def test_shard_refuses_a_process_without_rows_in_every_process() -> None:
    """Under torchrun (no launcher of ours to refuse up front) every process raises the same one-line error."""
    data = synthetic_linear1d(n=2, seed=0)
    for rank in range(3):
        with pytest.raises(UsageError) as raised:
            distributed.shard(data, rank, 3)
        assert str(raised.value) == TOO_MANY
    for rank in range(2):
        with pytest.raises(UsageError, match="leave process 0 none of the 3 data rows"):
            distributed.shard(synthetic_linear1d(n=3, seed=0), rank, 2, (0.0, 1.0))
    assert [distributed.shard(data, r, 2).X.shape[0] for r in range(2)] == [1, 1]  # one row each is enough


def test_cli_nproc_matches_one_process(capfd: pytest.CaptureFixture[str]) -> None:
    """`gradtwin train --nproc 2` (launched processes, even shards) ends where one process does."""
    model = MODELS["linear1d"]
    data = model.default_data()
    single = train(make_engine("autograd", model), data, 0.1, 20)
    assert main(["train", "--iterations", "20", "--json", "--nproc", "2", "--engine", "autograd"]) == 0
    captured = capfd.readouterr()
    two = json.loads(captured.out)
    assert captured.err == ""  # no log lines of the launcher's
    assert two["iterations"] == 20 and two["stop_reason"] == "iterations"
    bound = drift_tolerance(model, single.history.params, data.X, data.Y, np.float64, 0.1, [None] * 20, OPS)
    for k, v in single.params.items():
        assert abs(two["params"][k] - float(v)) <= bound[-1], (k, two["params"][k], float(v), bound[-1])


def test_cli_refuses_more_processes_than_rows_before_starting_any(capfd: pytest.CaptureFixture[str]) -> None:
    args = ["train", "--json", "--data", "synthetic", "--n", "2", "--iterations", "20", "--nproc", "3"]
    started = time.monotonic()
    assert main(args) == 2
    assert time.monotonic() - started < 20  # refused here, no processes started
    captured = capfd.readouterr()
    assert captured.out == ""
    assert captured.err == f"gradtwin: {TOO_MANY}\n"


def test_cli_refuses_the_exact_engine_on_several_processes(capfd: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--engine", "exact", "--nproc", "2", "--iterations", "20"]) == 2
    captured = capfd.readouterr()
    assert captured.out == ""
    assert captured.err == f"gradtwin: {EXACT}\n"


def test_cli_under_torchrun_refuses_more_processes_than_rows_without_tracebacks(
    capfd: pytest.CaptureFixture[str],
) -> None:
    """As under torchrun: the processes are started (RANK, WORLD_SIZE... set), each refuses, process 0 says so."""
    args = ["train", "--json", "--data", "synthetic", "--n", "2", "--iterations", "20"]
    assert launch(3, [sys.executable, "-m", "gradtwin", *args], limit=LIMIT) == 2
    captured = capfd.readouterr()
    assert captured.out == ""
    assert captured.err == f"gradtwin: {TOO_MANY}\n"


def test_cli_nproc_divergence_is_one_line_and_exit_3(capfd: pytest.CaptureFixture[str]) -> None:
    """Every process diverges at the same step; process 0 reports it, once, and the run's exit code is 3."""
    assert main(["train", "--nproc", "2", "--lr", "100", "--iterations", "20"]) == 3
    lines = capfd.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("gradtwin: manual: diverged at iteration"), lines


def test_launch_reports_a_raising_process_and_stops_the_other(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    started = time.monotonic()
    assert launch(2, command("raise", tmp_path), grace=1.0, limit=120) == 1
    assert time.monotonic() - started < 100  # the other process (asleep for 600 s) was stopped, not waited for
    err = capfd.readouterr().err
    assert "Traceback" in err and "ValueError: boom in rank 0" in err
    assert all(_stopped(pid) for pid in _pids(tmp_path, 2))


def test_launch_passes_on_an_exit_code_and_times_out_with_124(tmp_path: Path) -> None:
    exit3, hang = tmp_path / "exit3", tmp_path / "hang"
    exit3.mkdir()
    hang.mkdir()
    assert launch(2, command("exit3", exit3), grace=1.0, limit=120) == 3
    assert all(_stopped(pid) for pid in _pids(exit3, 2))
    started = time.monotonic()
    assert launch(1, command("hang", hang), limit=3.0) == 124
    assert time.monotonic() - started < 60  # stopped at the limit, not after its 600 s
    assert all(_stopped(pid) for pid in _pids(hang, 1))


@pytest.mark.parametrize("device", DEVICES)
def test_data_parallel_on_each_device_equals_single_cpu_process(tmp_path: Path, device: str) -> None:
    """gloo on 2 cpu processes; NCCL on min(2, GPUs) processes, one GPU each: equal to one cpu
    process within the drift bound."""
    world = WORLD if device == "cpu" else min(2, torch.cuda.device_count())
    assert launch(world, command(f"device:{device}", tmp_path), limit=LIMIT) == 0
    model = MODELS["linear1d"]
    data, lr, init = problem("linear1d")
    ops = ROUNDING_OPS + distributed.extra_roundings(world)
    for engine in ("manual", "autograd"):
        single = train(make_engine(engine, model), data, lr, ITERATIONS, init=init).history
        got = pickle.loads(Path(tmp_path, "device0.pkl").read_bytes())[engine]
        bound = drift_tolerance(model, single.params, data.X, data.Y, np.float64, lr, [None] * ITERATIONS, ops)
        for k, values in single.params.items():
            diff = np.abs(got.params[k] - values)
            assert np.all(diff <= bound), f"{engine} {k}: max diff {diff.max():.3g}"
            print(f"{device} x{world} {engine} {k}: max abs diff vs cpu single process {diff.max():.3g}")

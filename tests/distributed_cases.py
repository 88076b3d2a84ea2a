"""The worker processes of tests/test_distributed.py: `python tests/distributed_cases.py CASE OUT`.

`gradtwin.training.launch` starts this script in every process (a fresh interpreter, as
torchrun would), with RANK, WORLD_SIZE, MASTER_ADDR... in the environment. Each process writes
its pid to OUT/pid{rank} first (so a test can check that it was stopped), runs CASE and leaves
through `distributed.run_worker`: the case's result is the exit code, an exception a traceback
and status 1. Cases:
- train: every CASES run data-parallel on uneven shards, and the distributed loss and gradients
  at the single-process run's points (read from OUT/histories.pkl); writes OUT/rank{r}.pkl.
- device:DEVICE: linear1d, both twins, full batch, on DEVICE (NCCL on cuda); writes OUT/device{r}.pkl.
- raise, exit3, hang: rank 0 raises ValueError / returns 3 / sleeps; every other rank sleeps,
  as a process waiting for a collective that never completes would.
The problems and the cases are defined here once, for the workers and the tests alike.
"""

from __future__ import annotations

import os
import pickle
import sys
import time
from pathlib import Path
from typing import Any

if __name__ == "__main__":  # the pid first: importing gradtwin takes seconds, a test's limit may be shorter
    Path(sys.argv[2], f"pid{os.environ['RANK']}").write_text(str(os.getpid()))

import numpy as np

from gradtwin.models import MODELS
from gradtwin.training import distributed
from gradtwin.training.factory import make_engine
from gradtwin.training.loop import _batches, train

WORLD = 2
WEIGHTS = (0.3, 0.7)  # uneven shards
ITERATIONS = 12
BATCH = 64
# the tabular models: charmlp is refused (its batch norm couples the rows), and the drift bound of cnn and
# transformer, from scales derived per row at every step, takes minutes on their default data
CASES = [(m, e, b) for m in MODELS if MODELS[m].scales == "hand" for e in ("manual", "autograd") for b in (None, BATCH)]
SCRIPT = str(Path(__file__).resolve())


def command(case: str, out: Path | str) -> list[str]:
    """The command that runs `case` in each process, writing to `out`."""
    return [sys.executable, SCRIPT, case, str(out)]


def problem(model_name: str) -> tuple[Any, float, dict[str, np.ndarray]]:
    model = MODELS[model_name]
    data = model.default_data()
    stable = model.stable_lr(data.X)
    lr = 0.5 * stable if stable is not None and np.isfinite(stable) else 0.1
    return data, lr, model.init_params(data, seed=1)


def steps(n: int, batch: int | None) -> list[np.ndarray | None]:
    """The rows of each step's global batch (None: all), as the training loop draws them."""
    batches = _batches(n, batch, 3)
    return [None if batches is None else next(batches) for _ in range(ITERATIONS)]


def _train(out: Path) -> int:
    """One process: every case's distributed run, and its gradients at the single run's points."""
    histories = pickle.loads(Path(out, "histories.pkl").read_bytes())
    distributed.setup("cpu")
    rank = distributed.rank()
    results = {}
    for case in CASES:
        name, engine, batch = case
        data, lr, init = problem(name)
        shard = distributed.shard(data, rank, WORLD, WEIGHTS)
        eng = distributed.DistributedEngine(make_engine(engine, MODELS[name]), shard)
        run = train(eng, shard, lr, ITERATIONS, init=init, batch_size=batch, batch_seed=3)
        X, Y = eng.asarray(shard.X), eng.asarray(shard.Y)
        forced = []
        for t, rows in enumerate(steps(data.n, batch)):
            params = eng.params({k: v[t] for k, v in histories[case].items()})
            Xb, Yb = (X, Y) if rows is None else (eng.take(X, rows), eng.take(Y, rows))
            loss, grads = eng.loss_and_gradients(params, Xb, Yb)
            forced.append((float(loss), {k: eng.to_numpy(g) for k, g in grads.items()}))
        results[case] = {"history": run.history, "params": run.params, "forced": forced}
    Path(out, f"rank{rank}.pkl").write_bytes(pickle.dumps(results))
    return 0


def _device(out: Path, device: str) -> int:
    """One process on `device` (its own GPU with NCCL): linear1d, both twins, full batch, uneven shards."""
    device = distributed.setup(device)
    rank, world = distributed.rank(), distributed.world_size()
    model = MODELS["linear1d"]
    data, lr, init = problem("linear1d")
    shard = distributed.shard(data, rank, world, WEIGHTS if world == 2 else None)
    results = {}
    for engine in ("manual", "autograd"):
        eng = distributed.DistributedEngine(make_engine(engine, model, "float64", device), shard)
        results[engine] = train(eng, shard, lr, ITERATIONS, init=init).history
    Path(out, f"device{rank}.pkl").write_bytes(pickle.dumps(results))
    return 0


def _misbehave(how: str, out: Path) -> int:
    """Rank 0 behaves as `how` says; every other rank waits, as for a collective that never completes.

    Rank 0 first waits (at most a minute) until every process has written its pid, so that
    the test can check that each one was stopped.
    """
    if os.environ["RANK"] == "0":
        deadline = time.monotonic() + 60
        world = int(os.environ["WORLD_SIZE"])
        while not all(Path(out, f"pid{r}").exists() for r in range(world)) and time.monotonic() < deadline:
            time.sleep(0.05)
        if how == "raise":
            raise ValueError("boom in rank 0")
        if how == "exit3":
            return 3
        if how == "hang":
            time.sleep(600)
        return 0
    time.sleep(600)
    return 0


def run(case: str, out: Path) -> int:
    if case == "train":
        return _train(out)
    if case.startswith("device:"):
        return _device(out, case.removeprefix("device:"))
    return _misbehave(case, out)


if __name__ == "__main__":
    distributed.run_worker(run, sys.argv[1], Path(sys.argv[2]))

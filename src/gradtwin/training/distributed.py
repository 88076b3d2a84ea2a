"""Data-parallel training: each process holds a shard of the rows; an all-reduce averages.

Process r holds rows [offset_r, offset_r + n_r) of a data set of n rows, computes the mean
loss and gradients over the rows it holds, and the processes sum

    n_r * mean_r   (= the sum over process r's rows)   and   n_r

with one all-reduce. The average is exact whatever the shard sizes:

    sum_r n_r * mean_r / sum_r n_r  =  1/n * sum_i term_i  =  the single-process mean.

With sample weights, n_r is the sum of process r's weights and mean_r its weighted mean.

Mini-batches: every process draws the same global batch (the training loop's seeded
permutation of all n rows) and keeps the rows of it that it holds, so the global batch is
split across processes exactly as the data is, and a step equals the single-process step.
A process holding none of a batch's rows adds zeros. Every process holds at least one row
of the data (`shard` refuses more processes than rows). `DistributedEngine` wraps any engine
(either twin), so the one training loop runs unchanged; `Shard` is the data it is given.
Processes are started by `gradtwin.training.launch` (PyTorch's elastic agent) or torchrun.

Rounding: the sums in float64 of n_r * mean_r over W processes, the product by n_r and the
division by n add at most W + 1 roundings to each term's path; `extra_roundings` says so,
and `parity.tolerance` takes them as `ops`. The gamma(K) bound holds for any order of
summation, so splitting one sum into W partial sums needs nothing more.
"""

from __future__ import annotations

import atexit
import datetime
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import numpy as np
import torch
import torch.distributed as dist

from gradtwin.data import Dataset
from gradtwin.devices import torch_dtype
from gradtwin.errors import UsageError
from gradtwin.training.engines import Engine

TIMEOUT = datetime.timedelta(seconds=300)


def extra_roundings(world: int) -> int:
    """Roundings the all-reduce adds to a term: the product by n_r, W - 1 sums, one division."""
    return world + 1


def check_separable(model: Any) -> None:
    """Refuse a model whose loss is not a mean of one term per row: its shards would not sum to it."""
    if not model.rows_independent:
        raise UsageError(
            f"--nproc needs a loss that is a mean over rows; {model.name}'s batch norm takes its statistics over "
            "the whole batch, which a shard does not hold: train it in one process"
        )


def split_rows(n: int, world: int, weights: Sequence[float] | None = None) -> list[tuple[int, int]]:
    """Contiguous (start, stop) rows of each of `world` shards of n rows.

    Default: sizes differ by at most one row. `weights` gives the shards proportional sizes
    (rounded down, the remainder to the first shards), to test or balance uneven shards.
    """
    if world < 1:
        raise UsageError(f"world size must be >= 1; got {world}")
    if weights is None:
        weights = [1.0] * world
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (world,) or not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise UsageError(f"weights must be {world} finite numbers >= 0, not all 0; got {list(weights)!r}")
    sizes = np.floor(n * w / w.sum()).astype(np.int64)
    sizes[: n - int(sizes.sum())] += 1
    stops = np.cumsum(sizes)
    return [(int(stop - size), int(stop)) for size, stop in zip(sizes, stops, strict=True)]


@dataclass(frozen=True)
class Shard(Dataset):
    """This process's rows [offset, offset + len(X)) of a data set of `total` rows.

    `n` is the whole data set's size, so the training loop draws its mini-batches from all
    the rows, as a single process would; X and Y hold only this process's rows. `classes`
    (integer labels only, else 0) is the whole data set's class count, largest label + 1:
    a shard that holds none of some class still gets the whole model's parameter shapes.
    """

    offset: int = 0
    total: int = 0
    classes: int = 0

    @property
    def n(self) -> int:
        return self.total


class TooFewRows(UsageError):
    """A process would hold no rows. Every process raises it alike, so process 0 alone reports it."""


def check_rows(n: int, world: int) -> None:
    """Refuse more processes than data rows: every process needs at least one row (TooFewRows)."""
    if world > n:
        raise TooFewRows(f"nproc {world} exceeds the {n} data rows; every process needs at least one row")


def shard(data: Dataset, rank: int, world: int, weights: Sequence[float] | None = None) -> Shard:
    """Process `rank`'s contiguous shard of `data` (see `split_rows`).

    Every shard must hold at least one row: a run with more processes than rows, or with
    `weights` that leave a process none, is refused with the same UsageError in every
    process (each computes all the shards' bounds), so no process is left waiting.
    """
    check_rows(data.n, world)
    bounds = split_rows(data.n, world, weights)
    empty = [r for r, (a, b) in enumerate(bounds) if a == b]
    if empty:
        raise TooFewRows(
            f"shard weights {list(weights or [])} leave process {empty[0]} none of the {data.n} data rows; "
            "every process needs at least one row"
        )
    start, stop = bounds[rank]
    labels = np.issubdtype(data.Y.dtype, np.integer) and data.n > 0
    return Shard(
        data.X[start:stop],
        data.Y[start:stop],
        data.name,
        data.x_name,
        data.y_name,
        None if data.weight is None else data.weight[start:stop],
        data.standardized,
        offset=start,
        total=data.n,
        classes=int(np.max(data.Y)) + 1 if labels else 0,
    )


class DistributedEngine(Engine):
    """Wraps an engine: its loss and gradients are averaged over all processes' shards."""

    def __init__(self, inner: Engine, data: Shard, group: Any = None) -> None:
        if not (dist.is_available() and dist.is_initialized()):
            raise UsageError("DistributedEngine needs torch.distributed initialized (see gradtwin.distributed)")
        check_separable(inner.model)
        self.inner = inner
        self.model = inner.model
        self.dtype = inner.dtype
        self.device = inner.device
        self.name = inner.name
        self.use_torch = inner.use_torch
        self.group = group
        check_rows(data.total, dist.get_world_size(group))  # the same in every process, as `shard` checks
        self.start, self.stop = data.offset, data.offset + int(data.X.shape[0])
        nccl = dist.get_backend(group) == "nccl"
        self.comm_device = inner.device if nccl else torch.device("cpu")

    def asarray(self, values: np.ndarray) -> Any:
        return self.inner.asarray(values)

    def to_numpy(self, values: Any) -> np.ndarray:
        return self.inner.to_numpy(values)

    def params(self, params: dict[str, np.ndarray]) -> dict[str, Any]:
        return self.inner.params(params)

    def predict(self, params: dict[str, Any], X: Any) -> Any:
        return self.inner.predict(params, X)

    def take(self, values: Any, rows: np.ndarray) -> Any:
        """The rows of the global batch `rows` that this process holds, in local numbering."""
        mine = rows[(rows >= self.start) & (rows < self.stop)] - self.start
        return self.inner.take(values, mine)

    def loss(self, params: dict[str, Any], X: Any, Y: Any, weight: Any = None) -> Any:
        count = _mass(X, weight)
        value = self.inner.loss(params, X, Y, weight) if count else None
        return self._average(count, value, None, params)[0]

    def loss_and_gradients(
        self, params: dict[str, Any], X: Any, Y: Any, weight: Any = None
    ) -> tuple[Any, dict[str, Any]]:
        count = _mass(X, weight)
        value, grads = self.inner.loss_and_gradients(params, X, Y, weight) if count else (None, None)
        return self._average(count, value, grads if count else {}, params)

    def _average(
        self, count: float, value: Any, grads: dict[str, Any] | None, params: dict[str, Any]
    ) -> tuple[Any, dict[str, Any]]:
        """All-reduce [n_r * loss, n_r * grads..., n_r] in float64, then divide by the total.

        `grads` None: the loss only. A process with no rows or no weight (count 0) sends zeros.
        """
        shapes = {k: tuple(p.shape) for k, p in params.items()} if grads is not None else {}
        sizes = {k: int(np.prod(shape)) for k, shape in shapes.items()}
        if count:
            parts = [_flat64(value, self.comm_device)] + [_flat64(grads[k], self.comm_device) for k in shapes]  # type: ignore[index]
            buffer = torch.cat([*parts, torch.ones(1, dtype=torch.float64, device=self.comm_device)]) * float(count)
        else:
            buffer = torch.zeros(2 + sum(sizes.values()), dtype=torch.float64, device=self.comm_device)
        dist.all_reduce(buffer, group=self.group)  # (1 + params + 1,)
        mean = buffer[:-1] / buffer[-1]  # (1 + params,)
        out, at = {}, 1
        for k, shape in shapes.items():
            out[k] = self._like(mean[at : at + sizes[k]].reshape(shape))
            at += sizes[k]
        return self._like(mean[0].reshape(())), out

    def _like(self, values: torch.Tensor) -> Any:
        """`values` (float64) as an array of the inner engine: its dtype, device and library."""
        if self.inner.use_torch:
            return values.to(device=self.inner.device, dtype=torch_dtype(self.dtype))
        return self.inner.asarray(values.cpu().numpy())


def _mass(X: Any, weight: Any) -> float:
    """n_r: the rows this process holds, or the sum of their weights."""
    if weight is None:
        return float(X.shape[0])
    return float(weight.sum()) if X.shape[0] else 0.0


def _flat64(values: Any, device: torch.device) -> torch.Tensor:
    if isinstance(values, torch.Tensor):
        return values.detach().reshape(-1).to(device=device, dtype=torch.float64)
    return torch.from_numpy(np.asarray(values, dtype=np.float64).reshape(-1)).to(device)


def setup(device: str) -> str:
    """Join the process group that torchrun (or `launch`) describes in the environment.

    Without WORLD_SIZE in the environment this is one process and nothing happens. The
    backend is NCCL when the run is on CUDA (each process on GPU LOCAL_RANK), gloo
    otherwise. Returns the device this process computes on.
    """
    env = os.environ
    if "WORLD_SIZE" not in env:
        return device
    try:
        rank, world = int(env["RANK"]), int(env["WORLD_SIZE"])
        local = int(env.get("LOCAL_RANK", rank))
    except (KeyError, ValueError):
        raise UsageError("WORLD_SIZE is set, so RANK and LOCAL_RANK must be integers too (as torchrun sets)") from None
    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if cuda:
        device = f"cuda:{local}"
        torch.cuda.set_device(local)  # NCCL builds its communicator on the current device
    if not dist.is_initialized():
        backend = "nccl" if cuda else "gloo"
        dist.init_process_group(backend, init_method="env://", rank=rank, world_size=world, timeout=TIMEOUT)
        atexit.register(_destroy_group)
    return device


def _destroy_group() -> None:
    """At exit: end the process group, so that its threads stop before the interpreter's teardown.

    A script that leaves with the group alive can be aborted in teardown ("terminate called
    without an active exception", exit 134) while gloo's threads still run.
    """
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def rank() -> int:
    """This process's rank, 0 outside a process group."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    """How many processes train together, 1 outside a process group."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def run_worker(fn: Callable[..., Any], *args: Any) -> NoReturn:
    """Run fn(*args) as this worker process's whole work, then end the process with its exit code.

    fn's result (or SystemExit's code) is the exit code: None and 0 are success. An
    exception is printed with its traceback and gives exit status 1. See `leave`.
    """
    code = 1
    try:
        code = _exit_code(fn(*args))
    except SystemExit as stop:
        code = _exit_code(stop.code)
    except BaseException:
        traceback.print_exc()
    finally:
        leave(code)


def leave(code: int) -> NoReturn:
    """End this process now with exit status `code`, skipping the interpreter's teardown.

    The teardown (a full garbage collection after torch, scikit-learn and SciPy) can hold a
    finished process for seconds to minutes on a loaded machine; the exit handlers still run
    and output is flushed, so nothing is lost. The process group is destroyed (by the exit
    handler `setup` registers) after a success only: after a failure another process may be
    stuck in a collective that would never end.
    """
    try:
        if code != 0:  # `setup` ends the group at exit; not after a failure (see above)
            atexit.unregister(_destroy_group)
    finally:
        try:
            atexit._run_exitfuncs()
        finally:
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except (OSError, ValueError):  # closed, or a broken pipe: nothing left to say
                    pass
            os._exit(code)


def _exit_code(value: Any) -> int:
    """A process exit status from fn's result or SystemExit's code: None and 0 are success."""
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    print(value, file=sys.stderr)  # as SystemExit("message") does
    return 1

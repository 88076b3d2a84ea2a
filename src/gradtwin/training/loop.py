"""The one training loop: full-batch gradient descent, stop rules, history, divergence."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from gradtwin import validate
from gradtwin.data import Dataset, as_real
from gradtwin.devices import synchronize
from gradtwin.errors import DataError, UsageError
from gradtwin.training.engines import Engine, Gradients, update
from gradtwin.training.exact import ExactEngine


@dataclass
class History:
    """Recorded iterations: row j holds the parameters and loss after `iteration[j]` updates."""

    iteration: np.ndarray  # (rows,) int64
    loss: np.ndarray  # (rows,) float64
    params: dict[str, np.ndarray]  # name -> (rows, *shape) float64


@dataclass
class TrainResult:
    """What a run ends with and why it stopped; `message` explains a divergence."""

    model: str
    engine: str
    device: str
    dtype: str
    lr: float
    params: dict[str, np.ndarray]
    loss: float
    iterations: int
    stop_reason: str
    seconds: float
    history: History
    message: str = ""
    stable_lr: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def seconds_per_iteration(self) -> float:
        return self.seconds / max(self.iterations, 1)


def _check_options(
    iterations: int, target_loss: float | None, record_every: int, divergence_factor: float, check_every: int,
    batch_size: int | None,
) -> None:  # fmt: skip
    validate.whole(iterations, "iterations")
    validate.finite_at_least(target_loss, "target_loss", allow_none=True)
    validate.whole(record_every, "record_every")
    validate.finite_at_least(divergence_factor, "divergence_factor", 1.0, strict=True)
    validate.whole(check_every, "check_every")
    if batch_size is not None:
        validate.whole(batch_size, "batch_size")


def _check_inputs(
    engine: Engine | ExactEngine, data: Dataset, init: dict[str, Any] | None, seed: int | None
) -> dict[str, Any]:
    """Refuse what train() cannot use, once, before the loop; return the starting parameters."""
    if not isinstance(engine, (Engine, ExactEngine)):
        raise TypeError(f"engine must be a gradtwin Engine (make_engine(name, model)); got {type(engine).__name__}")
    if not isinstance(data, Dataset):
        raise TypeError(f"data must be a gradtwin Dataset (Dataset(X, Y, name)); got {type(data).__name__}")
    model = engine.model
    model.check_data(data)
    validate.whole(seed, "seed", 0, allow_none=True)
    _check_range(data, engine.dtype)
    if init is None:
        return model.init_params(data, seed)
    return _check_init(init, model.param_shapes(data), model.name)


def _check_init(init: Any, shapes: dict[str, tuple[int, ...]], model: str) -> dict[str, np.ndarray]:
    """`init` as float64 arrays, refusing missing or extra names, wrong shapes and non-finite values."""
    if not isinstance(init, dict) or set(init) != set(shapes):
        got = ", ".join(map(str, init)) if isinstance(init, dict) else type(init).__name__
        raise UsageError(f"init must give {model}'s parameters {', '.join(shapes)}; got {got or 'none'}")
    checked = {}
    for name, shape in shapes.items():
        value = as_real(init[name], f"init[{name!r}]", model)
        if value.shape != tuple(shape):
            raise UsageError(f"init[{name!r}] must have shape {tuple(shape)}; got shape {value.shape}")
        if not np.all(np.isfinite(value)):
            raise UsageError(f"init[{name!r}] must be finite; got {value.tolist()}")
        checked[name] = value
    return checked


def _check_range(data: Dataset, dtype: str) -> None:
    """Refuse data that overflows the engine's dtype: a float32 run would start from inf."""
    try:
        limit = float(np.finfo(dtype).max)
    except (TypeError, ValueError):  # a dtype NumPy does not know: nothing to compare against here
        return
    if limit >= float(np.finfo(np.float64).max):
        return  # data sets hold finite float64 already
    for label, values in (("X", data.X), ("Y", data.Y)):
        # max and min read the data without an n-sized temporary; only a failure looks further
        if values.size == 0 or max(abs(float(values.max())), abs(float(values.min()))) <= limit:
            continue
        big = np.abs(values) > limit
        if big.any():
            row = int(np.argwhere(big)[0][0])
            raise DataError(
                f"{data.name}: {label} holds {values[big][0]:g} at row {row} (counting from 0), beyond {dtype}'s range "
                f"(+-{limit:.3g}); use float64"
            )


def _no_change_rule(tol: float | None, patience: int, data: Dataset, batch_size: int | None) -> NoChange | None:
    """The convergence rule for `tol` (None: no rule), with the batch sizes of one epoch of mini-batches."""
    validate.finite_at_least(tol, "tol", allow_none=True)
    validate.whole(patience, "n_iter_no_change")
    if tol is None:
        return None
    if batch_size is None or batch_size >= data.n:
        return NoChange(float(tol), patience)
    sizes = np.diff(np.append(np.arange(0, data.n, batch_size), data.n))  # (batches,) rows of each batch
    return NoChange(float(tol), patience, sizes)


def _allocate_recorder(rows: int, params: dict[str, Any]) -> _Recorder:
    try:
        return _Recorder(rows, params)
    except (MemoryError, ValueError):  # numpy says ValueError for sizes beyond its index range
        raise UsageError(
            f"recording {rows} iterations does not fit in memory; raise record_every or lower iterations"
        ) from None


def _batches(n: int, batch_size: int | None, seed: int) -> Iterator[np.ndarray] | None:
    """Row indices of successive mini-batches, a fresh seeded permutation each epoch."""
    if batch_size is None or batch_size >= n:
        return None

    def generate() -> Iterator[np.ndarray]:
        rng = np.random.default_rng(seed)
        while True:
            order = rng.permutation(n)
            for start in range(0, n, batch_size):
                yield order[start : start + batch_size]

    return generate()


class _Batches:
    """Mini-batch gradients: each call takes the next batch's rows of X, Y and the weights."""

    def __init__(self, engine: Engine, params: dict[str, Any], X: Any, Y: Any, V: Any, batches: Iterator[np.ndarray]):
        self.engine, self.params, self.X, self.Y, self.V, self.batches = engine, params, X, Y, V, batches

    def loss_and_gradients(self) -> tuple[Any, dict[str, Any]]:
        rows = next(self.batches)
        e = self.engine
        return e.loss_and_gradients(self.params, e.take(self.X, rows), e.take(self.Y, rows), e.take(self.V, rows))

    def loss(self) -> Any:
        return self.engine.loss(self.params, self.X, self.Y, self.V)


def _step(gradients: Gradients, params: dict[str, Any], lr: float) -> Any:
    """One iteration: the loss and gradients at `params`, then the one update; returns that loss."""
    value, grads = gradients.loss_and_gradients()
    update(params, grads, lr)
    return value


def first_stop(losses: np.ndarray, first_loss: float, target_loss: float | None, divergence_factor: float) -> int:
    """Index of the first loss that stops a run (-1 if none): the loop's rules, vectorised.

    Diverged: not finite, or above divergence_factor * max(first_loss, tiny); reached the
    target: at or below target_loss. Shared by the chunked loop and the exact engine, so both
    stop where a loop checking every step would.
    """
    limit = divergence_factor * max(first_loss, np.finfo(np.float64).tiny)
    with np.errstate(invalid="ignore"):
        stop = ~np.isfinite(losses) | (losses > limit)
        if target_loss is not None:
            stop |= losses <= target_loss
    hits = np.flatnonzero(stop)
    return int(hits[0]) if hits.size else -1


def _stop_reason(loss: float, first_loss: float, target_loss: float | None, divergence_factor: float) -> str:
    if first_stop(np.asarray([loss]), first_loss, None, divergence_factor) == 0:
        return "diverged"
    if target_loss is not None and loss <= target_loss:
        return "target_loss"
    return "iterations"


class NoChange:
    """scikit-learn's tol rule: stop once `patience` epochs in a row each fail to beat the best loss by `tol`.

    Epoch e counts as no change when loss_e > min(loss_0 .. loss_{e-1}) - tol (tol absolute,
    in the loss's units; loss_0 only sets the best). Full-batch, an epoch is one iteration and
    iteration i's loss (at the parameters after i updates) decides at i. With mini-batches of
    rows `sizes` (one epoch), an epoch's loss is the row-weighted mean of its batch losses and
    decides at the iteration that follows it, so a stop falls between whole epochs.
    `scan(start, losses)` feeds iterations start, start + 1, ... and returns the iteration at
    which the rule fires, or -1; it keeps its state, so chunks can be fed in order.
    """

    def __init__(self, tol: float, patience: int, sizes: np.ndarray | None = None) -> None:
        self.tol, self.patience = tol, patience
        self.weights = None if sizes is None else np.asarray(sizes, dtype=np.float64) / np.sum(sizes)  # (batches,)
        self.best, self.count, self.fired = math.inf, 0, -1
        self.batch: list[float] = []  # the current epoch's batch losses

    def state(self) -> tuple[float, int, int, list[float]]:
        return self.best, self.count, self.fired, list(self.batch)

    def restore(self, state: tuple[float, int, int, list[float]]) -> None:
        self.best, self.count, self.fired, batch = state
        self.batch = list(batch)

    def scan(self, start: int, losses: np.ndarray) -> int:
        if self.fired >= 0:
            return self.fired
        if self.weights is None:
            return self._scan_epochs(start, np.asarray(losses, dtype=np.float64))
        for j, value in enumerate(np.asarray(losses, dtype=np.float64), start):
            if j > 0 and j % self.weights.size == 0:  # the epoch that ended at j decides here
                epoch = float(np.dot(self.weights, self.batch))
                self.batch = []
                if self._scan_epochs(j, np.asarray([epoch])) >= 0:
                    return j
            self.batch.append(float(value))
        return -1

    def _scan_epochs(self, start: int, losses: np.ndarray) -> int:
        """The rule over consecutive epoch losses (m,), vectorised: the same as one comparison at a time."""
        if losses.size == 0:
            return -1
        before = np.fmin.accumulate(np.concatenate([[self.best], losses[:-1]]))  # (m,) best before each, NaN skipped
        with np.errstate(invalid="ignore"):
            stalled = losses > before - self.tol  # (m,) NaN or inf - inf compare False: a change
        index = np.arange(losses.size)
        last_change = np.maximum.accumulate(np.where(stalled, -1, index))  # (m,)
        run = index - last_change + np.where(last_change < 0, self.count, 0)  # (m,) stalled epochs in a row
        hits = np.flatnonzero(run >= self.patience)
        if hits.size:
            self.fired = start + int(hits[0])
            return self.fired
        self.best, self.count = float(np.fmin(self.best, np.nanmin(losses, initial=math.inf))), int(run[-1])
        return -1


class _Recorder:
    """The history rows, kept where the parameters live until the run ends (no host sync).

    Parameters in host memory (NumPy arrays, cpu tensors) go straight into preallocated
    (rows, *shape) NumPy arrays; those on an accelerator are cloned on their device and stacked
    once at the end. Either way the storage is the recorded rows times the parameters. (A clone
    kept per row on the cpu would leave small blocks among the step's temporaries, and glibc
    then returns and refetches their memory every step: a fifth of an autograd step at 10,000 x 16.)
    """

    def __init__(self, rows: int, params: dict[str, Any]) -> None:
        self.on_host = all(_in_host_memory(p) for p in params.values())
        self.iteration = np.zeros(rows, dtype=np.int64)
        self.loss = np.zeros(rows)
        self.host: dict[str, np.ndarray] = {}
        self.device: dict[str, list[torch.Tensor]] = {}
        if self.on_host:
            self.host = {k: np.zeros((rows, *p.shape), dtype=_host_dtype(p)) for k, p in params.items()}
        else:
            self.device = {k: [] for k in params}
        self.rows = 0

    def record(self, i: int, params: dict[str, Any]) -> int:
        row = self.rows
        self.iteration[row] = i
        if self.on_host:
            for k, p in params.items():
                self.host[k][row] = p.detach().numpy() if isinstance(p, torch.Tensor) else p
        else:
            for k, p in params.items():
                self.device[k].append(p.detach().clone())
        self.rows += 1
        return row

    def truncate(self, rows: int) -> None:
        self.rows = rows
        for values in self.device.values():
            del values[rows:]

    def history(self) -> History:
        n = self.rows
        if self.on_host:
            params = {k: v[:n].astype(np.float64) for k, v in self.host.items()}
        else:
            params = {k: torch.stack(v).cpu().numpy().astype(np.float64) for k, v in self.device.items()}
        return History(self.iteration[:n], self.loss[:n], params)


def _in_host_memory(p: Any) -> bool:
    return not isinstance(p, torch.Tensor) or p.device.type == "cpu"


def _host_dtype(p: Any) -> np.dtype:
    return p.detach().numpy().dtype if isinstance(p, torch.Tensor) else np.asarray(p).dtype


def _host(values: list[Any]) -> np.ndarray:
    """Backend scalars to one float64 NumPy array: a single device-to-host copy for torch."""
    if values and isinstance(values[0], torch.Tensor):
        return torch.stack(values).detach().cpu().numpy().astype(np.float64)
    return np.asarray(values, dtype=np.float64)


def _all_finite(params: dict[str, Any]) -> bool:
    for p in params.values():
        ok = torch.isfinite(p).all().item() if isinstance(p, torch.Tensor) else np.isfinite(p).all()
        if not ok:
            return False
    return True


def train(
    engine: Engine | ExactEngine,
    data: Dataset,
    lr: float,
    iterations: int = 1000,
    target_loss: float | None = None,
    init: dict[str, np.ndarray] | None = None,
    seed: int | None = None,
    record_every: int = 1,
    divergence_factor: float = 1e6,
    progress: Callable[[int], None] | None = None,
    batch_size: int | None = None,
    batch_seed: int = 0,
    check_every: int = 64,
    tol: float | None = None,
    n_iter_no_change: int = 5,
) -> TrainResult:
    """Full-batch gradient descent from `init` (default: zeros, or seeded normals if `seed`).

    Each iteration i evaluates the loss and gradients at the parameters after i updates,
    records them (every `record_every`-th iteration, and always the last), checks the stop
    rules, then steps. It stops when `iterations` updates are done, when the loss is at or
    below `target_loss`, or when the run diverges: a non-finite loss or parameter, or a loss
    above `divergence_factor` times its starting value (a loss can climb to 1e87 without
    turning non-finite). `progress(k)` is called with the number of iterations done since
    its last call, after every checked chunk (every step when checking every step), so the
    counts sum to the iterations done; a bar given it decides by time when to redraw.

    The stop rules are checked every `check_every` iterations, from losses kept where the
    engine computes them (one device-to-host copy per check, none per step). When a check
    finds a stop inside its chunk, the run is rolled back to the chunk's start and replayed
    one checked step at a time, so the result is identical to checking every step: the same
    stopping iteration, parameters, history and message.

    Mini-batches: with `batch_size` below n, iteration i uses the next `batch_size` rows of
    a permutation drawn per epoch from `batch_seed` (the last batch of an epoch may be
    shorter), so two engines given the same seed see the same batches in the same order.
    The recorded loss of such an iteration is that of its batch; the final row's loss, and
    `TrainResult.loss`, are over all the data. Mini-batch runs check every step.

    Convergence (scikit-learn's SGD rule, `NoChange`): with `tol` set, the run also stops,
    with stop_reason "converged", once `n_iter_no_change` epochs in a row have each failed to
    lower the best loss so far by `tol` (absolute, in the loss's units). Full-batch an epoch is
    one iteration; with mini-batches it is a pass over the data, its loss the row-weighted
    mean of its batch losses, and a stop falls between epochs. The final loss (after the last
    update) is checked too, so a run that converges at its last iteration says "converged".

    An engine with a closed form for the whole trajectory (`exact`) computes it instead of
    stepping, under the same stop rules.
    """
    lr = validate.positive_finite(lr, "lr")
    _check_options(iterations, target_loss, record_every, divergence_factor, check_every, batch_size)
    rule = _no_change_rule(tol, n_iter_no_change, data, batch_size)
    start = _check_inputs(engine, data, init, seed)
    model = engine.model
    exact = isinstance(engine, ExactEngine)
    if exact and batch_size is not None and batch_size < data.n:
        raise UsageError(f"engine {engine.name!r} runs full-batch gradient descent only; got batch_size {batch_size}")
    # Overflow is detected and reported by the stop rules, not as NumPy warnings.
    with np.errstate(over="ignore", invalid="ignore"):
        if isinstance(engine, ExactEngine):
            run = _run_closed_form(
                engine.trajectory(data, start, lr), iterations, target_loss, record_every, divergence_factor, rule
            )
        else:
            batches = _batches(data.n, batch_size, batch_seed)
            run = _run_loop(
                engine, data, start, lr, iterations, target_loss, record_every, divergence_factor, progress, batches,
                1 if batches is not None else check_every, rule,
            )  # fmt: skip
    history, params, loss_i, i, finite, first_loss, seconds = run
    if progress is not None and exact:
        progress(i)
    stop_reason = _stop_reason(loss_i, first_loss, target_loss, divergence_factor) if finite else "diverged"
    if stop_reason == "iterations" and rule is not None and rule.fired == i:
        stop_reason = "converged"

    stable, message = None, ""
    if stop_reason == "diverged":
        stable = model.stable_lr(data.X, data.weight)
        bound = f"{stable:.6g}" if stable is not None else "not known for this model"
        blew_up = not (finite and math.isfinite(loss_i))
        cause = "a non-finite loss or parameter" if blew_up else f"loss {loss_i:.6g} from {first_loss:.6g}"
        message = (
            f"diverged at iteration {i} ({cause}) with lr={lr:g}; "
            f"the largest stable learning rate for this model and data is {bound}"
        )
    return TrainResult(
        model=model.name,
        engine=engine.name,
        device=str(engine.device),
        dtype=engine.dtype,
        lr=lr,
        params=params,
        loss=loss_i,
        iterations=i,
        stop_reason=stop_reason,
        seconds=seconds,
        history=history,
        message=message,
        stable_lr=stable,
    )


_Run = tuple[History, dict[str, np.ndarray], float, int, bool, float, float]


def _run_loop(
    engine: Engine,
    data: Dataset,
    start: dict[str, np.ndarray],
    lr: float,
    iterations: int,
    target_loss: float | None,
    record_every: int,
    divergence_factor: float,
    progress: Callable[[int], None] | None,
    batches: Iterator[np.ndarray] | None,
    check_every: int,
    rule: NoChange | None = None,
) -> _Run:
    """The stepping loop: chunks of `check_every` unchecked steps, replayed step by step on a stop."""
    X = engine.asarray(data.X)  # (n,) or (n, d) in the engine's dtype and device
    Y = engine.asarray(data.Y)  # (n,)
    V = None if data.weight is None else engine.asarray(data.weight)  # (n,) sample weights
    params = engine.params(start)
    gradients = _Batches(engine, params, X, Y, V, batches) if batches is not None else engine.bind(params, X, Y, V)
    recorder = _allocate_recorder(iterations // record_every + 2, params)
    first_loss = math.nan
    reported = 0
    loss_i, finite = math.nan, True

    # The losses of a chunk wait for its check as floats in host memory, on a device as device scalars
    # (no sync per step). A cpu tensor kept per step costs what a kept clone does (`_Recorder`).
    on_cpu = engine.device.type == "cpu"
    synchronize(engine.device)
    clock = time.perf_counter()
    i = 0
    stopped = False
    while not stopped and i < iterations:
        # An unchecked chunk: steps only, losses left on the device.
        s, end = i, min(i + check_every, iterations)
        snapshot = engine.copy_params(params) if check_every > 1 else None
        rule_at_start = rule.state() if rule is not None else None
        rows_at_start = recorder.rows
        rows: list[int] = []
        losses: list[Any] = []
        replay = check_every == 1
        if not replay:
            # the hot loop: `_step` inlined and its lookups hoisted (at n = 30 a step is a few us)
            step, append = gradients.loss_and_gradients, losses.append
            for i in range(s, end):
                if i % record_every == 0:
                    rows.append(recorder.record(i, params))
                value, grads = step()
                update(params, grads, lr)
                append(float(value) if on_cpu else value)
            chunk = _host(losses)
            if s == 0:
                first_loss = float(chunk[0])
            replay = first_stop(chunk, first_loss, target_loss, divergence_factor) >= 0 or not _all_finite(params)
            replay = replay or (rule is not None and rule.scan(s, chunk) >= 0)
            if replay:
                assert snapshot is not None
                engine.restore(params, snapshot)
                recorder.truncate(rows_at_start)
                if rule is not None and rule_at_start is not None:
                    rule.restore(rule_at_start)
            else:
                recorder.loss[rows] = chunk[[r_i - s for r_i in recorder.iteration[rows]]]
                i = end
        if replay:
            # One checked step at a time, exactly as a loop that checks every step.
            for i in range(s, end):
                row = recorder.record(i, params) if i % record_every == 0 else -1
                before = engine.copy_params(params)
                loss_i = float(_host([_step(gradients, params, lr)])[0])
                if i == 0:
                    first_loss = loss_i
                recorder.loss[row] = loss_i
                finite = _all_finite(before)
                stop = not finite or first_stop(np.asarray([loss_i]), first_loss, target_loss, divergence_factor) == 0
                if stop or (rule is not None and rule.scan(i, np.asarray([loss_i])) >= 0):
                    engine.restore(params, before)
                    if row < 0:
                        recorder.loss[recorder.record(i, params)] = loss_i
                    stopped = True
                    break
            else:
                i = end
        if progress is not None and i > reported:
            progress(i - reported)  # after every chunk: a host-side count; the bar redraws by time
            reported = i
    if not stopped:
        # i == iterations: the loss after the last update, with no step after it.
        loss_i = float(_host([gradients.loss()])[0])
        if i == 0:
            first_loss = loss_i
        finite = _all_finite(params)
        recorder.loss[recorder.record(i, params)] = loss_i
        if rule is not None:
            rule.scan(i, np.asarray([loss_i]))
    synchronize(engine.device)
    seconds = time.perf_counter() - clock
    if progress is not None and i > reported:
        progress(i - reported)
    final = {name: engine.to_numpy(p).astype(np.float64) for name, p in params.items()}
    return recorder.history(), final, loss_i, i, finite, first_loss, seconds


def _run_closed_form(
    trajectory: Any,
    iterations: int,
    target_loss: float | None,
    record_every: int,
    divergence_factor: float,
    rule: NoChange | None = None,
) -> _Run:
    """Every iteration's loss at once from a closed form, then the parameters at the recorded rows."""
    clock = time.perf_counter()
    first_loss = float(trajectory.losses(np.arange(1))[0])
    stop = -1
    block = 1 << 16
    for s in range(0, iterations + 1, block):
        losses = trajectory.losses(np.arange(s, min(s + block, iterations + 1)))
        found = first_stop(losses, first_loss, target_loss, divergence_factor)
        fired = rule.scan(s, losses) if rule is not None else -1
        if found >= 0 or fired >= 0:
            stop = min(k for k in (s + found if found >= 0 else -1, fired) if k >= 0)
            break
    last = stop if stop >= 0 else iterations
    recorded = np.arange(0, last + 1, record_every)
    if recorded[-1] != last:
        recorded = np.append(recorded, last)
    loss = trajectory.losses(recorded)
    params = trajectory.params(recorded)
    finite = bool(np.isfinite(loss[-1]) and all(np.isfinite(v[-1]).all() for v in params.values()))
    seconds = time.perf_counter() - clock + trajectory.seconds
    final = {k: np.array(v[-1]) for k, v in params.items()}
    return History(recorded, loss, params), final, float(loss[-1]), last, finite, first_loss, seconds

"""The one training loop: full-batch gradient descent, stop rules, history, divergence."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gradtwin.data import Dataset, as_real
from gradtwin.devices import synchronize
from gradtwin.engines import Engine
from gradtwin.errors import DataError, UsageError

STOP_REASONS = ("iterations", "target_loss", "diverged")


@dataclass
class History:
    """Recorded iterations: row j holds the parameters and loss after `iteration[j]` updates."""

    iteration: np.ndarray  # (rows,) int64
    loss: np.ndarray  # (rows,) float64
    params: dict[str, np.ndarray]  # name -> (rows, *shape) float64

    @classmethod
    def allocate(cls, rows: int, params: dict[str, np.ndarray]) -> History:
        return cls(
            iteration=np.zeros(rows, dtype=np.int64),
            loss=np.zeros(rows),
            params={name: np.zeros((rows, *np.shape(p))) for name, p in params.items()},
        )

    def trim(self, rows: int) -> History:
        return History(self.iteration[:rows], self.loss[:rows], {k: v[:rows] for k, v in self.params.items()})


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


def check_lr(lr: Any) -> float:
    """A learning rate must be a positive finite real number."""
    try:
        value = float(lr)
    except (TypeError, ValueError):
        raise UsageError(f"lr must be a positive finite number; got {lr!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise UsageError(f"lr must be a positive finite number; got {lr!r}")
    return value


def _check_options(iterations: int, target_loss: float | None, record_every: int, divergence_factor: float) -> None:
    if isinstance(iterations, bool) or not isinstance(iterations, (int, np.integer)) or iterations < 1:
        raise UsageError(f"iterations must be an integer >= 1; got {iterations!r}")
    if target_loss is not None and not (math.isfinite(target_loss) and target_loss >= 0):
        raise UsageError(f"target_loss must be a finite number >= 0; got {target_loss!r}")
    if isinstance(record_every, bool) or not isinstance(record_every, (int, np.integer)) or record_every < 1:
        raise UsageError(f"record_every must be an integer >= 1; got {record_every!r}")
    if not (math.isfinite(divergence_factor) and divergence_factor > 1):
        raise UsageError(f"divergence_factor must be a finite number > 1; got {divergence_factor!r}")


def _check_inputs(engine: Engine, data: Dataset, init: dict[str, Any] | None, seed: int | None) -> dict[str, Any]:
    """Refuse what train() cannot use, once, before the loop; return the starting parameters."""
    if not isinstance(engine, Engine):
        raise TypeError(f"engine must be a gradtwin Engine (make_engine(name, model)); got {type(engine).__name__}")
    if not isinstance(data, Dataset):
        raise TypeError(f"data must be a gradtwin Dataset (Dataset(X, Y, name)); got {type(data).__name__}")
    model = engine.model
    model.check_data(data)
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
        raise UsageError(f"seed must be an integer >= 0 or None; got {seed!r}")
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
    for label, values in (("X", data.X), ("Y", data.Y)):
        big = np.abs(values) > limit
        if big.any():
            row = int(np.argwhere(big)[0][0])
            raise DataError(
                f"{data.name}: {label} holds {values[big][0]:g} at row {row} (counting from 0), beyond {dtype}'s range "
                f"(+-{limit:.3g}); use float64"
            )


def _allocate_history(iterations: int, record_every: int, start: dict[str, np.ndarray]) -> History:
    rows = iterations // record_every + 2
    try:
        return History.allocate(rows, start)
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


def train(
    engine: Engine,
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
) -> TrainResult:
    """Full-batch gradient descent from `init` (default: zeros, or seeded normals if `seed`).

    Each iteration i evaluates the loss and gradients at the parameters after i updates,
    records them (every `record_every`-th iteration, and always the last), checks the stop
    rules, then steps. It stops when `iterations` updates are done, when the loss is at or
    below `target_loss`, or when the run diverges: a non-finite loss or parameter, or a loss
    above `divergence_factor` times its starting value (a loss can climb to 1e87 without
    turning non-finite). `progress(k)` is called with the number of iterations done since
    its last call, about every 1,000 iterations.

    Mini-batches: with `batch_size` below n, iteration i uses the next `batch_size` rows of
    a permutation drawn per epoch from `batch_seed` (the last batch of an epoch may be
    shorter), so two engines given the same seed see the same batches in the same order.
    The recorded loss of such an iteration is that of its batch; the final row's loss, and
    `TrainResult.loss`, are over all the data.
    """
    lr = check_lr(lr)
    _check_options(iterations, target_loss, record_every, divergence_factor)
    if batch_size is not None and (
        isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1
    ):
        raise UsageError(f"batch_size must be an integer >= 1; got {batch_size!r}")
    start = _check_inputs(engine, data, init, seed)
    batches = _batches(data.n, batch_size, batch_seed)
    model = engine.model
    X = engine.asarray(data.X)  # (n,) or (n, d) in the engine's dtype and device
    Y = engine.asarray(data.Y)  # (n,)
    params = engine.params(start)
    history = _allocate_history(iterations, record_every, start)
    rows = 0
    stop_reason, message = "iterations", ""
    first_loss = math.nan
    reported = 0

    synchronize(engine.device)
    clock = time.perf_counter()
    # Overflow is detected and reported by the stop rules below, not as NumPy warnings.
    with np.errstate(over="ignore", invalid="ignore"):
        i = 0
        while True:
            if i < iterations and batches is not None:
                rows_i = next(batches)
                loss_value, grads = engine.loss_and_gradients(params, engine.take(X, rows_i), engine.take(Y, rows_i))
            elif i < iterations:
                loss_value, grads = engine.loss_and_gradients(params, X, Y)
            else:
                loss_value, grads = engine.loss(params, X, Y), None
            loss_i = float(loss_value)
            if i == 0:
                first_loss = loss_i
            finite = math.isfinite(loss_i) and all(np.isfinite(engine.to_numpy(p)).all() for p in params.values())
            if not finite or loss_i > divergence_factor * max(first_loss, np.finfo(np.float64).tiny):
                stop_reason = "diverged"
            elif target_loss is not None and loss_i <= target_loss:
                stop_reason = "target_loss"
            last = grads is None or stop_reason != "iterations"
            if i % record_every == 0 or last:
                history.iteration[rows] = i
                history.loss[rows] = loss_i
                for name, p in params.items():
                    history.params[name][rows] = engine.to_numpy(p)
                rows += 1
            if last:
                break
            assert grads is not None
            engine.update(params, grads, lr)
            i += 1
            if progress is not None and i - reported >= 1000:
                progress(i - reported)
                reported = i
    synchronize(engine.device)
    seconds = time.perf_counter() - clock
    if progress is not None and i > reported:
        progress(i - reported)

    stable = None
    if stop_reason == "diverged":
        stable = model.stable_lr(data.X)
        bound = f"{stable:.6g}" if stable is not None else "not known for this model"
        cause = "a non-finite loss or parameter" if not finite else f"loss {loss_i:.6g} from {first_loss:.6g}"
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
        params={name: engine.to_numpy(p).astype(np.float64) for name, p in params.items()},
        loss=loss_i,
        iterations=i,
        stop_reason=stop_reason,
        seconds=seconds,
        history=history.trim(rows),
        message=message,
        stable_lr=stable,
    )

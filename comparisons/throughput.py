"""Time per iteration of each engine on a device, against that device's measured memory bandwidth.

A gradient step over n rows must read X and Y at least once, so bytes(X) + bytes(Y) over
the device's copy bandwidth is the floor on its time; `Row.passes` says how many such
passes an iteration costs (1 is the floor). Timing follows nanoGPT's habit: warm-up
iterations, then a measured stage with `synchronize()` on both sides of the clock. All
runs are under `strict_numerics` (TF32 off, deterministic algorithms), as parity runs are.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from gradtwin.cli.progress import progress_bar
from gradtwin.data import Dataset
from gradtwin.devices import resolve_device, synchronize, torch_dtype
from gradtwin.models import Model
from gradtwin.parity.numerics import nondeterminism, strict_numerics
from gradtwin.training import Engine, ExactEngine, update
from gradtwin.training.exact import EXACT_MODELS


def bandwidth(device: torch.device, nbytes: int, repeats: int = 10) -> float:
    """Bytes per second of a device-to-device copy of `nbytes` (each copy reads and writes them)."""
    src = torch.empty(nbytes // 4, dtype=torch.float32, device=device).fill_(1.0)
    dst = torch.empty_like(src)
    dst.copy_(src)  # warm-up
    synchronize(device)
    clock = time.perf_counter()
    for _ in range(repeats):
        dst.copy_(src)
    synchronize(device)
    seconds = time.perf_counter() - clock
    del src, dst
    return 2.0 * (nbytes // 4) * 4 * repeats / seconds


@dataclass
class Problem:
    """Synthetic data of one model's layout, made on the device: X (n,) or (n, d), Y (n,)."""

    params: dict[str, np.ndarray]
    X: torch.Tensor
    Y: torch.Tensor

    @property
    def nbytes(self) -> int:
        return self.X.numel() * self.X.element_size() + self.Y.numel() * self.Y.element_size()


def problem(model: Model, n: int, d: int, dtype: str, device: torch.device, seed: int = 0) -> Problem:
    """n rows in the layout of `model.random_data` (1-D X stays 1-D; 2-D X gets d columns).

    Regression targets are a linear function of X plus noise; class labels are drawn from
    the labels the model's own random data uses (int64). Parameters: seeded normals times 0.1.
    """
    rng = np.random.default_rng(seed)
    small = model.random_data(rng)
    two_d = small.X.ndim == 2
    shape: tuple[int, ...] = (n, d) if two_d else (n,)
    gen = torch.Generator(device=device).manual_seed(seed)
    X = torch.randn(shape, dtype=torch_dtype(dtype), device=device, generator=gen)  # (n,) or (n, d)
    if model.task == "regression":
        slope = torch.randn(shape[1:], dtype=X.dtype, device=device, generator=gen)  # (d,) or ()
        Y = (X @ slope if two_d else X * slope) + torch.randn(n, dtype=X.dtype, device=device, generator=gen)
    else:  # int64 class labels, as engines keep them
        labels = torch.as_tensor(np.unique(small.Y), dtype=torch.int64, device=device)  # (k,)
        Y = labels[torch.randint(len(labels), (n,), device=device, generator=gen)]  # (n,)
        Y[0] = labels[-1]  # so the data name all k classes (the parameter shapes are read from them)
    m = min(n, 256)
    template = Dataset(X[:m].double().cpu().numpy(), Y[:m].cpu().numpy(), name="bench")
    params = {k: 0.1 * v for k, v in model.init_params(template, seed).items()}
    return Problem(params, X, Y)


@dataclass
class Row:
    """One engine at one size: seconds per iteration and what the bandwidth floor allows."""

    model: str
    engine: str
    device: str
    dtype: str
    n: int
    d: int
    seconds: float  # per iteration (loss, gradients and update)
    nbytes: int  # bytes of X and Y
    bandwidth: float  # bytes / s of the device, measured in the same run
    repeat_diff: float | None = None  # largest run-to-run difference of loss and gradients
    note: str = ""

    @property
    def passes(self) -> float:
        """Time per iteration in units of one read of X and Y at the measured bandwidth."""
        return self.seconds * self.bandwidth / self.nbytes


def time_engine(engine: Engine | ExactEngine, prob: Problem, lr: float, warmup: int = 2, budget: float = 0.5) -> float:
    """Seconds per iteration of the bound `loss_and_gradients` then `update`, after `warmup` iterations.

    Measures at least 3 iterations and stops once `budget` seconds have passed. The exact
    engine computes the trajectory in closed form and has no step: its whole run of 1,000
    iterations, statistics pass included, is timed and divided by 1,000.
    """
    if isinstance(engine, ExactEngine):
        from gradtwin.training.loop import train

        X64 = prob.X.detach().cpu().numpy().astype(np.float64)
        Y64 = prob.Y.detach().cpu().numpy()
        data = Dataset(X64, Y64, name="bench")
        train(engine, data, lr, iterations=10, init=prob.params)  # warm-up
        result = train(engine, data, lr, iterations=1000, init=prob.params, record_every=1000)
        return result.seconds / 1000
    numpy_arrays = not isinstance(engine.asarray(np.zeros(1)), torch.Tensor)
    X = prob.X.cpu().numpy() if numpy_arrays else prob.X
    Y = prob.Y.cpu().numpy() if numpy_arrays else prob.Y
    params = engine.params(prob.params)
    gradients = engine.bind(params, X, Y)  # the engine's fastest full-batch path, as `train` uses

    def step() -> None:
        _, grads = gradients.loss_and_gradients()
        update(params, grads, lr)

    for _ in range(warmup):
        step()
    synchronize(engine.device)
    count, clock = 0, time.perf_counter()
    while count < 3 or time.perf_counter() - clock < budget:
        step()
        count += 1
        if count % 3 == 0:
            synchronize(engine.device)
    synchronize(engine.device)
    return (time.perf_counter() - clock) / count


def repeat_difference(engine: Engine, prob: Problem) -> float:
    """Largest difference of the loss and gradients between two runs at the same point."""
    numpy_arrays = not isinstance(engine.asarray(np.zeros(1)), torch.Tensor)
    X = prob.X.cpu().numpy() if numpy_arrays else prob.X
    Y = prob.Y.cpu().numpy() if numpy_arrays else prob.Y
    params = engine.params(prob.params)
    # unbound: a bound computation may return the same buffers each call, which would compare equal
    return max(nondeterminism(lambda: engine.loss_and_gradients(params, X, Y)).values())


def run(
    models: Sequence[Model],
    engines: Sequence[str],
    make: Callable[[str, Model, str, str], Engine | ExactEngine],
    device: str,
    sizes: Sequence[int],
    d: int = 16,
    dtype: str = "float32",
    bandwidth_bytes: int = 2**30,
    budget: float = 0.5,
    log: Callable[[str], None] = lambda line: None,
) -> list[Row]:
    """Every model x engine x size on `device`; the largest size also measures run-to-run drift."""
    dev = resolve_device(device, dtype)
    rows: list[Row] = []
    cases = sum(applies(name, model) for model in models for name in engines) * len(sizes)
    with strict_numerics(), progress_bar(cases, f"throughput {dev}", unit="run") as bar:
        bw = bandwidth(dev, bandwidth_bytes)
        with bar.external_write_mode():  # the bar (stderr) steps aside for each logged line
            log(f"{dev}: copy bandwidth {bw / 1e9:.1f} GB/s")
        for model in models:
            for n in sizes:
                runs = [name for name in engines if applies(name, model)]
                try:
                    prob = problem(model, n, d, dtype, dev)
                except torch.OutOfMemoryError:
                    rows += [_failed(model, e, dev, dtype, n, d, bw, "out of memory (data)") for e in engines]
                    bar.update(len(runs))
                    continue
                cols = int(prob.X.shape[1]) if prob.X.ndim == 2 else 1
                for name in runs:
                    bar.set_description(f"throughput {dev} {model.name} n={n:,} {name}", refresh=False)
                    rows.append(_one(model, name, make, dev, dtype, prob, n, cols, bw, budget, n == max(sizes)))
                    with bar.external_write_mode():
                        log(_line(rows[-1]))
                    bar.update(1)
                del prob
                if dev.type == "cuda":
                    torch.cuda.empty_cache()
    return rows


def applies(engine: str, model: Model) -> bool:
    """Whether `engine` can train `model` at all (the exact engine: linear models only)."""
    return engine != "exact" or model.family in EXACT_MODELS


def _one(
    model: Model,
    name: str,
    make: Callable[[str, Model, str, str], Engine | ExactEngine],
    dev: torch.device,
    dtype: str,
    prob: Problem,
    n: int,
    d: int,
    bw: float,
    budget: float,
    repeat: bool,
) -> Row:
    try:
        # the exact engine is a cpu computation after one pass over the data: time it there
        engine = make(name, model, dtype, "cpu" if name == "exact" else str(dev))
        seconds = time_engine(engine, prob, lr=1e-3, budget=budget)
        # the exact engine has no step to repeat
        diff = repeat_difference(engine, prob) if repeat and not isinstance(engine, ExactEngine) else None
        return Row(model.name, name, str(engine.device), dtype, n, d, seconds, prob.nbytes, bw, diff)
    except torch.OutOfMemoryError:
        return _failed(model, name, dev, dtype, n, d, bw, "out of memory")
    except Exception as e:  # one engine's failure must not cost the rest of the table
        return _failed(model, name, dev, dtype, n, d, bw, f"failed: {type(e).__name__}: {e}"[:120])
    finally:
        if dev.type == "cuda":
            torch.cuda.empty_cache()


def _failed(model: Model, name: str, dev: torch.device, dtype: str, n: int, d: int, bw: float, note: str) -> Row:
    return Row(model.name, name, str(dev), dtype, n, d, float("nan"), 1, bw, None, note)


def _line(r: Row) -> str:
    if r.note:
        return f"{r.model} {r.engine} {r.device} n={r.n}: {r.note}"
    return f"{r.model} {r.engine} {r.device} n={r.n} d={r.d}: {r.seconds * 1e3:.3g} ms/iter, {r.passes:.3g} passes"


def table(rows: Sequence[Row], cpu: Sequence[Row] = ()) -> str:
    """Markdown table: time per iteration, per row of data, passes over X and Y, speed-up over the cpu."""
    cpu_ns = {(r.model, r.engine): r.seconds / r.n for r in cpu if not r.note}
    head = (
        "| model | engine | device | dtype | n | d | ms / iter | ns / row | passes over X,Y | vs cpu "
        "| run-to-run diff |"
    )
    lines = [head, "|" + "---|" * 11]
    for r in [*rows, *cpu]:
        if r.note:
            lines.append(f"| {r.model} | {r.engine} | {r.device} | {r.dtype} | {r.n:,} | {r.d} | {r.note} ||||| ")
            continue
        base = cpu_ns.get((r.model, r.engine))
        speedup = f"{base / (r.seconds / r.n):.3g}x" if base and not r.device.startswith("cpu") else "-"
        diff = "-" if r.repeat_diff is None else ("0 (bitwise)" if r.repeat_diff == 0 else f"{r.repeat_diff:.3g}")
        lines.append(
            f"| {r.model} | {r.engine} | {r.device} | {r.dtype} | {r.n:,} | {r.d} | {r.seconds * 1e3:.4g} | "
            f"{r.seconds / r.n * 1e9:.3g} | {r.passes:.3g} | {speedup} | {diff} |"
        )
    return "\n".join(lines)


def describe(device: torch.device) -> dict[str, Any]:
    """Name and software of the device, for the table's header."""
    info: dict[str, Any] = {"torch": torch.__version__}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(name=props.name, memory_gib=round(props.total_memory / 2**30, 1), cuda=torch.version.cuda)
    else:
        info.update(name="cpu", threads=torch.get_num_threads())
    return info

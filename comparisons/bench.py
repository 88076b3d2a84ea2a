"""Per-iteration cost of gradtwin's engines against the plain loops a user would write, in one run.

Run `python comparisons/bench.py` (about five minutes on two quiet cores; `--quick` for a smoke
run of well under a minute). For linear, logistic (k = 2), softmax (k = 4) and the mlp (32 tanh units,
k = 4) at 30 x 1, 10,000 x 16 and 1,000,000 x 16, in float64 and float32, it measures in one
process: the floor (the fastest of four reads of X: NumPy's X @ v and X.sum(), torch.sum and
torch.mv, threaded), a plain NumPy loop with hand gradients, a plain torch autograd loop
(`backward()`, a `torch.no_grad()` step; the mlp an `nn.Sequential` with `optim.SGD`), a JAX
`jit` + `lax.fori_loop` loop where JAX is installed (an optional dependency: without it the
table says so), gradtwin's manual, autograd and tape twins through `train()`, and for the linear model
the exact engine; then the peak memory of 1,000,000 x 16 runs, each in a fresh process. Every
time is the fastest of repeated timed blocks after a warm-up block (load only ever adds time, so
the fastest block is the least disturbed one). It writes the tables and a
description of the machine to comparisons/BENCH.md. On a busy machine only the ratios are worth
reading, and only those of one run.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch

from gradtwin.cli.files import atomic_write_text, check_target
from gradtwin.cli.progress import progress_bar
from gradtwin.data import Dataset
from gradtwin.devices import cpu_name
from gradtwin.models import MODELS
from gradtwin.training.factory import make_engine
from gradtwin.training.loop import train

HERE = Path(__file__).resolve().parent
MODEL_NAMES = ("linear", "logistic", "softmax", "mlp")
CLASSES = {"logistic": 2, "softmax": 4, "mlp": 4}
HIDDEN = 32  # MODELS["mlp"]'s width
LR = {"linear": 0.05, "logistic": 0.5, "softmax": 0.5, "mlp": 0.5}
SIZES = [(30, 1), (10_000, 16), (1_000_000, 16)]
QUICK_SIZES = [(30, 1), (200, 4)]
PEERS = ("numpy", "torch", "jax")
ENGINES = ("manual", "autograd", "tape", "exact")
Arrays = dict[str, np.ndarray]
Timed = tuple[float, Arrays]  # seconds per iteration, parameters at the end (float64)


# ---- timing --------------------------------------------------------------------------------------


def fastest_block(block: Callable[[], Timed], repeats: int) -> Timed:
    """The fastest of `repeats` timed blocks after a warm-up block (s per iteration), and the last block's end point.

    `block` runs the loop from the start and returns (seconds per iteration, final parameters).
    """
    block()
    timed = [block() for _ in range(repeats)]
    return min(t for t, _ in timed), timed[-1][1]


def per_call(fn: Callable[[], object], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls


def floor(X: np.ndarray, repeats: int) -> tuple[float, str]:
    """One read of X: the fastest of NumPy's X @ v and X.sum() and torch's (threaded) sum and mv."""
    Xt = torch.from_numpy(X)
    v = np.ones(X.shape[1], dtype=X.dtype)
    vt = torch.from_numpy(v)
    out = np.empty(X.shape[0], dtype=X.dtype)
    calls = max(1, int(2e6 // X.size))
    reads: dict[str, Callable[[], object]] = {
        "NumPy X @ v": lambda: np.matmul(X, v, out=out),
        "NumPy X.sum()": X.sum,
        "torch.sum(X)": lambda: torch.sum(Xt),
        "torch.mv(X, v)": lambda: torch.mv(Xt, vt),
    }
    times = {name: fastest_block(lambda fn=fn: (per_call(fn, calls), {}), repeats)[0] for name, fn in reads.items()}  # type: ignore[misc]
    best = min(times, key=times.__getitem__)
    return times[best], best


# ---- the problems --------------------------------------------------------------------------------


def problem(model: str, n: int, d: int, seed: int = 0) -> Dataset:
    """Seeded data of `model`'s kind: X ~ N(0, I) (n, d); Y real (n,) or labels of k classes (n,) int64."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))  # (n, d)
    if model == "linear":
        return Dataset(X, X @ rng.standard_normal(d) + rng.standard_normal(n), name=f"bench {n}x{d}")
    k = CLASSES[model]
    scores = 2.0 * X @ rng.standard_normal((d, k)) + rng.gumbel(size=(n, k))  # (n, k): overlapping classes
    Y = np.argmax(scores, axis=1).astype(np.int64)  # (n,)
    Y[:k] = np.arange(k)  # every class present, so the parameter shapes see k
    return Dataset(X, Y, name=f"bench {n}x{d}", y_name="class")


def start(model: str, data: Dataset) -> Arrays:
    """gradtwin's starting parameters for `model` (zeros; Glorot for the mlp), given to every loop."""
    return MODELS[model].init_params(data, seed=0)


# ---- plain NumPy loops: forward, hand gradient, step ---------------------------------------------


def numpy_loop(model: str, X: np.ndarray, Y: np.ndarray, p0: Arrays, its: int, lr: float) -> Timed:
    """The ten-line NumPy loop a user would write for `model`, its loss computed every step and, as `train()`
    reports it, once more at the end point."""
    p = {k: v.astype(X.dtype) for k, v in p0.items()}
    n = X.shape[0]
    rows = np.arange(n)
    y = Y.astype(X.dtype)
    losses = np.empty(its + 1, dtype=X.dtype)
    t0 = time.perf_counter()
    with np.errstate(over="ignore"):
        for i in range(its + 1):  # the last pass computes the loss only
            if model == "linear":
                r = X @ p["w"] + p["b"] - Y  # (n,)
                losses[i] = r @ r / n
                if i == its:
                    break
                p["w"] -= lr * (2 / n) * (X.T @ r)
                p["b"] -= lr * (2 / n) * r.sum()
            elif model == "logistic":
                z = X @ p["w"] + p["b"]  # (n,)
                losses[i] = np.mean(np.logaddexp(0, z) - y * z)
                if i == its:
                    break
                g = (1 / (1 + np.exp(-z)) - y) / n  # (n,)
                p["w"] -= lr * (X.T @ g)
                p["b"] -= lr * g.sum()
            else:
                if model == "mlp":
                    H = np.tanh(X @ p["W1"] + p["b1"])  # (n, h)
                    Z = H @ p["W2"] + p["b2"]  # (n, k)
                else:
                    Z = X @ p["W"] + p["b"]  # (n, k)
                Z -= Z.max(axis=1, keepdims=True)
                E = np.exp(Z)
                S = E.sum(axis=1, keepdims=True)  # (n, 1)
                losses[i] = np.mean(np.log(S[:, 0]) - Z[rows, Y])
                if i == its:
                    break
                G = E / S  # (n, k) softmax
                G[rows, Y] -= 1
                G /= n
                if model == "mlp":
                    dA = (G @ p["W2"].T) * (1 - H * H)  # (n, h)
                    p["W2"] -= lr * (H.T @ G)
                    p["b2"] -= lr * G.sum(axis=0)
                    p["W1"] -= lr * (X.T @ dA)
                    p["b1"] -= lr * dA.sum(axis=0)
                else:
                    p["W"] -= lr * (X.T @ G)
                    p["b"] -= lr * G.sum(axis=0)
    return (time.perf_counter() - t0) / its, {k: v.astype(np.float64) for k, v in p.items()}


# ---- plain torch autograd loops ------------------------------------------------------------------


def torch_loop(model: str, X: np.ndarray, Y: np.ndarray, p0: Arrays, its: int, lr: float) -> Timed:
    """requires_grad, loss.backward(), a no_grad step, grads zeroed; the mlp as nn.Sequential + optim.SGD.
    Then the loss at the end point, as `train()` reports it."""
    F = torch.nn.functional
    Xt = torch.from_numpy(X)
    Yt = torch.from_numpy(Y.astype(X.dtype) if model in ("linear", "logistic") else Y)
    if model == "mlp":
        return _sequential_loop(Xt, Yt, p0, its, lr)
    ps = [torch.tensor(p0[k], dtype=Xt.dtype, requires_grad=True) for k in p0]
    loss = {"linear": F.mse_loss, "logistic": F.binary_cross_entropy_with_logits}.get(model, F.cross_entropy)
    t0 = time.perf_counter()
    for _ in range(its):
        value = loss(Xt @ ps[0] + ps[1], Yt)
        value.backward()
        with torch.no_grad():
            for q in ps:
                q -= lr * q.grad  # type: ignore[operator]
                q.grad.zero_()  # type: ignore[union-attr]
    with torch.no_grad():
        loss(Xt @ ps[0] + ps[1], Yt)  # the loss at the end point, as train() reports it
    return (time.perf_counter() - t0) / its, {k: q.detach().double().numpy() for k, q in zip(p0, ps, strict=True)}


def _sequential_loop(Xt: torch.Tensor, Yt: torch.Tensor, p0: Arrays, its: int, lr: float) -> Timed:
    d, k = p0["W1"].shape[0], p0["W2"].shape[1]
    first, second = torch.nn.Linear(d, HIDDEN), torch.nn.Linear(HIDDEN, k)
    net = torch.nn.Sequential(first, torch.nn.Tanh(), second).to(Xt.dtype)
    with torch.no_grad():  # gradtwin's start: W1 (d, h) is Linear's weight (h, d) transposed
        for layer, (w, b) in zip((first, second), (("W1", "b1"), ("W2", "b2")), strict=True):
            layer.weight.copy_(torch.from_numpy(p0[w].T.copy()))
            layer.bias.copy_(torch.from_numpy(p0[b]))
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    t0 = time.perf_counter()
    for _ in range(its):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(Xt), Yt)
        loss.backward()
        opt.step()
    with torch.no_grad():
        torch.nn.functional.cross_entropy(net(Xt), Yt)  # the loss at the end point, as train() reports it
    seconds = (time.perf_counter() - t0) / its
    weights = {"W1": first.weight.T, "b1": first.bias, "W2": second.weight.T, "b2": second.bias}
    return seconds, {k: v.detach().double().numpy() for k, v in weights.items()}


# ---- JAX: jit + lax.fori_loop, where installed ---------------------------------------------------


def load_jax() -> ModuleType | None:
    """JAX with float64 enabled, or None where it is not installed (it is not a requirement)."""
    try:
        import jax
    except ImportError:
        return None
    jax.config.update("jax_enable_x64", True)
    return jax


def jax_loop(jax: ModuleType, model: str, X: np.ndarray, Y: np.ndarray, p0: Arrays, its: int, lr: float) -> Timed:
    """`its` steps of jax.value_and_grad inside one jitted lax.fori_loop; compiled by the warm-up block."""
    jnp, lax = jax.numpy, jax.lax
    key = (model, X.shape, str(X.dtype), its, lr)
    run = _JITTED.get(key)
    if run is None:

        def loss(p: dict[str, Any], X: Any, Y: Any) -> Any:
            if model == "linear":
                return jnp.mean((X @ p["w"] + p["b"] - Y) ** 2)
            if model == "logistic":
                z = X @ p["w"] + p["b"]
                return jnp.mean(jax.nn.softplus(z) - Y * z)
            H = jnp.tanh(X @ p["W1"] + p["b1"]) if model == "mlp" else X
            Z = H @ p["W2"] + p["b2"] if model == "mlp" else X @ p["W"] + p["b"]
            return jnp.mean(jax.nn.logsumexp(Z, axis=1) - jnp.take_along_axis(Z, Y[:, None], axis=1)[:, 0])

        value_and_grad = jax.value_and_grad(loss)

        def steps(p: dict[str, Any], X: Any, Y: Any) -> Any:
            def body(_: Any, carry: Any) -> Any:
                value, g = value_and_grad(carry[0], X, Y)
                return jax.tree_util.tree_map(lambda a, b: a - lr * b, carry[0], g), value

            end = lax.fori_loop(0, its, body, (p, jnp.zeros((), X.dtype)))[0]
            return end, loss(end, X, Y)  # the loss at the end point, as train() reports it

        run = _JITTED[key] = jax.jit(steps)
    Xj = jnp.asarray(X)
    Yj = jnp.asarray(Y.astype(X.dtype) if model in ("linear", "logistic") else Y)
    p = {k: jnp.asarray(v.astype(X.dtype)) for k, v in p0.items()}
    jax.block_until_ready((Xj, Yj, p))
    t0 = time.perf_counter()
    end = jax.block_until_ready(run(p, Xj, Yj))[0]
    return (time.perf_counter() - t0) / its, {k: np.asarray(v, dtype=np.float64) for k, v in end.items()}


_JITTED: dict[tuple[Any, ...], Any] = {}


# ---- gradtwin ------------------------------------------------------------------------------------


def gradtwin_run(engine: str, model: str, data: Dataset, dtype: str, p0: Arrays, its: int, lr: float) -> Timed:
    """`train()` with one engine: the loop's own clock (stop rules every 64 steps, last row recorded)."""
    run = train(make_engine(engine, MODELS[model], dtype), data, lr, its, init=p0, record_every=its)
    return run.seconds / max(run.iterations, 1), run.params


# work per element of X and iteration, relative to linear: the classifiers' k logits, the mlp's h hidden units
COST = {"linear": 1, "logistic": 1, "softmax": 4, "mlp": HIDDEN}


def iterations_for(model: str, n: int, d: int, quick: bool) -> int:
    """Iterations per timed block, the same for every loop of a problem: about 1e8 units of work
    (elements of X times COST; 1e4 in quick mode), 3 to 1,000, so that the full run stays near five minutes."""
    work = n * d * COST[model]
    if quick:
        return int(min(20, max(3, 1e4 // work)))
    return int(min(1000, max(3, 1e8 // work)))


def measure(
    model: str, n: int, d: int, dtype: str, quick: bool, jax: ModuleType | None, floors: dict[Any, Any]
) -> dict[str, Any]:
    """Every loop's microseconds per iteration on one problem, and the floor of its X."""
    data = problem(model, n, d)
    X = np.ascontiguousarray(data.X, dtype=dtype)
    Y = data.Y if data.Y.dtype == np.int64 else np.ascontiguousarray(data.Y, dtype=dtype)
    p0, lr = start(model, data), LR[model]
    its = iterations_for(model, n, d, quick)
    repeats = 2 if quick else 5
    if (n, d, dtype) not in floors:
        floors[n, d, dtype] = floor(X, repeats)
    row: dict[str, Any] = {"model": model, "n": n, "d": d, "dtype": dtype, "iterations": its}
    row["floor"], row["floor_read"] = floors[n, d, dtype]
    # NumPy's loops, then torch's, then JAX's: each twin right after the peer it is compared with, in
    # the same library (a loop run right after another library's is slowed by its threads: README)
    blocks: dict[str, Callable[[], Timed]] = {"numpy": lambda: numpy_loop(model, X, Y, p0, its, lr)}
    for engine in ("manual", "tape", "exact"):
        if engine != "exact" or model == "linear":
            blocks[engine] = lambda e=engine: gradtwin_run(e, model, data, dtype, p0, its, lr)  # type: ignore[misc]
    blocks["torch"] = lambda: torch_loop(model, X, Y, p0, its, lr)
    blocks["autograd"] = lambda: gradtwin_run("autograd", model, data, dtype, p0, its, lr)
    if jax is not None:
        blocks["jax"] = lambda: jax_loop(jax, model, X, Y, p0, its, lr)
    timed = {name: fastest_block(block, repeats) for name, block in blocks.items()}
    ends: dict[str, Arrays] = {name: end for name, (_, end) in timed.items()}
    for name in (*PEERS, *ENGINES):
        row[name] = timed[name][0] if name in timed else None
    row["agree"] = agreement(ends)
    return row


def agreement(ends: dict[str, Arrays]) -> float:
    """Largest difference between any loop's end point and the manual twin's, relative to its largest entry.

    Every loop takes the same steps from the same start, so this is rounding only: a loop
    that computed something else would show here, not hide behind its speed.
    """
    ref = ends["manual"]
    scale = max(float(np.max(np.abs(v), initial=0.0)) for v in ref.values()) or 1.0
    return max(float(np.max(np.abs(e[k] - ref[k]), initial=0.0)) for e in ends.values() for k in ref) / scale


# ---- peak memory ---------------------------------------------------------------------------------


MEMORY_SCRIPT = """
import json, sys, numpy as np
from gradtwin.data import Dataset
from gradtwin.training.factory import make_engine
from gradtwin.models import MODELS
from gradtwin.training.loop import train
model, engine, n, d, its = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
k = {"logistic": 2, "softmax": 4, "mlp": 4}.get(model)
e = make_engine(engine, MODELS[model])
def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) * 1024
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # resets the peak (VmHWM) to the current resident size: import-time peaks do not count
before = status("VmRSS:")
rng = np.random.default_rng(0)
X = np.empty((n, d)); Y = np.empty(n) if k is None else np.empty(n, dtype=np.int64)
for s in range(0, n, 65536):  # fill in blocks: no (n, d) temporary
    e_ = min(n, s + 65536)
    X[s:e_] = rng.standard_normal((e_ - s, d))
    if k is None:
        Y[s:e_] = X[s:e_] @ np.ones(d) + rng.standard_normal(e_ - s)
    else:
        Y[s:e_] = np.argmax(X[s:e_] @ np.ones((d, k)) * np.arange(k) + rng.gumbel(size=(e_ - s, k)), axis=1)
if k is not None:
    Y[:k] = np.arange(k)
data = Dataset(X, Y, name="m")
r = train(e, data, 0.05, its, init=MODELS[model].init_params(data, seed=0), record_every=1)
peak = status("VmHWM:")
hist = r.history.loss.nbytes + r.history.iteration.nbytes + sum(v.nbytes for v in r.history.params.values())
print(json.dumps({"model": model, "engine": engine, "before": before, "peak": peak, "x": X.nbytes + Y.nbytes,
                  "history": hist}))
"""


# glibc raises its mmap threshold after the first large free, so later n-sized temporaries (the
# autograd twin's backward pass) come from the heap and stay resident after they are freed.
FIXED_MMAP = {"MALLOC_MMAP_THRESHOLD_": str(1 << 20)}


def memory(model: str, engine: str, n: int, d: int, iterations: int, env: dict[str, str]) -> dict[str, Any]:
    """Peak resident memory of a fresh process running one training, less what it held before the data."""
    out = subprocess.run(
        [sys.executable, "-c", MEMORY_SCRIPT, model, engine, str(n), str(d), str(iterations)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **env},
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    if env:
        result["engine"] = f"{engine} ({' '.join(f'{k}={v}' for k, v in env.items())})"
    return result


def memory_runs(models: list[str], quick: bool) -> list[tuple[str, str, dict[str, str]]]:
    """(model, engine, environment) of each memory run: every twin, the autograd one also with a fixed threshold."""
    if quick:  # a fresh process each: the first model's manual and fixed-threshold autograd, a classifier's manual
        classifier = next((m for m in models if m != "linear"), None)
        runs = [(models[0], "manual", {}), (models[0], "autograd", FIXED_MMAP)]
        return runs + ([(classifier, "manual", {})] if classifier not in (None, models[0]) else [])
    runs = []
    for model in models:
        engines = [("manual", {}), ("autograd", {}), ("autograd", FIXED_MMAP)]
        engines += [("exact", {})] if model == "linear" else []
        runs += [(model, e, env) for e, env in engines]
    return runs


# ---- the report ----------------------------------------------------------------------------------


def machine(jax: ModuleType | None = None) -> str:
    cpu = cpu_name()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    jax_version = f"JAX {jax.__version__}" if jax is not None else "no JAX"
    return (
        f"{cpu}; {os.cpu_count()} logical cores; {platform.system()} {platform.release()}; "
        f"Python {platform.python_version()}, NumPy {np.__version__}, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), {jax_version}; load average {load} when the run started"
    )


def _us(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    us = seconds * 1e6
    return f"{us:.3g}" if us < 1000 else f"{us:,.0f}"


def _ratio(a: float | None, b: float | None) -> str:
    return "-" if a is None or b is None else f"{a / b:.2f}"


def best_peer(row: dict[str, Any]) -> str:
    """The fastest of the plain loops measured on this row."""
    return min((p for p in PEERS if row[p] is not None), key=lambda p: row[p])


def times_table(rows: list[dict[str, Any]]) -> str:
    head = (
        "| model | n x d | dtype | floor us (fastest read) | NumPy loop us | torch loop us | JAX loop us "
        "| manual us | autograd us | tape us | exact us |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['n']:,} x {r['d']} | {r['dtype']} | {_us(r['floor'])} ({r['floor_read']}) "
            f"| {_us(r['numpy'])} | {_us(r['torch'])} | {_us(r['jax'])} | {_us(r['manual'])} | {_us(r['autograd'])} "
            f"| {_us(r['tape'])} | {_us(r['exact'])} |"
        )
    return "\n".join(lines)


def ratios_table(rows: list[dict[str, Any]]) -> str:
    head = (
        "| model | n x d | dtype | best peer | manual / best peer | autograd / best peer | tape / best peer "
        "| exact / best peer | manual / NumPy loop | autograd / torch loop | tape / manual | manual / floor "
        "| autograd / floor | end points agree to |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        best = best_peer(r)
        b = r[best]
        lines.append(
            f"| {r['model']} | {r['n']:,} x {r['d']} | {r['dtype']} | {best} | {_ratio(r['manual'], b)} "
            f"| {_ratio(r['autograd'], b)} | {_ratio(r['tape'], b)} | {_ratio(r['exact'], b)} "
            f"| {_ratio(r['manual'], r['numpy'])} | {_ratio(r['autograd'], r['torch'])} "
            f"| {_ratio(r['tape'], r['manual'])} | {_ratio(r['manual'], r['floor'])} "
            f"| {_ratio(r['autograd'], r['floor'])} | {r['agree']:.1e} |"
        )
    return "\n".join(lines)


def memory_table(mem: list[dict[str, Any]]) -> str:
    lines = [
        "| model | engine | X + Y MiB | history KiB | peak above start MiB | (peak above start) / (X + Y + history) |",
        "|---|---|---|---|---|---|",
    ]
    for m in mem:
        extra = m["peak"] - m["before"]
        lines.append(
            f"| {m['model']} | {m['engine']} | {m['x'] / 2**20:.1f} | {m['history'] / 2**10:.1f} | {extra / 2**20:.1f} "
            f"| {extra / (m['x'] + m['history']):.2f} |"
        )
    return "\n".join(lines)


def report(
    rows: list[dict[str, Any]], mem: list[dict[str, Any]], description: str, started: str, quick: bool,
    jax_note: str, mem_case: tuple[int, int, int],
) -> str:  # fmt: skip
    return "\n".join(
        [
            "# gradtwin benchmark: every engine against the plain loops, in one run",
            "",
            f"Machine: {description}. Run {started}{' (quick mode)' if quick else ''}.",
            "",
            "Microseconds per iteration, each the fastest of repeated timed blocks after a warm-up block.",
            "floor: one read of X, the fastest of NumPy's X @ v and X.sum() and torch's threaded torch.sum and",
            "torch.mv. NumPy loop: forward, hand gradient and step in plain NumPy, the loss every step. torch",
            "loop: requires_grad parameters, loss.backward(), a torch.no_grad() step, grads zeroed (mse_loss,",
            "binary_cross_entropy_with_logits, cross_entropy; the mlp an nn.Sequential(Linear, Tanh, Linear)",
            "with optim.SGD). JAX loop: jax.value_and_grad inside one jit-compiled lax.fori_loop. manual /",
            "autograd / exact: gradtwin's `train()` with that engine (stop rules checked every 64 steps, the last",
            "iteration recorded); the exact engine is the linear model's closed form. Every loop ends with the",
            "loss at its end point, as `train()` does: one forward pass more than steps, in every column alike.",
            f"Logistic has k = 2 classes, softmax and the mlp k = 4, the mlp {HIDDEN} tanh units. {jax_note}",
            "",
            times_table(rows),
            "",
            "Ratios (below 1: gradtwin is faster). best peer: the fastest of the NumPy, torch and JAX loops on",
            "that row. end points agree to: the largest difference between any loop's final parameters and the",
            "manual twin's, relative to the largest of them: every loop took the same steps from the same start.",
            "",
            ratios_table(rows),
            "",
            *(memory_section(mem, mem_case) if mem else ["Peak memory: not measured in this run (--no-memory).", ""]),
        ]
    )


def memory_section(mem: list[dict[str, Any]], mem_case: tuple[int, int, int]) -> list[str]:
    mem_n, mem_d, mem_its = mem_case
    return [
        f"Peak memory of {mem_n:,} x {mem_d} float64 runs ({mem_its} iterations, every one recorded), each",
        "in a fresh process: resident memory at its peak less that before the data existed.",
        "",
        memory_table(mem),
        "",
        "The autograd twins' working set is small (the backward pass makes a few n-sized temporaries);",
        "without a fixed glibc mmap threshold the freed temporaries stay resident, which is what the",
        "plain autograd rows show.",
        "",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, two repeats: checks that it runs")
    parser.add_argument(
        "--models", default=",".join(MODEL_NAMES), help=f"comma-separated, of {', '.join(MODEL_NAMES)} (default all)"
    )
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory runs (fresh processes)")
    parser.add_argument("--out", default=str(HERE / "BENCH.md"), help="markdown file to write")
    parser.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    args = parser.parse_args(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in MODEL_NAMES]
    if unknown or not models:
        parser.error(f"--models must name some of {', '.join(MODEL_NAMES)}; got {args.models!r}")
    check_target(args.out, force=args.force)  # before minutes of measuring, not after
    sizes = QUICK_SIZES if args.quick else SIZES
    dtypes = ["float64"] if args.quick else ["float64", "float32"]
    jax = load_jax()
    jax_note = "" if jax is not None else "JAX is not installed here: its column reads '-' (`pip install jax`)."
    description = machine(jax)
    started = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    clock = time.perf_counter()
    mem_case = (5_000, 16, 5) if args.quick else (1_000_000, 16, 20)
    runs = [] if args.no_memory else memory_runs(models, args.quick)
    rows: list[dict[str, Any]] = []
    mem: list[dict[str, Any]] = []
    floors: dict[Any, Any] = {}
    with progress_bar(len(models) * len(sizes) * len(dtypes) + len(runs), "bench", unit="case") as bar:
        for model in models:
            for n, d in sizes:
                for dtype in dtypes:
                    bar.set_description(f"bench {model} n={n:,} d={d} {dtype}", refresh=False)
                    rows.append(measure(model, n, d, dtype, args.quick, jax, floors))
                    with bar.external_write_mode():  # the bar (stderr) steps aside for the line
                        print(json.dumps(rows[-1]), flush=True)
                    bar.update(1)
        for model, engine, env in runs:
            bar.set_description(f"bench memory {model} {engine}", refresh=False)
            mem.append(memory(model, engine, *mem_case, env))
            bar.update(1)
    started += f", {time.perf_counter() - clock:,.0f} s in all"
    text = report(rows, mem, description, started, args.quick, jax_note, mem_case)
    atomic_write_text(args.out, text, force=args.force)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Four gradient checkers on one tanh MLP, correct and with planted bugs: wall time and verdict.

    .venv/bin/python comparisons/checker_bench.py            # 10^2 .. 10^6 parameters (long)
    .venv/bin/python comparisons/checker_bench.py --quick    # 10^2 and 10^3 only
    options: --sizes 100,1000,784-1024-10@256  --dtypes float64,float32
             --tools gradtwin,gradcheck,gradcheck-fast,jax  --budget 60  --out FILE

The same hand gradients (a NumPy derivation, `hand_gradients`, correct or with one planted bug)
go to every checker in the form it takes:
  gradtwin        check_gradients(manual_gradients=..., torch_loss, params, (X, y), dtype=...)
  gradcheck       torch.autograd.gradcheck of `HandMLP.apply`, a custom autograd.Function whose
                  backward returns the NumPy hand gradients (default mode; skipped when its cost,
                  2 forward passes per parameter, is estimated above --budget)
  gradcheck-fast  the same with fast_mode=True (without the slow Jacobians torch recomputes on a
                  mismatch only to print them: the time is that of the verdict)
  jax             jax.test_util.check_grads(modes=["rev"], order=1) of a jax.custom_vjp whose
                  bwd returns the same hand gradients (through jax.pure_callback)
Each tool runs once on a tiny problem before the table (imports, setup). A time is the fastest
of up to REPEATS calls after a warm-up call where the first call took under WARM_UP_BELOW s, the
faster of two where it took under RETRY_BELOW s, else the first call; the verdict is the first
call's. Benchmarks are not tests: tests/test_checker_bench.py runs this at tiny sizes and asserts
verdicts, never times. Writes comparisons/checker_bench.md.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.metadata
import inspect
import os
import platform
import sys
import textwrap
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import torch
import torch.nn.functional as F

from gradtwin.cli.files import atomic_write_text
from gradtwin.cli.progress import progress_bar
from gradtwin.devices import cpu_name
from gradtwin.errors import GradtwinError, UsageError
from gradtwin.parity.gradcheck import check_gradients

HERE = Path(__file__).resolve().parent
NAMES = ("W1", "b1", "W2", "b2")
TOOLS = ("gradtwin", "gradcheck", "gradcheck-fast", "jax")
TOOL_TITLES = {
    "gradtwin": "gradtwin check_gradients",
    "gradcheck": "torch gradcheck",
    "gradcheck-fast": "gradcheck fast_mode",
    "jax": "jax check_grads rev",
}
DTYPES = ("float64", "float32")
WARM_UP_BELOW = 2.0  # seconds: a first call cheaper than this is a warm-up, and the calls after it are timed
REPEATS = 3  # timed calls after a warm-up, the fastest reported
RETRY_BELOW = 30.0  # seconds: a first call dearer than WARM_UP_BELOW but cheaper than this is run twice
# Cost models of the exhaustive checks, for skipping those that would run past --budget.
# gradcheck: two forwards per parameter element plus this much Python per element (measured:
# 10,000 parameters, forward 0.13 ms, gradcheck 3.8 s on 2 loaded cores).
GRADCHECK_PER_ELEMENT = 5e-5  # seconds
# gradtwin without `method` (a Jacobian row and two loss evaluations per element, each O(P)):
# GRADTWIN_PER_PAIR * P^2 s (measured 37 s at 10,000 here; the issue has 339 s at 17,411).
GRADTWIN_PER_PAIR = 5e-7  # seconds


@dataclass(frozen=True)
class Shape:
    """A d-h-c MLP on a batch of n rows."""

    d: int
    h: int
    c: int
    n: int

    @property
    def params(self) -> int:
        return self.d * self.h + self.h + self.h * self.c + self.c

    def __str__(self) -> str:
        return f"{self.d}-{self.h}-{self.c}, n={self.n}"


# Widths giving about 10^k parameters. 10^6: 784-1258-10 (1,000,120 parameters) on a batch of
# 256, the 784-1024-10 widened to reach its 1,000,000 target (784-1024-10@256 is 814,090).
SIZES = {
    100: Shape(8, 8, 3, 32),  # 99
    1_000: Shape(20, 32, 10, 64),  # 1,002
    10_000: Shape(100, 90, 10, 128),  # 10,000
    100_000: Shape(256, 375, 10, 256),  # 100,135
    1_000_000: Shape(784, 1258, 10, 256),  # 1,000,120
}
QUICK_SIZES = (100, 1_000)


def hand_loss(params: Mapping[str, np.ndarray], X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Mean cross-entropy of a tanh MLP, in the dtype of its inputs (see hand_gradients)."""
    H = np.tanh(X @ params["W1"] + params["b1"])  # (n, h)
    Z = H @ params["W2"] + params["b2"]  # (n, c)
    logp = Z - Z.max(axis=1, keepdims=True)  # (n, c)
    logp = logp - np.log(np.exp(logp).sum(axis=1, keepdims=True))
    return -logp[np.arange(len(y)), y].mean()


def hand_gradients(params: Mapping[str, np.ndarray], X: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    """Gradients of the mean cross-entropy of a tanh MLP, derived by hand.

    Forward::  Z1 = X W1 + b1 ;  H = tanh(Z1) ;  Z = H W2 + b2 ;  P = softmax(Z) (by row)
               L = -1/n * sum_i log P[i, y_i]
    Chain::    dZ = (P - onehot(y)) / n ;  dW2 = H.T dZ ;  db2 = sum_i dZ[i]
               dH = dZ W2.T ;  dZ1 = dH * (1 - H^2) ;  dW1 = X.T dZ1 ;  db1 = sum_i dZ1[i]
    Shapes::   X (n, d), y (n,) ints in [0, c), W1 (d, h), b1 (h,), W2 (h, c), b2 (c,)
               -> each gradient of its parameter's shape, in the parameters' dtype
    """
    n = len(y)
    H = np.tanh(X @ params["W1"] + params["b1"])  # (n, h)
    Z = H @ params["W2"] + params["b2"]  # (n, c)
    E = np.exp(Z - Z.max(axis=1, keepdims=True))  # (n, c)
    P = E / E.sum(axis=1, keepdims=True)  # (n, c)
    dZ = P.copy()  # (n, c)
    dZ[np.arange(n), y] -= 1
    dZ /= n
    dH = dZ @ params["W2"].T  # (n, h)
    dZ1 = dH * (1 - H * H)  # (n, h)
    return {"W1": X.T @ dZ1, "b1": dZ1.sum(axis=0), "W2": H.T @ dZ, "b2": dZ.sum(axis=0)}


def _sign(g: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: -v for k, v in g.items()}


def _element(g: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    W1 = g["W1"].copy()
    W1[np.unravel_index(np.argmax(np.abs(W1)), W1.shape)] *= 2
    return {**g, "W1": W1}


def _row(g: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    W1 = g["W1"].copy()
    W1[np.argmax(np.linalg.norm(W1, axis=1))] *= -1
    return {**g, "W1": W1}


def _b1(g: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {**g, "b1": 2 * g["b1"]}


# case -> what is done to the correct hand gradients; every case but "correct" must FAIL.
CASES: dict[str, Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]] = {
    "correct": lambda g: g,
    "sign flipped": _sign,
    "W1 largest element x2": _element,
    "W1 largest row negated": _row,
    "b1 x2": _b1,
}


def planted(case: str) -> Callable[..., dict[str, np.ndarray]]:
    """The hand gradients with `case`'s bug, as check_gradients' manual_gradients(params, X, y)."""
    bug = CASES[case]

    def grads(params: Mapping[str, np.ndarray], X: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
        return bug(hand_gradients(params, X, y))

    return grads


@dataclass
class Problem:
    """One MLP at one point: float64 values that are exact in `dtype`, and class labels."""

    shape: Shape
    dtype: str
    params: dict[str, np.ndarray]
    X: np.ndarray
    y: np.ndarray


def problem(shape: Shape, dtype: str, seed: int = 0) -> Problem:
    """W ~ N(0, 1/fan_in), b ~ N(0, 0.1^2), X ~ N(0, 1): rounded through `dtype`, so every checker
    sees the same values whether it casts them or not."""
    rng = np.random.default_rng(seed)

    def exact(a: np.ndarray) -> np.ndarray:
        return a.astype(dtype).astype(np.float64)

    params = {
        "W1": exact(rng.standard_normal((shape.d, shape.h)) / np.sqrt(shape.d)),  # (d, h)
        "b1": exact(0.1 * rng.standard_normal(shape.h)),  # (h,)
        "W2": exact(rng.standard_normal((shape.h, shape.c)) / np.sqrt(shape.h)),  # (h, c)
        "b2": exact(0.1 * rng.standard_normal(shape.c)),  # (c,)
    }
    X = exact(rng.standard_normal((shape.n, shape.d)))  # (n, d)
    y = rng.integers(0, shape.c, shape.n)  # (n,)
    return Problem(shape, dtype, params, X, y)


def torch_loss(params: Mapping[str, torch.Tensor], X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The same loss in PyTorch: what autograd differentiates."""
    H = torch.tanh(X @ params["W1"] + params["b1"])  # (n, h)
    return F.cross_entropy(H @ params["W2"] + params["b2"], y)  # mean over the n rows


class HandMLP(torch.autograd.Function):
    """The MLP loss with a hand-written backward: the NumPy hand gradients, scaled by grad_output."""

    @staticmethod
    def forward(ctx: Any, W1: Any, b1: Any, W2: Any, b2: Any, X: Any, y: Any, grads: Any) -> torch.Tensor:
        ctx.save_for_backward(W1, b1, W2, b2, X, y)
        ctx.grads = grads
        return torch_loss(dict(zip(NAMES, (W1, b1, W2, b2), strict=True)), X, y)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        *p, X, y = ctx.saved_tensors
        hand = ctx.grads({k: v.detach().numpy() for k, v in zip(NAMES, p, strict=True)}, X.numpy(), y.numpy())
        return (*(torch.from_numpy(np.asarray(hand[k])).to(g.dtype) * g for k in NAMES), None, None, None)


def torch_inputs(pb: Problem, requires_grad: bool) -> tuple[tuple[torch.Tensor, ...], torch.Tensor, torch.Tensor]:
    tdt = getattr(torch, pb.dtype)
    params = tuple(torch.tensor(pb.params[k], dtype=tdt, requires_grad=requires_grad) for k in NAMES)
    return params, torch.tensor(pb.X, dtype=tdt), torch.tensor(pb.y)


def run_gradtwin(pb: Problem, grads: Callable[..., Any], method: str | None) -> bool:
    kwargs = {} if method is None else {"method": method}
    report = check_gradients(grads, torch_loss, pb.params, (pb.X, pb.y), dtype=pb.dtype, manual_array="numpy", **kwargs)
    return report.ok


def run_gradcheck(pb: Problem, grads: Callable[..., Any], fast: bool) -> bool:
    params, X, y = torch_inputs(pb, requires_grad=True)

    def fn(*p: torch.Tensor) -> torch.Tensor:
        return HandMLP.apply(*p, X, y, grads)

    with warnings.catch_warnings(), _no_slow_message():
        warnings.simplefilter("ignore")  # "Input #0 ... is not a double precision floating point"
        return bool(torch.autograd.gradcheck(fn, params, fast_mode=fast, raise_exception=False))


@contextlib.contextmanager
def _no_slow_message() -> Iterator[None]:
    """Skip what fast_mode does on a mismatch only to word its message: the whole slow Jacobians.

    That recomputation costs as much as default gradcheck (hours at 10^6 parameters) and does
    not change the verdict, which the mismatch has already decided.
    """
    module = sys.modules.get("torch.autograd.gradcheck")
    name = "_run_slow_mode_and_get_error"
    if module is None or not hasattr(module, name):
        yield
        return
    with mock.patch.object(module, name, lambda *args, **kwargs: ""):
        yield


def jax_version() -> str | None:
    """jax's version with float64 switched on (for the float64 cases), or None without jax."""
    try:
        import jax
    except ImportError:
        return None
    jax.config.update("jax_enable_x64", True)
    return str(jax.__version__)


def run_jax(pb: Problem, grads: Callable[..., Any]) -> bool:
    import jax
    import jax.numpy as jnp
    from jax.test_util import check_grads

    npdt = np.dtype(pb.dtype)
    Xn = pb.X.astype(npdt)  # (n, d)
    X, y, rows = jnp.asarray(Xn), jnp.asarray(pb.y), jnp.arange(pb.shape.n)

    def loss(W1: Any, b1: Any, W2: Any, b2: Any) -> Any:
        logp = jax.nn.log_softmax(jnp.tanh(X @ W1 + b1) @ W2 + b2)  # (n, c)
        return -jnp.mean(logp[rows, y])

    def hand(*p: Any) -> tuple[np.ndarray, ...]:
        g = grads({k: np.asarray(v) for k, v in zip(NAMES, p, strict=True)}, Xn, pb.y)
        return tuple(np.asarray(g[k], dtype=npdt) for k in NAMES)

    def fwd(*p: Any) -> tuple[Any, tuple[Any, ...]]:
        return loss(*p), p

    def bwd(p: tuple[Any, ...], g: Any) -> tuple[Any, ...]:
        shapes = tuple(jax.ShapeDtypeStruct(v.shape, v.dtype) for v in p)
        return tuple(h * g for h in jax.pure_callback(hand, shapes, *p))

    f = jax.custom_vjp(loss)
    f.defvjp(fwd, bwd)
    args = tuple(jnp.asarray(pb.params[k].astype(npdt)) for k in NAMES)
    try:
        check_grads(f, args, order=1, modes=["rev"])
    except AssertionError:
        return False
    return True


def best_time(fn: Callable[[], object], total: float = 1.0, least: int = 5, most: int = 200) -> float:
    """Fastest of repeated calls after a warm-up: at least `least`, then until `total` s or `most` calls."""
    fn()
    times: list[float] = []
    while len(times) < least or (len(times) < most and sum(times) < total):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def fwd_bwd_of(pb: Problem) -> Callable[[], None]:
    """One forward and backward of torch_loss at `pb`, in its dtype."""
    params, X, y = torch_inputs(pb, requires_grad=True)
    leaves = dict(zip(NAMES, params, strict=True))

    def fwd_bwd() -> None:
        for v in params:
            v.grad = None
        torch_loss(leaves, X, y).backward()

    return fwd_bwd


_TINY: list[Callable[[], None]] = []


def settle(seconds: float = 5.0) -> None:
    """Run a tiny forward+backward until ten in a row take under 1 ms (or `seconds` pass).

    On a two-core machine shared with other work, calls into torch's two-thread pool each waited
    ~80 ms for a core, for seconds at a time; settle() before each measurement waits such a spell
    out (it costs ~2 ms when the machine is quiet).
    """
    if not _TINY:
        _TINY.append(fwd_bwd_of(problem(SIZES[100], "float64")))
    fwd_bwd = _TINY[0]
    fast, end = 0, time.perf_counter() + seconds
    while fast < 10 and time.perf_counter() < end:
        start = time.perf_counter()
        fwd_bwd()
        fast = fast + 1 if time.perf_counter() - start < 1e-3 else 0


def loss_times(pb: Problem) -> tuple[float, float]:
    """(one forward + backward of torch_loss, one forward of HandMLP), seconds."""
    settle()
    fwd_bwd = fwd_bwd_of(pb)
    params, X, y = torch_inputs(pb, requires_grad=False)

    def fwd() -> None:
        with torch.no_grad():
            HandMLP.apply(*params, X, y, hand_gradients)

    return best_time(fwd_bwd), best_time(fwd)


@dataclass
class Result:
    verdict: str  # pass, FAIL, error, skipped (est. N s), not installed
    seconds: float | None = None
    note: str | None = None  # the error met, or verdicts that differ between calls

    def right(self, case: str) -> bool | None:
        """Whether the verdict is the right one (a correct case passes, a bug fails); None if none."""
        if self.verdict not in ("pass", "FAIL"):
            return None
        return (self.verdict == "pass") == (case == "correct")

    def cell(self, case: str) -> str:
        if self.seconds is None:
            return self.verdict
        wrong = " (wrong)" if self.right(case) is False else ""
        return f"{_seconds(self.seconds)}, {self.verdict}{wrong}"


def _seconds(s: float) -> str:
    return f"{s:.2g} s" if s < 10 else f"{s:,.0f} s"


def _clock(run: Callable[[], bool], verdicts: list[bool]) -> float:
    """Seconds one call of `run` takes; its verdict is appended to `verdicts`."""
    start = time.perf_counter()
    verdicts.append(run())
    return time.perf_counter() - start


def timed(run: Callable[[], bool]) -> Result:
    """Verdict of the first call of `run`, and its wall time.

    A first call under WARM_UP_BELOW s is a warm-up, then the fastest of up to REPEATS calls
    while their total stays under WARM_UP_BELOW s; a first call under RETRY_BELOW s is run once
    more and the faster shown. On a shared two-core machine one call can wait seconds for a core.
    """
    verdicts: list[bool] = []
    settle()
    try:
        first = _clock(run, verdicts)
        if first < WARM_UP_BELOW:
            times: list[float] = []
            while len(times) < REPEATS and sum(times) < WARM_UP_BELOW:
                times.append(_clock(run, verdicts))
        elif first < RETRY_BELOW:
            times = [first, _clock(run, verdicts)]
        else:
            times = [first]
    except Exception as e:  # a checker that breaks is a result of the benchmark, not its end
        message = (str(e).strip().splitlines() or [""])[0][:200]
        return Result("error", None, f"{type(e).__name__}: {message}")
    note = None if len(set(verdicts)) == 1 else f"the verdicts of {len(verdicts)} calls differ: {verdicts}"
    return Result("pass" if verdicts[0] else "FAIL", min(times), note)


def gradtwin_method(method: str) -> tuple[str | None, bool]:
    """(the method to pass, whether its cost grows with the square of the parameters).

    check_gradients without a `method` argument is today's exhaustive checker: nothing is passed.
    """
    if "method" not in inspect.signature(check_gradients).parameters:
        if method != "auto":
            raise UsageError(f"--method must be 'auto' (this check_gradients takes no method); got {method!r}")
        return None, True
    return method, method == "exhaustive"


def runners(pb: Problem, method: str | None) -> dict[str, Callable[[Callable[..., Any]], bool]]:
    """tool -> run(hand_gradients) -> True when that checker passes them at `pb`."""
    return {
        "gradtwin": lambda g: run_gradtwin(pb, g, method),
        "gradcheck": lambda g: run_gradcheck(pb, g, fast=False),
        "gradcheck-fast": lambda g: run_gradcheck(pb, g, fast=True),
        "jax": lambda g: run_jax(pb, g),
    }


def warm_up(tools: list[str], method: str | None) -> None:
    """Run each tool once on a tiny problem, so that no row carries its first call's imports and setup."""
    runs = runners(problem(Shape(3, 4, 2, 8), "float64"), method)
    for tool in tools:
        with contextlib.suppress(Exception):  # a tool that fails here fails in its rows too, and says why
            runs[tool](hand_gradients)


def measure(
    shape: Shape, dtype: str, tools: list[str], budget: float, method: str, jax_ok: bool
) -> list[tuple[str, dict[str, Result]]]:
    """One (size, dtype): the loss's own cost, then every case through every tool."""
    pb = problem(shape, dtype)
    t_fb, t_f = loss_times(pb)
    passed, quadratic = gradtwin_method(method)
    estimates = {
        "gradcheck": shape.params * (2 * t_f + GRADCHECK_PER_ELEMENT),
        "gradtwin": GRADTWIN_PER_PAIR * shape.params**2 if quadratic else 0.0,
    }
    runs = runners(pb, passed)
    rows = []
    for case in CASES:
        results: dict[str, Result] = {"fwd+bwd": Result("", t_fb)}
        for tool in tools:
            if tool == "jax" and not jax_ok:
                results[tool] = Result("not installed")
            elif estimates.get(tool, 0.0) > budget:
                results[tool] = Result(f"skipped (est. {estimates[tool]:,.0f} s)")
            else:
                run, grads = runs[tool], planted(case)
                results[tool] = timed(lambda run=run, grads=grads: run(grads))
            print(f"{shape.params:>9,} {dtype} {case:<24} {tool:<15} {results[tool].cell(case)}", flush=True)
        rows.append((case, results))
    return rows


def table(measured: list[tuple[Shape, str, list[tuple[str, dict[str, Result]]]]], tools: list[str]) -> list[str]:
    head = ["params", "MLP d-h-c, batch", "dtype", "case", "fwd+bwd"]
    for tool in tools:
        head.append(TOOL_TITLES[tool])
        if tool == "gradtwin":
            head.append("gradtwin / fwd+bwd")
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---:" if h == "params" else "---" for h in head) + "|"]
    for shape, dtype, rows in measured:
        for case, results in rows:
            t_fb = results["fwd+bwd"].seconds or 0.0
            cells = [f"{shape.params:,}", str(shape), dtype, case, f"{t_fb * 1e3:.3g} ms"]
            for tool in tools:
                r = results[tool]
                cells.append(r.cell(case))
                if tool == "gradtwin":
                    cells.append(f"{r.seconds / t_fb:,.0f}x" if r.seconds is not None and t_fb > 0 else "-")
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def summary(measured: list[tuple[Shape, str, list[tuple[str, dict[str, Result]]]]], tools: list[str]) -> list[str]:
    """Right verdicts per tool and dtype, and every error and unsteady verdict met."""
    lines = ["| tool | dtype | right verdicts | false failures (correct case) | bugs missed |", "|---|---|---|---|---|"]
    dtypes = list(dict.fromkeys(dtype for _, dtype, _ in measured))
    for tool in tools:
        for dtype in dtypes:
            outcomes = [
                (case, r[tool].right(case)) for _, dt, rows in measured if dt == dtype for case, r in rows
            ]  # fmt: skip
            judged = [(c, ok) for c, ok in outcomes if ok is not None]
            false = sum(1 for c, ok in judged if not ok and c == "correct")
            missed = sum(1 for c, ok in judged if not ok and c != "correct")
            right = sum(1 for _, ok in judged if ok)
            lines.append(f"| {TOOL_TITLES[tool]} | {dtype} | {right} of {len(judged)} | {false} | {missed} |")
    notes = [
        f"- {TOOL_TITLES[tool]}, {shape.params:,} params, {dtype}, {case}: {r[tool].note}"
        for shape, dtype, rows in measured
        for case, r in rows
        for tool in tools
        if r[tool].note
    ]
    return lines + (["", "Notes (the verdict shown is the first call's):", *notes] if notes else [])


def legend(budget: float) -> str:
    """What the table shows, as one wrapped paragraph."""
    text = (
        "A tanh MLP with mean cross-entropy, its hand gradients derived in NumPy (correct, or with one planted "
        "bug) and given to each checker: to gradtwin as manual_gradients, to gradcheck as the backward of a "
        "custom torch.autograd.Function, to jax as the bwd of a jax.custom_vjp. Each cell holds a wall time and "
        "the first call's verdict; '(wrong)' marks a correct case failed or a bug passed. Each tool first runs "
        f"once on a tiny problem; then, in a row, a first call under {WARM_UP_BELOW:g} s is a warm-up and the "
        f"fastest of up to {REPEATS} calls after it is shown, and one under {RETRY_BELOW:g} s is run twice and "
        "the faster shown. fwd+bwd: one forward and backward of the torch loss, the fastest of repeats; "
        "'gradtwin / fwd+bwd' divides gradtwin's time by it. Default gradcheck (2 forwards per parameter), and "
        "gradtwin where it has no linear-cost method, are skipped where their time is estimated above "
        f"{budget:g} s (--budget). On a mismatch fast_mode recomputes the slow Jacobians only to print them; "
        "that is skipped here, so its time is that of the verdict."
    )
    return textwrap.fill(text, 100)


def machine(jax_v: str | None, method: str | None) -> str:
    cpu = cpu_name()
    gradtwin_v = importlib.metadata.version("gradtwin")
    how = f"method={method!r}" if method is not None else "no method argument (exhaustive)"
    return (
        f"{os.cpu_count()} CPUs ({cpu}), torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"jax {jax_v or 'not installed'}, NumPy {np.__version__}, Python {platform.python_version()}; "
        f"gradtwin {gradtwin_v} check_gradients with {how}"
    )


def parse_sizes(text: str) -> list[Shape]:
    """'100,1000' (keys of SIZES) or 'D-H-C' / 'D-H-C@N' (batch 256 by default)."""
    shapes = []
    for item in (s.strip() for s in text.split(",") if s.strip()):
        try:
            if "-" in item:
                widths, _, n = item.partition("@")
                d, h, c = (int(w) for w in widths.split("-"))
                shapes.append(Shape(d, h, c, int(n) if n else 256))
                continue
            shapes.append(SIZES[int(float(item))])
        except (ValueError, KeyError):
            raise UsageError(
                f"--sizes must be a comma list of {', '.join(map(str, SIZES))} or D-H-C[@N]; got {item!r}"
            ) from None
    if not shapes:
        raise UsageError(f"--sizes must name at least one size; got {text!r}")
    return shapes


def parse_list(text: str, allowed: tuple[str, ...], what: str) -> list[str]:
    items = [s.strip() for s in text.split(",") if s.strip()]
    bad = [s for s in items if s not in allowed]
    if bad or not items:
        raise UsageError(f"{what} must be a comma list of {', '.join(allowed)}; got {text!r}")
    return list(dict.fromkeys(items))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="sizes 10^2 and 10^3 only (unless --sizes)")
    parser.add_argument("--sizes", help=f"comma list of {', '.join(map(str, SIZES))} or D-H-C[@N]")
    parser.add_argument("--dtypes", default=",".join(DTYPES), help="comma list of float64, float32")
    parser.add_argument("--tools", default=",".join(TOOLS), help=f"comma list of {', '.join(TOOLS)}")
    parser.add_argument("--budget", type=float, default=60.0, help="skip an exhaustive check estimated above this (s)")
    parser.add_argument("--method", default="auto", help="check_gradients method, where it takes one")
    parser.add_argument("--out", default=str(HERE / "checker_bench.md"), help="markdown file to write")
    args = parser.parse_args(argv)
    try:
        default_sizes = ",".join(map(str, QUICK_SIZES if args.quick else SIZES))
        shapes = parse_sizes(args.sizes if args.sizes is not None else default_sizes)
        dtypes = parse_list(args.dtypes, DTYPES, "--dtypes")
        tools = parse_list(args.tools, TOOLS, "--tools")
        passed, _ = gradtwin_method(args.method)
        jax_v = jax_version() if "jax" in tools else None
        started = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
        settle()
        warm_up([t for t in tools if t != "jax" or jax_v is not None], passed)
        measured = []
        with progress_bar(len(shapes) * len(dtypes), "checker_bench", unit="case") as bar:
            for shape in shapes:
                for dtype in dtypes:
                    bar.set_description(f"checker_bench {shape} {dtype}", refresh=False)
                    found = measure(shape, dtype, tools, args.budget, args.method, jax_v is not None)
                    measured.append((shape, dtype, found))
                    bar.update(1)
        text = "\n".join(
            [
                "# Gradient checkers at scale: gradtwin, torch gradcheck, jax check_grads",
                "",
                f"Machine: {machine(jax_v, passed)}. Run {started}{' (quick mode)' if args.quick else ''}.",
                "",
                f"Command: `python comparisons/checker_bench.py {' '.join(sys.argv[1:] if argv is None else argv)}`",
                "",
                legend(args.budget),
                "",
                *table(measured, tools),
                "",
                *summary(measured, tools),
                "",
            ]
        )
        atomic_write_text(args.out, text, force=True)
    except GradtwinError as e:
        print(f"checker_bench: {e}", file=sys.stderr)
        return e.exit_code
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

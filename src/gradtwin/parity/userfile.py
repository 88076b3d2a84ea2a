"""Load a user's model file for `gradtwin check --file` and run the gradient check on it.

The file must define
    manual_gradients(params, X, Y) -> dict   hand-derived, on NumPy arrays
    torch_loss(params, X, Y) -> 0-d tensor   the same loss in PyTorch
    make_problem() -> (params, (X, Y))       a small problem: dict of arrays, tuple of data arrays
and may define manual_loss(params, X, Y) (compared first) and gradient_scale(params, X, Y)
(sum|terms| of each gradient element, replacing the estimate from autograd). Any problem in
the file becomes one UsageError line: what went wrong and where, never a traceback.
"""

from __future__ import annotations

import importlib.util
import os
import traceback
from collections.abc import Callable
from types import ModuleType
from typing import Any

from gradtwin.errors import UsageError
from gradtwin.parity.gradcheck import GradientReport, check_gradients

REQUIRED = ("manual_gradients", "torch_loss", "make_problem")


def load(path: str) -> ModuleType:
    """Import the file at `path` as a module, or raise UsageError saying why it cannot be."""
    if not os.path.isfile(path):
        raise UsageError(f"--file {path!r}: no such file")
    spec = importlib.util.spec_from_file_location("gradtwin_user_model", path)
    if spec is None or spec.loader is None:
        raise UsageError(f"--file {path!r}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except SyntaxError as e:
        raise UsageError(f"{path} line {e.lineno}: syntax error: {e.msg}") from None
    except Exception as e:
        raise UsageError(f"{path}: importing it raised {_where(e, path)}") from None
    missing = [name for name in REQUIRED if not callable(getattr(module, name, None))]
    if missing:
        raise UsageError(f"{path} must define {', '.join(REQUIRED)}; missing: {', '.join(missing)}")
    return module


def check_file(
    path: str,
    dtype: str = "float64",
    device: str = "cpu",
    allow_kinks: bool = False,
    method: str = "auto",
    seed: int = 0,
) -> GradientReport:
    """Load `path`, build its problem and check its gradients (check_gradients' method and seed)."""
    module = load(path)
    problem = _call(module.make_problem, "make_problem", path)
    if not (isinstance(problem, tuple) and len(problem) == 2 and isinstance(problem[0], dict)):
        got = type(problem).__name__
        raise UsageError(f"{path}: make_problem() must return (params dict, (X, Y) data tuple); got {got}")
    params, data = problem
    return _call(
        lambda: check_gradients(
            _wrapped(module.manual_gradients, "manual_gradients", path),
            _wrapped(module.torch_loss, "torch_loss", path),
            params,
            data,
            dtype=dtype,
            device=device,
            manual_loss=_optional(module, "manual_loss", path),
            scale=_optional(module, "gradient_scale", path),
            allow_kinks=allow_kinks,
            method=method,
            seed=seed,
        ),
        "the check",
        path,
    )


def _optional(module: ModuleType, name: str, path: str) -> Callable[..., Any] | None:
    fn = getattr(module, name, None)
    return _wrapped(fn, name, path) if callable(fn) else None


def _wrapped(fn: Callable[..., Any], name: str, path: str) -> Callable[..., Any]:
    """`fn`, with any exception it raises turned into one UsageError line naming it."""

    def call(*args: Any) -> Any:
        return _call(lambda: fn(*args), name, path)

    return call


def _call(fn: Callable[[], Any], name: str, path: str) -> Any:
    try:
        return fn()
    except UsageError as e:
        if str(e).startswith(path):
            raise
        raise UsageError(f"{path}: {e}") from None
    except Exception as e:
        raise UsageError(f"{path}: {name} raised {_where(e, path)}") from None


def _where(e: BaseException, path: str) -> str:
    """'ValueError: message (line N)', with the line of the user's file where it was raised."""
    target = os.path.realpath(path)
    frames = [f for f in traceback.extract_tb(e.__traceback__) if os.path.realpath(f.filename) == target]
    at = f" (line {frames[-1].lineno})" if frames else ""
    first = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {first}{at}" if first else f"{type(e).__name__}{at}"

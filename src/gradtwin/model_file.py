"""A model written in your own Python file: loaded, validated, and made a `Model` every command can run.

The file defines (the README's table, "From the command line", says the same)
    manual_gradients(params, X, Y) -> dict   hand-derived gradients, same keys and shapes as params, and
                                             optionally dL/dT of intermediates T torch_loss taps (gradtwin.tap)
    torch_loss(params, X, Y) -> 0-d tensor   the same loss in PyTorch
    make_problem() -> (params, (X, Y))       a small problem: dict of arrays, tuple of data arrays
and optionally
    manual_loss(params, X, Y)                the hand-written loss (needed to train: compare, train)
    gradient_scale(params, X, Y)             sum|terms| of each gradient element (the checker's scale)
    sample_problem(rng) -> (params, data)    the checker's points beyond make_problem()'s
    make_data() -> (X, Y)                    the data compare and train use (default make_problem()'s)
    init_params(X, Y) -> params              the start of training (default make_problem()'s params)
    predict(params, X) -> labels (n,)        class labels, for a classifier's accuracy (NumPy)
    LR, ITERATIONS                           compare's and train's defaults (0.1 and 300 otherwise)
Every mistake in the file is one UsageError line naming the file, and the line where it happened.
"""

from __future__ import annotations

import ast
import importlib.util
import math
import os
import sys
import traceback
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any

import numpy as np
import torch

from gradtwin.data import Dataset
from gradtwin.errors import GradtwinError, UsageError
from gradtwin.models import Model

REQUIRED = ("manual_gradients", "torch_loss", "make_problem")
TO_TRAIN = ("manual_loss",)  # what compare and train need beyond what the checker needs

Params = dict[str, Any]
Problem = tuple[Params, Any]  # (params, data): data a tuple (X, Y, ...), one array or a Dataset


def load(path: str) -> ModuleType:
    """Import the file at `path` as a module, or raise UsageError saying why it cannot be."""
    if not os.path.isfile(path):
        raise UsageError(f"--file {path!r}: no such file")
    spec = importlib.util.spec_from_file_location("gradtwin_user_model", path)
    if spec is None or spec.loader is None:
        raise UsageError(f"--file {path!r}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    cached, sys.dont_write_bytecode = sys.dont_write_bytecode, True  # no __pycache__ left beside your file
    try:
        spec.loader.exec_module(module)
    except SyntaxError as e:
        raise UsageError(f"{path} line {e.lineno}: syntax error: {e.msg}") from None
    except Exception as e:
        raise UsageError(f"{path}: importing it raised {where(e, path)}") from None
    finally:
        sys.dont_write_bytecode = cached
    missing = [name for name in REQUIRED if not callable(getattr(module, name, None))]
    if missing:
        raise UsageError(f"{path} must define {', '.join(REQUIRED)}; missing: {', '.join(missing)}")
    return module


def problem(module: ModuleType, path: str, name: str = "make_problem", *args: Any) -> Problem:
    """`module.<name>(*args)` checked to be (params dict, data tuple): make_problem() or sample_problem(rng)."""
    got = call(lambda: getattr(module, name)(*args), name, path)
    if not (isinstance(got, tuple) and len(got) == 2 and isinstance(got[0], dict)):
        kind = type(got).__name__
        raise UsageError(f"{path}{_at(path, name)}: {name}() must return (params dict, (X, Y) data tuple); got {kind}")
    return got


def optional(module: ModuleType, name: str, path: str) -> Callable[..., Any] | None:
    """The file's function `name`, wrapped by `wrapped`, or None when the file does not define it."""
    fn = getattr(module, name, None)
    return wrapped(fn, name, path) if callable(fn) else None


def wrapped(fn: Callable[..., Any], name: str, path: str) -> Callable[..., Any]:
    """`fn`, with any exception it raises turned into one UsageError line naming it."""

    def run(*args: Any, **kwargs: Any) -> Any:
        return call(lambda: fn(*args, **kwargs), name, path)

    return run


def call(fn: Callable[[], Any], name: str, path: str) -> Any:
    """fn(), with an exception raised inside it as one UsageError line: the file, the function, the line."""
    try:
        return fn()
    except UsageError as e:
        if str(e).startswith(path):
            raise
        raise UsageError(f"{path}: {e}") from None
    except Exception as e:
        raise UsageError(f"{path}: {name} raised {where(e, path)}") from None


def where(e: BaseException, path: str) -> str:
    """'ValueError: message (line N)', with the line of the user's file where it was raised."""
    target = os.path.realpath(path)
    frames = [f for f in traceback.extract_tb(e.__traceback__) if os.path.realpath(f.filename) == target]
    at = f" (line {frames[-1].lineno})" if frames else ""
    first = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {first}{at}" if first else f"{type(e).__name__}{at}"


def _at(path: str, name: str) -> str:
    """' line N' where the file defines or assigns `name` (a function or a constant), else ''."""
    try:
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read())
    except (OSError, SyntaxError, ValueError):
        return ""
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name:
            return f" line {node.lineno}"
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                return f" line {node.lineno}"
    return ""


def from_file(path: str | os.PathLike[str], name: str | None = None) -> Model:
    """The model `path` defines, trainable by `train` and every command (it needs `manual_loss`).

    Its manual twin is the file's manual_loss / manual_gradients (NumPy arrays in, or torch
    tensors where the engine runs in torch), its autograd twin the file's torch_loss; both
    start from init_params(X, Y) or make_problem()'s params and train on make_data() or
    make_problem()'s data. `name` defaults to the file's name, e.g. 'my_model.py'.
    """
    path = os.fspath(path)
    module = load(path)
    missing = [n for n in TO_TRAIN if not callable(getattr(module, n, None))]
    if missing:
        raise UsageError(
            f"{path} must define {', '.join(missing)}(params, X, Y) to be trained (compare, train): the manual twin's "
            "loss, which the loop records and stops on"
        )
    params, data = problem(module, path)
    dataset = _training_data(module, path, data)
    init_params = optional(module, "init_params", path)
    start = _params(init_params(dataset.X, dataset.Y) if init_params else params, path, _source(init_params))
    shapes = {k: v.shape for k, v in start.items()}
    predict = optional(module, "predict", path)
    manual_gradients = wrapped(module.manual_gradients, "manual_gradients", path)
    manual_loss = wrapped(module.manual_loss, "manual_loss", path)
    torch_loss = wrapped(module.torch_loss, "torch_loss", path)
    # Model.init_params(data) asks param_shapes(data), then init(shapes, rng): init_params(X, Y) is
    # called once, by param_shapes, and init hands out what it gave for the data last asked about.
    last: dict[str, Any] = {"shapes": shapes, "params": start}

    def param_shapes(rows: Dataset) -> dict[str, tuple[int, ...]]:
        if init_params is None and rows.X.shape[1:] != dataset.X.shape[1:]:
            raise UsageError(
                f"{path}: its params fit X of shape {_rows_shape(dataset.X)} ({dataset.name}); got X of shape "
                f"{rows.X.shape} from {rows.name}: define init_params(X, Y) to start on other data"
            )
        if init_params is not None and rows is not dataset:
            last["params"] = _params(init_params(rows.X, rows.Y), path, "init_params")
            last["shapes"] = {k: v.shape for k, v in last["params"].items()}
        elif init_params is not None:
            last["params"], last["shapes"] = start, shapes
        return dict(last["shapes"])

    def init(asked: dict[str, tuple[int, ...]], rng: np.random.Generator) -> dict[str, np.ndarray]:
        del rng  # the file's start is the start: the same for both twins and every run
        given = last["params"] if asked == last["shapes"] else start
        return {k: v.copy() for k, v in given.items()}

    def sample(rng: np.random.Generator) -> Dataset:
        X, Y = perturbed((dataset.X, dataset.Y), rng, keep_whole=True)
        return Dataset(X, Y, name=f"data drawn around {dataset.name}")

    label = name or os.path.basename(path)
    return Model(
        name=label,
        family="file",
        manual=_twin(
            f"{label} (manual)",
            loss=lambda p, X, Y: _scalar_like(manual_loss(p, X, Y), p, path),
            gradients=lambda p, X, Y: _gradients_like(manual_gradients(p, X, Y), p, path),
            predict=(lambda p, X: np.asarray(_host(predict(_host(p), _host(X))))) if predict else None,
        ),
        autograd=_twin(
            f"{label} (autograd)",
            loss=lambda p, X, Y: _checked_loss(torch_loss(p, X, Y), path),
            predict=(lambda p, X: np.asarray(_host(predict(_host(p), _host(X))))) if predict else None,
        ),
        description=_description(module, path),
        param_shapes=param_shapes,
        default_data=lambda standardized=True: dataset,
        random_data=sample,
        task="classification" if predict is not None else "regression",
        loss_name=f"the loss of {os.path.basename(path)}",
        default_lr=_constant(module, path, "LR", 0.1, integer=False),
        default_iterations=int(_constant(module, path, "ITERATIONS", 300, integer=True)),
        init=init,
        options={"file": path, "start": "init_params(X, Y)" if init_params else "make_problem()'s params"},
    )


def _twin(name: str, **functions: Callable[..., Any] | None) -> ModuleType:
    """A module-like twin holding `functions` (those that are not None), as the engines call them."""
    twin = ModuleType(name)
    for key, fn in functions.items():
        if fn is not None:
            setattr(twin, key, fn)
    return twin


def _rows_shape(X: np.ndarray) -> str:
    """(n,) or (n, d) with d written out: the shape a model's params fit, whatever the rows."""
    return "(n,)" if X.ndim == 1 else f"(n, {X.shape[1]})"


def _source(init_params: Callable[..., Any] | None) -> str:
    return "init_params" if init_params is not None else "make_problem"


def _training_data(module: ModuleType, path: str, data: tuple[Any, ...]) -> Dataset:
    """make_data()'s (X, Y), or make_problem()'s data, as the Dataset training runs on."""
    if callable(getattr(module, "make_data", None)):
        return _as_dataset(call(module.make_data, "make_data", path), path, "make_data")
    return _as_dataset(data, path, "make_problem")


def _as_dataset(data: Any, path: str, source: str) -> Dataset:
    if not (isinstance(data, (tuple, list)) and len(data) == 2):
        got = f"{len(data)} arrays" if isinstance(data, (tuple, list)) else type(data).__name__
        raise UsageError(f"{path}{_at(path, source)}: training needs {source}()'s data as (X, Y); got {got}")
    try:
        return Dataset(_host(data[0]), _host(data[1]), name=f"the data of {source}()")
    except GradtwinError as e:
        raise UsageError(f"{path}{_at(path, source)}: {e}") from None


def _params(params: Any, path: str, source: str) -> dict[str, np.ndarray]:
    if not isinstance(params, Mapping) or not params:
        got = type(params).__name__
        raise UsageError(
            f"{path}{_at(path, source)}: {source}() must give the params as a dict name -> array; got {got}"
        )
    out = {}
    for k, v in params.items():
        try:
            value = np.array(_host(v), dtype=np.float64)
        except (TypeError, ValueError):
            raise UsageError(f"{path}{_at(path, source)}: params[{k!r}] must be an array of numbers") from None
        if not np.all(np.isfinite(value)):
            raise UsageError(f"{path}{_at(path, source)}: params[{k!r}] must be finite; got {value.tolist()}")
        out[str(k)] = value
    return out


def _constant(module: ModuleType, path: str, name: str, default: float, integer: bool) -> float:
    """The file's LR or ITERATIONS, checked: a positive finite number, a whole number >= 1 for ITERATIONS."""
    value = getattr(module, name, None)
    if value is None:
        return default
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0
    if integer:
        ok = ok and float(value).is_integer()
    if not ok:
        expected = "a whole number >= 1" if integer else "a positive finite number"
        raise UsageError(f"{path}{_at(path, name)}: {name} must be {expected}; got {value!r}")
    return float(value)


def _description(module: ModuleType, path: str) -> str:
    doc = (module.__doc__ or "").strip().splitlines()
    return doc[0] if doc else f"the model of {os.path.basename(path)}"


def _host(values: Any) -> Any:
    """NumPy values of a tensor (or of a dict of them); anything else as it is."""
    if isinstance(values, Mapping):
        return {k: _host(v) for k, v in values.items()}
    if isinstance(values, torch.Tensor):
        return values.detach().cpu().numpy()
    return values


def _like(value: Any, ref: Any, what: str, path: str) -> Any:
    """`value` in the kind of array `ref` is: a tensor of ref's dtype on its device, or a NumPy array."""
    try:
        if isinstance(ref, torch.Tensor):
            if isinstance(value, torch.Tensor):
                return value.detach().to(dtype=ref.dtype, device=ref.device)
            return torch.as_tensor(np.asarray(value), dtype=ref.dtype, device=ref.device)
        return np.asarray(_host(value), dtype=np.asarray(ref).dtype)
    except (TypeError, ValueError, RuntimeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UsageError(f"{path}: {what} must be an array of numbers; got {type(value).__name__} ({first})") from None


def _gradients_like(grads: Any, params: Mapping[str, Any], path: str) -> dict[str, Any]:
    """The hand gradients checked (every key of params, same shapes) and put in the params' arrays; other keys
    are the gradients of tapped intermediates (gradtwin.tap), which `check --file` compares and training ignores."""
    if not isinstance(grads, Mapping) or not set(params) <= set(grads):
        got = sorted(grads) if isinstance(grads, Mapping) else type(grads).__name__
        raise UsageError(f"{path}: manual_gradients returned {got} but params has {sorted(params)}")
    out = {}
    for k, p in params.items():
        g = _like(grads[k], p, f"manual_gradients()[{k!r}]", path)
        if tuple(g.shape) != tuple(p.shape):
            raise UsageError(
                f"{path}: manual_gradients()[{k!r}] must have the shape of params[{k!r}], {tuple(p.shape)}; "
                f"got {tuple(g.shape)}"
            )
        out[k] = g
    return out


def _scalar_like(value: Any, params: Mapping[str, Any], path: str) -> Any:
    """manual_loss's value as a 0-d array (or tensor) of the params' kind."""
    ref = next(iter(params.values()))
    out = _like(value, ref, "manual_loss()", path)
    if out.ndim != 0 and tuple(out.shape) != (1,):
        raise UsageError(f"{path}: manual_loss must return a number; got shape {tuple(out.shape)}")
    return out.reshape(())


def _checked_loss(value: Any, path: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor) or value.numel() != 1:
        got = f"shape {tuple(value.shape)}" if isinstance(value, torch.Tensor) else type(value).__name__
        raise UsageError(f"{path}: torch_loss must return a scalar torch tensor; got {got}")
    return value.reshape(())


def perturbed(values: Any, rng: np.random.Generator, keep_whole: bool) -> Any:
    """`values` (an array, a tensor, or a dict or tuple of them) drawn around themselves.

    Each nonzero element is multiplied by exp(z / 2), z ~ N(0, 1), so its sign is kept (a
    positive rate stays positive); each zero becomes z / 2 times the array's RMS (1 for an
    all-zero array); integer parameters become float64. With `keep_whole` (data), integer
    arrays and float arrays holding only whole numbers (class labels, counts, 0/1 targets)
    are kept as they are. Booleans and anything not numbers are always kept.
    """
    if isinstance(values, Mapping):
        return {k: perturbed(v, rng, keep_whole) for k, v in values.items()}
    if isinstance(values, (tuple, list)):
        return type(values)(perturbed(v, rng, keep_whole) for v in values)
    x = np.asarray(_host(values))
    if x.dtype.kind not in "fiu" or (keep_whole and (x.dtype.kind != "f" or np.all(x == np.round(x)))):
        return values
    x64 = x.astype(np.float64)
    z = rng.standard_normal(x64.shape)
    rms = float(np.sqrt(np.mean(x64**2))) if x64.size else 0.0
    out = np.where(x64 != 0, x64 * np.exp(z / 2), z / 2 * (rms if rms > 0 else 1.0))
    if isinstance(values, torch.Tensor):
        return torch.as_tensor(out, dtype=values.dtype if values.is_floating_point() else None, device=values.device)
    return out.astype(x.dtype) if x.dtype.kind == "f" else out

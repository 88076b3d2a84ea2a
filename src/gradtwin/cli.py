"""The command line: parses options, calls the library, prints tables or JSON. No math here."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, NoReturn

import numpy as np
import torch

from gradtwin import data as datasets
from gradtwin import distributed, labelled
from gradtwin.check import check_model
from gradtwin.devices import resolve_device
from gradtwin.engines import ENGINES, TWINS, Engine, make_engine
from gradtwin.errors import DivergedError, GradtwinError, UsageError
from gradtwin.files import atomic_write, check_target
from gradtwin.metrics import accuracy
from gradtwin.models import MODELS, Model, configure, get_model
from gradtwin.parity import finite_or_none, format_table, history_max_abs_diff, worst
from gradtwin.reference import least_squares
from gradtwin.train import TrainResult, train


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad option in one line, without the usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {one_line(message)}\n")


def one_line(text: str) -> str:
    """`text` with line breaks and other control characters escaped, so it prints as one line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _number(kind: type, low: float, strict: bool, expected: str) -> Callable[[str], Any]:
    """An argparse type: `kind(text)`, finite, above `low` (or at it unless `strict`)."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not math.isfinite(value) or value < low or (strict and value == low):
            raise argparse.ArgumentTypeError(f"expected {expected}; got {text!r}")
        return value

    return parse


positive_float = _number(float, 0.0, True, "a positive finite number")
nonnegative_float = _number(float, 0.0, False, "a finite number >= 0")
positive_int = _number(int, 1, False, "a whole number >= 1")
nonnegative_int = _number(int, 0, False, "a whole number >= 0")


def _add_data_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    g.add_argument(
        "--data",
        default=None,
        help=f"'diabetes', {', '.join(repr(k) for k in labelled.BUNDLED)} (bundled), 'synthetic', "
        "or a CSV file (default: the model's own data)",
    )
    g.add_argument("--x", default="0", help="CSV column of X: header name or 0-based position (default 0)")
    g.add_argument("--y", default="1", help="CSV column of Y: header name or 0-based position (default 1)")
    g.add_argument("--header", choices=("auto", "yes", "no"), default="auto", help="does the CSV have a header row")
    g.add_argument("--n", type=positive_int, default=200, help="rows of synthetic data (default 200)")
    g.add_argument("--noise", type=nonnegative_float, default=0.5, help="noise of synthetic data (default 0.5)")
    g.add_argument("--data-seed", type=nonnegative_int, default=0, help="seed of synthetic data (default 0)")
    g.add_argument(
        "--no-standardize",
        dest="standardize",
        action="store_false",
        help="keep X in its own units (default: centre and scale X to unit variance)",
    )


def _add_run_options(p: argparse.ArgumentParser, iterations: int = 300) -> None:
    p.add_argument("--model", default="linear1d", help=f"one of {', '.join(MODELS)} (default linear1d)")
    p.add_argument(
        "--lr", type=positive_float, default=None, help="learning rate, a positive finite number (default: the model's)"
    )
    p.add_argument("--iterations", type=positive_int, default=None, help="iteration budget (default: the model's)")
    p.add_argument("--hidden", type=positive_int, default=None, help="mlp only: hidden units (default 32)")
    p.add_argument("--activation", default=None, help="mlp only: tanh, relu or sigmoid (default: the model's)")
    p.add_argument("--target-loss", type=nonnegative_float, default=None, help="stop once the loss is at or below this")
    p.add_argument(
        "--seed", type=nonnegative_int, default=None, help="start from seeded random parameters (default: zeros)"
    )
    p.add_argument("--dtype", choices=("float32", "float64"), default="float64", help="(default float64)")
    p.add_argument("--device", default="cpu", help="auto, cpu, cuda, cuda:N or mps (default cpu)")
    p.add_argument(
        "--array",
        choices=("auto", "numpy", "torch"),
        default="auto",
        help="arrays of the manual twin: numpy (cpu only) or torch tensors without autograd, the same source "
        "that runs on a GPU (default auto: numpy on the cpu, torch elsewhere)",
    )
    p.add_argument("--record-every", type=positive_int, default=1, help="keep every k-th iteration in the history")
    p.add_argument(
        "--check-every",
        type=positive_int,
        default=64,
        help="check the stop rules every k iterations (one host sync each); results are the same for any k",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument(
        "--nproc",
        type=int,
        default=1,
        help="data-parallel processes on this machine, each with a shard of the rows, gradients averaged by an "
        "all-reduce (gloo on cpu, NCCL with one GPU each on cuda); under torchrun its variables decide instead",
    )
    p.add_argument("--force", action="store_true", help="overwrite output files that exist")
    _add_data_options(p)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="gradtwin", description="Gradient descent built twice: by hand and by autograd.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    compare = sub.add_parser("compare", help="train both twins from the same start and compare them step by step")
    _add_run_options(compare)
    compare.add_argument("--plot", metavar="FILE.png", help="draw both loss curves and their difference")

    tr = sub.add_parser("train", help="train one twin")
    tr.add_argument("--engine", choices=ENGINES, default="manual", help="(default manual)")
    _add_run_options(tr)
    tr.add_argument("--history", metavar="FILE.csv", help="write the recorded history as CSV")

    sw = sub.add_parser("sweep", help="final loss, stability and convergence rate at many lrs (exact engine)")
    sw.add_argument("--model", default="linear", help="linear1d or linear (default linear)")
    sw.add_argument("--lr-min", type=float, default=None, help="smallest lr (default 0.01 x the stable bound)")
    sw.add_argument("--lr-max", type=float, default=None, help="largest lr (default 1.2 x the stable bound)")
    sw.add_argument("--lrs", type=int, default=200, help="how many learning rates, log-spaced (default 200)")
    sw.add_argument("--iterations", type=int, default=300, help="iterations at each lr (default 300)")
    sw.add_argument("--seed", type=int, default=None, help="start from seeded random parameters (default: zeros)")
    sw.add_argument("--dtype", choices=("float32", "float64"), default="float64", help="(default float64)")
    sw.add_argument("--plot", metavar="FILE.png", help="draw the final loss against the learning rate")
    sw.add_argument("--json", action="store_true", help="print the sweep as JSON")
    sw.add_argument("--force", action="store_true", help="overwrite output files that exist")
    _add_data_options(sw)

    check = sub.add_parser(
        "check", help="gradient parity of a built-in model's twins, or of your own file (--file), vs finite diffs"
    )
    which = check.add_mutually_exclusive_group()
    which.add_argument("--model", default="linear1d", help=f"one of {', '.join(MODELS)} or 'all'")
    which.add_argument(
        "--file",
        metavar="MY_MODEL.py",
        help="your file defining manual_gradients(params, X, Y), torch_loss(params, X, Y) and make_problem()",
    )
    check.add_argument("--allow-kinks", action="store_true", help="with --file: accept differing subgradients at kinks")
    check.add_argument("--points", type=positive_int, default=200, help="random data sets and parameters (default 200)")
    check.add_argument("--dtype", choices=("float32", "float64"), default="float64")
    check.add_argument("--device", default="cpu")
    check.add_argument("--seed", type=nonnegative_int, default=0)
    check.add_argument("--json", action="store_true")

    sub.add_parser("list", help="the registered models: parameters, default data and settings")
    return parser


def preflight(args: argparse.Namespace, outputs: Sequence[str | None] = ()) -> None:
    """Refuse a device or an output path that cannot work before any data is read or trained on."""
    resolve_device(args.device, args.dtype)
    for path in outputs:
        if path:
            check_target(path, getattr(args, "force", False))


def _model(args: argparse.Namespace) -> Model:
    """The model --model names, with --hidden/--activation applied; fills in its default lr/iterations."""
    model = configure(get_model(args.model), hidden=args.hidden, activation=args.activation)
    if args.lr is None:
        args.lr = model.default_lr
    if args.iterations is None:
        args.iterations = model.default_iterations
    return model


def load_data(args: argparse.Namespace, model: Model) -> datasets.Dataset:
    """The data the options name, standardized unless --no-standardize."""
    if args.data is None:
        data = model.default_data()
        return data if args.standardize or not data.standardized else _unstandardized(model)
    if args.data in labelled.BUNDLED:  # held out and prepared by their loaders
        return labelled.BUNDLED[args.data](True)
    if args.data == "synthetic" and model.synthetic is not None:
        return model.synthetic(args.n, args.data_seed)
    if args.data == "diabetes":
        data = datasets.load_diabetes_bmi() if model.x_ndim == 1 else datasets.load_diabetes_all()
    elif args.data == "synthetic":
        data = datasets.synthetic_linear1d(n=args.n, noise=args.noise, seed=args.data_seed)
    else:
        data = datasets.load_csv(args.data, x=args.x, y=args.y, header=args.header)
    if model.x_ndim == 2 and data.X.ndim == 1:
        data = replace(data, X=data.X.reshape(-1, 1))  # one feature, as a column
    return datasets.standardize(data) if args.standardize else data


def _unstandardized(model: Model) -> datasets.Dataset:
    data = model.default_data()
    X = data.X * data.x_std + data.x_mean
    test = data.test
    if test is not None:
        test = datasets.Dataset(test.X * data.x_std + data.x_mean, test.Y, test.name, data.x_name, data.y_name)
    return datasets.Dataset(X, data.Y, data.name, data.x_name, data.y_name, test=test)


def _run(
    args: argparse.Namespace,
    engine_name: str,
    data: datasets.Dataset,
    model: Model,
    progress: Callable[[int], None] | None,
) -> TrainResult:
    array = args.array if engine_name == "manual" else "auto"
    engine: Engine = make_engine(engine_name, model, args.dtype, distributed.setup(args.device), array)
    rows: datasets.Dataset = data
    if distributed.world_size() > 1:
        rows = distributed.shard(data, distributed.rank(), distributed.world_size())
        engine = distributed.DistributedEngine(engine, rows)
    result = train(
        engine,
        rows,
        lr=args.lr,
        iterations=args.iterations,
        target_loss=args.target_loss,
        init=model.init_params(data, args.seed),
        record_every=args.record_every,
        check_every=args.check_every,
        progress=progress if distributed.rank() == 0 else None,
    )
    if rows is not data and result.stable_lr is not None:
        # the loop saw only this process's rows; the stable rate belongs to all of them
        stable = model.stable_lr(data.X)
        if stable is not None:
            result.message = result.message.replace(f"{result.stable_lr:.6g}", f"{stable:.6g}")
            result.stable_lr = stable
    result.extra["array"] = "torch" if getattr(engine, "use_torch", True) else "numpy"
    result.extra["processes"] = distributed.world_size()
    return result


def _launch(args: argparse.Namespace, argv: Sequence[str] | None) -> int | None:
    """With --nproc N > 1 outside torchrun: start N processes running this command, else None."""
    if args.nproc < 1:
        raise UsageError(f"nproc must be an integer >= 1; got {args.nproc}")
    if args.nproc == 1 or "WORLD_SIZE" in os.environ:
        return None
    model = _model(args)
    load_data(args, model)  # a data error is reported once, here, not by every process
    device = resolve_device(args.device, args.dtype)
    if device.type == "cuda" and args.nproc > torch.cuda.device_count():
        raise UsageError(f"nproc {args.nproc} on cuda needs one GPU per process; {torch.cuda.device_count()} here")
    if device.type not in ("cpu", "cuda"):
        raise UsageError(f"--nproc runs on cpu (gloo) or cuda (NCCL); got device {str(device)!r}")
    return distributed.spawn(args.nproc, main, list(sys.argv[1:] if argv is None else argv))


def _progress(total: int, label: str) -> tuple[Callable[[int], None], Any]:
    """A tqdm bar on stderr, shown only on a terminal and only after a second."""
    from tqdm import tqdm

    bar = tqdm(total=total, desc=label, file=sys.stderr, disable=not sys.stderr.isatty(), delay=1.0, leave=False)
    return bar.update, bar


def result_json(r: TrainResult) -> dict[str, Any]:
    return {
        "model": r.model,
        "engine": r.engine,
        "device": r.device,
        "dtype": r.dtype,
        "params": {k: v.tolist() for k, v in r.params.items()},
        "loss": r.loss,
        "iterations": r.iterations,
        "stop_reason": r.stop_reason,
        "seconds": r.seconds,
        "lr": r.lr,
        "message": r.message,
    }


def _print_json(obj: Any) -> None:
    print(json.dumps(finite_or_none(obj), indent=2, allow_nan=False))


def _fmt(v: Any, digits: int = 10) -> str:
    """Numbers for the tables; a NaN or an infinity reads 'non-finite', never 'nan' or 'inf'."""
    arr = np.asarray(v, dtype=np.float64)
    if arr.ndim == 0:
        return f"{float(arr):.{digits}g}" if math.isfinite(arr) else "non-finite"
    return "[" + ", ".join(_fmt(x, 6) for x in arr.ravel()) + "]"


def cmd_compare(args: argparse.Namespace, argv: Sequence[str] | None = None) -> int:
    launched = _launch(args, argv)
    if launched is not None:
        return launched
    model = _model(args)
    preflight(args, [args.plot])
    data = load_data(args, model)
    results = []
    for name in TWINS:
        update, bar = _progress(args.iterations, name)
        with bar:
            results.append(_run(args, name, data, model, update))
    manual, autograd = results
    if distributed.rank() != 0:
        return _exit_for(results)  # process 0 reports for all
    diffs = history_max_abs_diff(manual.history, autograd.history)
    if args.plot:
        from gradtwin.plots import plot_compare

        plot_compare(manual, autograd, args.plot, force=args.force)
    if model.task == "classification":
        scores = _accuracies(args, model, results, data)
        if args.json:
            _print_json(
                {"manual": result_json(manual), "autograd": result_json(autograd), "max_abs_diff": diffs} | scores
            )
        else:
            print(_classifier_table(manual, autograd, diffs, scores, data))
        return _exit_for(results)
    try:
        lsq = least_squares(data)
    except np.linalg.LinAlgError:  # data at the edge of float64's range; the table says n/a
        lsq = {name: np.full(np.shape(v), np.nan) for name, v in manual.params.items()}
    if args.json:
        _print_json(
            {
                "manual": result_json(manual),
                "autograd": result_json(autograd),
                "max_abs_diff": diffs,
                "least_squares": {k: v.tolist() for k, v in lsq.items()},
            }
        )
    else:
        print(_compare_table(manual, autograd, diffs, lsq, data))
    return _exit_for(results)


def _accuracies(
    args: argparse.Namespace, model: Model, results: Sequence[TrainResult], data: datasets.Dataset
) -> dict[str, dict[str, float]]:
    """Each twin's accuracy, by its own predictions, on the training rows and the held-out rows."""
    sets = {"train_accuracy": data} | ({"test_accuracy": data.test} if data.test is not None else {})
    engines = {r.engine: make_engine(r.engine, model, args.dtype, args.device) for r in results}
    return {key: {r.engine: accuracy(engines[r.engine], r.params, rows) for r in results} for key, rows in sets.items()}


def _classifier_table(
    m: TrainResult, a: TrainResult, diffs: dict[str, float], scores: dict[str, dict[str, float]], data: datasets.Dataset
) -> str:
    held_out = f", {data.test.n} held out" if data.test is not None else ", nothing held out"
    lines = [
        f"{m.model} on {data.name}: n={data.n} training rows{held_out}, {data.x_name}; "
        f"{m.dtype} on {a.device}; lr={m.lr:g}",
        "",
    ]
    rows: list[tuple[str, str, str]] = [("", "manual (NumPy)", "autograd (PyTorch)")]
    rows.append(("loss", f"{m.loss:.10g}", f"{a.loss:.10g}"))
    for key, label in (("train_accuracy", "training accuracy"), ("test_accuracy", "held-out accuracy")):
        if key in scores:
            rows.append((label, f"{scores[key]['manual']:.2%}", f"{scores[key]['autograd']:.2%}"))
    rows.append(("iterations", str(m.iterations), str(a.iterations)))
    rows.append(("stop reason", m.stop_reason, a.stop_reason))
    rows.append(("time / iteration", _time(m.seconds_per_iteration), _time(a.seconds_per_iteration)))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines += [
        "",
        f"largest |manual - autograd| over the whole run ({m.history.iteration.size} recorded iterations):",
        "  " + ", ".join(f"{k} {v:.3g}" for k, v in diffs.items()),
    ]
    lines += [f"{r.engine}: {r.message}" for r in (m, a) if r.message]
    return "\n".join(lines)


def cmd_list(args: argparse.Namespace) -> int:
    """Each model: what it is, its parameters' shapes on its default data, that data, its settings."""
    for model in MODELS.values():
        data = model.default_data()
        shapes = ", ".join(f"{k} {tuple(v)}" for k, v in model.param_shapes(data).items())
        held = f" + {data.test.n} held out" if data.test is not None else ""
        options = "".join(f", {k}={v}" for k, v in model.options.items())
        print(f"{model.name}: {model.description}")
        print(f"  parameters: {shapes}")
        print(f"  default data: {data.name} ({data.n} rows{held}); {model.task}")
        print(f"  defaults: lr={model.default_lr:g}, iterations={model.default_iterations}{options}")
    return 0


def _compare_table(
    m: TrainResult, a: TrainResult, diffs: dict[str, float], lsq: dict[str, np.ndarray], data: datasets.Dataset
) -> str:
    x_desc = f"{data.x_name}{' (standardized)' if data.standardized else ''}"
    start = (
        "zeros"
        if m.history.iteration.size == 0 or all(not np.any(v[0]) for v in m.history.params.values())
        else "seeded random values"
    )
    lines = [
        f"{m.model} on {data.name}: n={data.n}, x={x_desc}, y={data.y_name}; "
        f"{m.dtype} on {a.device}; lr={m.lr:g}; start: {start}",
        "",
    ]
    arrays = "NumPy" if m.extra.get("array") == "numpy" else "torch, no autograd"
    rows: list[tuple[str, str, str, str]] = [("", f"manual ({arrays})", "autograd (PyTorch)", "least squares")]
    for name in m.params:
        rows.append((name, _fmt(m.params[name]), _fmt(a.params[name]), _fmt(lsq.get(name, np.nan))))
    lsq_loss = float(np.mean((data.X.reshape(data.n, -1) @ np.atleast_1d(lsq["w"]) + lsq["b"] - data.Y) ** 2))
    rows.append(("loss", _fmt(m.loss), _fmt(a.loss), _fmt(lsq_loss)))
    rows.append(("iterations", str(m.iterations), str(a.iterations), ""))
    rows.append(("stop reason", m.stop_reason, a.stop_reason, ""))
    rows.append(("time / iteration", _time(m.seconds_per_iteration), _time(a.seconds_per_iteration), ""))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    rec = m.history.iteration.size
    lines += [
        "",
        f"largest |manual - autograd| over the whole run ({rec} recorded iterations):",
        "  " + ", ".join(f"{k} {_fmt(v, 3)}" for k, v in diffs.items()),
    ]
    for r in (m, a):
        if r.message:
            lines.append(f"{r.engine}: {r.message}")
    return "\n".join(lines)


def _time(seconds: float) -> str:
    return f"{seconds * 1e6:.3g} us" if seconds < 1e-3 else f"{seconds * 1e3:.3g} ms"


def _exit_for(results: Sequence[TrainResult]) -> int:
    for r in results:
        if r.stop_reason == "diverged":
            raise DivergedError(f"{r.engine}: {r.message}")
    return 0


def cmd_train(args: argparse.Namespace, argv: Sequence[str] | None = None) -> int:
    launched = _launch(args, argv)
    if launched is not None:
        return launched
    model = _model(args)
    preflight(args, [args.history])
    data = load_data(args, model)
    update, bar = _progress(args.iterations, args.engine)
    with bar:
        result = _run(args, args.engine, data, model, update)
    if distributed.rank() != 0:
        return _exit_for([result])  # process 0 reports for all
    if args.history:
        _write_history(result, args.history, args.force)
    if args.json:
        _print_json(result_json(result))
    else:
        params = ", ".join(f"{k} = {_fmt(v)}" for k, v in result.params.items())
        print(
            f"{result.model} ({result.engine}, {result.dtype} on {result.device}): {params}; "
            f"loss {_fmt(result.loss)} after {result.iterations} iterations, stopped by {result.stop_reason}; "
            f"{_time(result.seconds_per_iteration)} per iteration"
        )
    return _exit_for([result])


def _write_history(result: TrainResult, path: str, force: bool) -> None:
    h = result.history
    columns = {"iteration": h.iteration}
    for name, values in h.params.items():
        flat = values.reshape(values.shape[0], -1)
        if values.ndim == 1:
            columns[name] = flat[:, 0]
        else:
            columns.update({f"{name}[{j}]": flat[:, j] for j in range(flat.shape[1])})
    columns["loss"] = h.loss

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(",".join(columns) + "\n")
            for row in zip(*columns.values(), strict=True):
                f.write(",".join(repr(int(v)) if i == 0 else repr(float(v)) for i, v in enumerate(row)) + "\n")

    atomic_write(path, write, force=force)


def cmd_check(args: argparse.Namespace) -> int:
    if args.file is not None:
        return _check_file(args)
    names = list(MODELS) if args.model == "all" else [get_model(args.model).name]
    preflight(args)
    checks = []
    for name in names:
        found = worst(check_model(MODELS[name], args.points, args.dtype, args.device, args.seed))
        for c in found:
            c.comparison = f"{name}: {c.comparison}" if len(names) > 1 else c.comparison
        checks += found
    if args.json:
        from gradtwin.parity import to_json

        print(to_json(checks))
    else:
        print(f"gradient parity at {args.points} random points per model, {args.dtype} on {args.device}")
        print(format_table(checks))
        for c in checks:
            if not c.ok:
                print(c.message())
    return 0 if all(c.ok for c in checks) else 1


def cmd_sweep(args: argparse.Namespace) -> int:
    from gradtwin.exact import ExactEngine, sweep
    from gradtwin.train import check_lr

    model = get_model(args.model)
    engine = ExactEngine(model, args.dtype)
    if args.lrs < 2:
        raise UsageError(f"lrs must be >= 2; got {args.lrs}")
    if args.iterations < 0:
        raise UsageError(f"iterations must be >= 0; got {args.iterations}")
    data = load_data(args, model)
    start = model.init_params(data, args.seed)
    traj = engine.trajectory(data, start, 1.0)
    bound = 2.0 / float(traj.lam.max())
    lr_min = check_lr(args.lr_min) if args.lr_min is not None else 0.01 * bound
    lr_max = check_lr(args.lr_max) if args.lr_max is not None else 1.2 * bound
    if lr_min >= lr_max:
        raise UsageError(f"lr-min must be below lr-max; got {lr_min:g} and {lr_max:g}")
    result = sweep(traj, np.geomspace(lr_min, lr_max, args.lrs), args.iterations)
    if args.plot:
        from gradtwin.plots import plot_sweep

        plot_sweep(result, f"{model.name} on {data.name}", args.plot, force=args.force)
    if args.json:
        _print_json(
            {
                "model": model.name,
                "data": data.name,
                "iterations": result.iterations,
                "stable_bound": result.stable_bound,
                "fastest_lr": result.fastest_lr,
                "least_squares_loss": result.least_squares_loss,
                "lr": result.lrs.tolist(),
                "final_loss": result.final_loss.tolist(),
                "stable": result.stable.tolist(),
                "rate": result.rate.tolist(),
            }
        )
        return 0
    print(
        f"{model.name} on {data.name} (n={data.n}), {args.iterations} iterations per lr, {args.dtype}; "
        f"least-squares loss {result.least_squares_loss:.10g}"
    )
    print(
        f"stable bound 2/lambda_max = {result.stable_bound:.6g}; fastest 2/(lambda_min+lambda_max) = "
        f"{result.fastest_lr:.6g} (rate {1 - 2 / (1 + result.lam_max / result.lam_min):.6g})"
    )
    print(f"{'lr':>12}  {'final loss':>16}  {'rate':>10}  stable")
    shown = np.unique(np.linspace(0, result.lrs.size - 1, min(result.lrs.size, 25)).round().astype(int))
    for j in shown:
        print(
            f"{result.lrs[j]:12.6g}  {result.final_loss[j]:16.10g}  {result.rate[j]:10.6g}  "
            f"{'yes' if result.stable[j] else 'no'}"
        )
    return 0


def _check_file(args: argparse.Namespace) -> int:
    from gradtwin.userfile import check_file

    report = check_file(args.file, args.dtype, args.device, args.allow_kinks)
    print(report.to_json() if args.json else report.table())
    return 0 if report.ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; every expected failure is one line on stderr and an exit code:
    2 a bad option, 1 bad data or an unwritable output, 3 a diverged run, 130 Ctrl-C.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse's own exit (--help, or a bad option already reported)
        return 0 if e.code is None else e.code if isinstance(e.code, int) else 2
    try:
        # NumPy's overflow warnings would add lines to stderr; every result is checked for
        # finiteness where it matters (divergence, data), so they say nothing new.
        with np.errstate(all="ignore"):
            if args.command in ("check", "list", "sweep"):
                return {"check": cmd_check, "list": cmd_list, "sweep": cmd_sweep}[args.command](args)
            return {"compare": cmd_compare, "train": cmd_train}[args.command](args, argv)
    except GradtwinError as e:
        if distributed.rank() == 0:
            print(f"gradtwin: {one_line(str(e))}", file=sys.stderr)
        elif not isinstance(e, DivergedError):  # a divergence is the same on every process
            print(f"gradtwin (process {distributed.rank()}): {one_line(str(e))}", file=sys.stderr)
        return e.exit_code
    except MemoryError:
        print(
            "gradtwin: out of memory; try a smaller data set, fewer iterations or a larger --record-every",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        print("gradtwin: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # stdout closed early (| head): stop quietly, as other tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())

"""The command line: parses options, calls the library, prints tables or JSON. No math here."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

import numpy as np

from gradtwin import data as datasets
from gradtwin.check import check_model
from gradtwin.engines import ENGINES, make_engine
from gradtwin.errors import DivergedError, GradtwinError
from gradtwin.files import atomic_write
from gradtwin.models import MODELS, Model, get_model
from gradtwin.parity import finite_or_none, format_table, history_max_abs_diff, worst
from gradtwin.reference import least_squares
from gradtwin.train import TrainResult, train


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad option in one line, without the usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _add_data_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    g.add_argument(
        "--data", default=None, help="'diabetes' (bundled), 'synthetic', or a CSV file (default: the model's own data)"
    )
    g.add_argument("--x", default="0", help="CSV column of X: header name or 0-based position (default 0)")
    g.add_argument("--y", default="1", help="CSV column of Y: header name or 0-based position (default 1)")
    g.add_argument("--header", choices=("auto", "yes", "no"), default="auto", help="does the CSV have a header row")
    g.add_argument("--n", type=int, default=200, help="rows of synthetic data (default 200)")
    g.add_argument("--noise", type=float, default=0.5, help="noise of synthetic data (default 0.5)")
    g.add_argument("--data-seed", type=int, default=0, help="seed of synthetic data (default 0)")
    g.add_argument(
        "--no-standardize",
        dest="standardize",
        action="store_false",
        help="keep X in its own units (default: centre and scale X to unit variance)",
    )


def _add_run_options(p: argparse.ArgumentParser, iterations: int = 300) -> None:
    p.add_argument("--model", default="linear1d", help=f"one of {', '.join(MODELS)} (default linear1d)")
    p.add_argument("--lr", type=float, default=0.1, help="learning rate, a positive finite number (default 0.1)")
    p.add_argument("--iterations", type=int, default=iterations, help=f"iteration budget (default {iterations})")
    p.add_argument("--target-loss", type=float, default=None, help="stop once the loss is at or below this")
    p.add_argument("--seed", type=int, default=None, help="start from seeded random parameters (default: zeros)")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float64", help="(default float64)")
    p.add_argument("--device", default="cpu", help="auto, cpu, cuda, cuda:N or mps (default cpu)")
    p.add_argument("--record-every", type=int, default=1, help="keep every k-th iteration in the history")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
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
    check.add_argument("--points", type=int, default=200, help="random data sets and parameters (default 200)")
    check.add_argument("--dtype", choices=("float32", "float64"), default="float64")
    check.add_argument("--device", default="cpu")
    check.add_argument("--seed", type=int, default=0)
    check.add_argument("--json", action="store_true")
    return parser


def load_data(args: argparse.Namespace, model: Model) -> datasets.Dataset:
    """The data the options name, standardized unless --no-standardize."""
    if args.data is None:
        data = model.default_data()
        return data if args.standardize or not data.standardized else _unstandardized(model)
    if args.data == "diabetes":
        data = datasets.load_diabetes_bmi()
    elif args.data == "synthetic":
        data = datasets.synthetic_linear1d(n=args.n, noise=args.noise, seed=args.data_seed)
    else:
        data = datasets.load_csv(args.data, x=args.x, y=args.y, header=args.header)
    return datasets.standardize(data) if args.standardize else data


def _unstandardized(model: Model) -> datasets.Dataset:
    data = model.default_data()
    X = data.X * data.x_std + data.x_mean
    return datasets.Dataset(X, data.Y, data.name, data.x_name, data.y_name)


def _run(
    args: argparse.Namespace,
    engine_name: str,
    data: datasets.Dataset,
    model: Model,
    progress: Callable[[int], None] | None,
) -> TrainResult:
    engine = make_engine(engine_name, model, args.dtype, args.device)
    return train(
        engine,
        data,
        lr=args.lr,
        iterations=args.iterations,
        target_loss=args.target_loss,
        seed=args.seed,
        record_every=args.record_every,
        progress=progress,
    )


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


def _fmt(v: Any) -> str:
    arr = np.asarray(v)
    if arr.ndim == 0:
        return f"{float(arr):.10g}"
    return "[" + ", ".join(f"{float(x):.6g}" for x in arr.ravel()) + "]"


def cmd_compare(args: argparse.Namespace) -> int:
    model = get_model(args.model)
    data = load_data(args, model)
    results = []
    for name in ENGINES:
        update, bar = _progress(args.iterations, name)
        with bar:
            results.append(_run(args, name, data, model, update))
    manual, autograd = results
    diffs = history_max_abs_diff(manual.history, autograd.history)
    lsq = least_squares(data)
    if args.plot:
        from gradtwin.plots import plot_compare

        plot_compare(manual, autograd, args.plot, force=args.force)
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
    rows: list[tuple[str, str, str, str]] = [("", "manual (NumPy)", "autograd (PyTorch)", "least squares")]
    for name in m.params:
        rows.append((name, _fmt(m.params[name]), _fmt(a.params[name]), _fmt(lsq.get(name, np.nan))))
    lsq_loss = float(np.mean((data.X.reshape(data.n, -1) @ np.atleast_1d(lsq["w"]) + lsq["b"] - data.Y) ** 2))
    rows.append(("loss", f"{m.loss:.10g}", f"{a.loss:.10g}", f"{lsq_loss:.10g}"))
    rows.append(("iterations", str(m.iterations), str(a.iterations), ""))
    rows.append(("stop reason", m.stop_reason, a.stop_reason, ""))
    rows.append(("time / iteration", _time(m.seconds_per_iteration), _time(a.seconds_per_iteration), ""))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    rec = m.history.iteration.size
    lines += [
        "",
        f"largest |manual - autograd| over the whole run ({rec} recorded iterations):",
        "  " + ", ".join(f"{k} {v:.3g}" for k, v in diffs.items()),
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


def cmd_train(args: argparse.Namespace) -> int:
    model = get_model(args.model)
    data = load_data(args, model)
    update, bar = _progress(args.iterations, args.engine)
    with bar:
        result = _run(args, args.engine, data, model, update)
    if args.history:
        _write_history(result, args.history, args.force)
    if args.json:
        _print_json(result_json(result))
    else:
        params = ", ".join(f"{k} = {_fmt(v)}" for k, v in result.params.items())
        print(
            f"{result.model} ({result.engine}, {result.dtype} on {result.device}): {params}; "
            f"loss {result.loss:.10g} after {result.iterations} iterations, stopped by {result.stop_reason}; "
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
    if args.points < 1:
        from gradtwin.errors import UsageError

        raise UsageError(f"points must be >= 1; got {args.points}")
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


def _check_file(args: argparse.Namespace) -> int:
    from gradtwin.userfile import check_file

    report = check_file(args.file, args.dtype, args.device, args.allow_kinks)
    print(report.to_json() if args.json else report.table())
    return 0 if report.ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    commands = {"compare": cmd_compare, "train": cmd_train, "check": cmd_check}
    try:
        return commands[args.command](args)
    except GradtwinError as e:
        print(f"gradtwin: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("gradtwin: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""The commands: each reads its options, calls the library and prints; no math here."""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from gradtwin import validate
from gradtwin.cli.files import check_target, shown
from gradtwin.cli.output import print_json, write_history
from gradtwin.cli.progress import progress_bar, wrote
from gradtwin.cli.tables import classifier_table, compare_table, result_json, train_summary, twins_table
from gradtwin.data import (
    BUNDLED,
    Dataset,
    holdout,
    load_csv,
    load_diabetes_all,
    load_diabetes_bmi,
    standardize,
    synthetic_linear1d,
)
from gradtwin.devices import resolve_device
from gradtwin.errors import DivergedError, UsageError
from gradtwin.model_file import from_file
from gradtwin.models import MODELS, Model, configure, get_model
from gradtwin.parity.compare import format_table, history_max_abs_diff, to_json, worst
from gradtwin.parity.model_check import check_model, tape_as_hand
from gradtwin.parity.reference import least_squares
from gradtwin.parity.userfile import DEFAULT_POINTS as FILE_POINTS
from gradtwin.parity.userfile import check_file
from gradtwin.training import THREE, TWINS, Engine, ExactEngine, TrainResult, distributed, make_engine, make_twin, train
from gradtwin.training.exact import sweep
from gradtwin.training.metrics import accuracy

EXACT_IN_ONE_PROCESS = "--nproc runs the manual or autograd engine; the exact engine runs in one process"


def preflight(args: argparse.Namespace, outputs: Sequence[str | None] = ()) -> None:
    """Refuse a device or an output path that cannot work before any data is read or trained on."""
    resolve_device(args.device, args.dtype)
    for path in outputs:
        if path:
            check_target(path, getattr(args, "force", False))


def _model(args: argparse.Namespace) -> Model:
    """The model --model names or --file defines, with --hidden/--activation applied; fills in its default
    lr/iterations."""
    named = from_file(args.file) if getattr(args, "file", None) is not None else get_model(args.model)
    if named.family == "file" and args.seed is not None:
        raise UsageError(
            f"{args.file or named.name} starts from {named.options['start']} (edit the file to start elsewhere); "
            "--seed draws a random start"
        )
    model = configure(named, hidden=args.hidden, activation=args.activation)
    if args.lr is None:
        args.lr = model.default_lr
    if args.iterations is None:
        args.iterations = model.default_iterations
    return model


def load_data(args: argparse.Namespace, model: Model) -> Dataset:
    """The data the options name, standardized unless --no-standardize.

    A CSV file read for a classifier has its y column read as class labels and a seeded 25%
    of its rows held out, standardized by the training rows' statistics, as the bundled sets.
    """
    columns = [f"--{k}" for k in ("x", "y") if getattr(args, k) is not None]
    columns += ["--delimiter"] if args.delimiter != "auto" else []
    if columns and args.data in (None, "diabetes", "synthetic", *BUNDLED):
        given = "the model's own data" if args.data is None else f"--data {args.data}"
        verb = "applies" if len(columns) == 1 else "apply"
        raise UsageError(f"{', '.join(columns)} {verb} to a data file (--data FILE.csv); got {given}")
    if args.data is None:
        return model.default_data(args.standardize)
    if args.data in BUNDLED:  # held out and prepared by their loaders
        return BUNDLED[args.data](True)
    if args.data == "synthetic" and model.synthetic is not None:
        return model.synthetic(args.n, args.data_seed)
    classifier = model.task == "classification"
    if args.data == "diabetes":
        data = load_diabetes_bmi() if model.x_ndim == 1 else load_diabetes_all()
    elif args.data == "synthetic":
        data = synthetic_linear1d(n=args.n, noise=args.noise, seed=args.data_seed)
    else:
        data = _load_file(args, model)
    if model.x_ndim == 1 and data.X.ndim == 2:
        if data.X.shape[1] > 1:
            raise UsageError(
                f"{model.name} takes one x column; got {data.X.shape[1]} ({data.x_name}) from {data.name}; "
                "use --model linear for several"
            )
        data = replace(data, X=data.X[:, 0])
    if (model.x_ndim == 2 or classifier) and data.X.ndim == 1:
        data = replace(data, X=data.X.reshape(-1, 1))  # one feature, as a column
    if classifier and data.class_names is not None:
        data = holdout(data)
    return standardize(data) if args.standardize else data


def _load_file(args: argparse.Namespace, model: Model) -> Dataset:
    """The CSV file of --data: --x as one spec or a list of them; without --x, column 0 for a
    model of one feature, else every column but --y. A classifier reads --y as labels."""
    x: str | int | list[str] | None
    if args.x is None:
        x = 0 if model.x_ndim == 1 else None
    else:
        x = args.x[0] if len(args.x) == 1 else list(args.x)
    delimiter = None if args.delimiter == "auto" else args.delimiter
    labels = model.task == "classification"
    y = 1 if args.y is None else args.y
    return load_csv(args.data, x=x, y=y, header=args.header, delimiter=delimiter, labels=labels)


def _run(
    args: argparse.Namespace,
    engine_name: str,
    data: Dataset,
    model: Model,
    progress: Callable[[int], None] | None,
) -> TrainResult:
    """One engine's run of the options, data-parallel when a process group is set up."""
    array = args.array if engine_name == "manual" else "auto"
    engine: Engine | ExactEngine = make_engine(engine_name, model, args.dtype, distributed.setup(args.device), array)
    rows: Dataset = data
    if distributed.world_size() > 1:
        if not isinstance(engine, Engine):
            raise UsageError(EXACT_IN_ONE_PROCESS)
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
        stable = model.stable_lr(data.X, data.weight)
        if stable is not None:
            result.message = result.message.replace(f"{result.stable_lr:.6g}", f"{stable:.6g}")
            result.stable_lr = stable
    result.extra["array"] = "numpy" if isinstance(engine, Engine) and not engine.use_torch else "torch"
    result.extra["processes"] = distributed.world_size()
    return result


def _launch(args: argparse.Namespace, argv: Sequence[str] | None) -> int | None:
    """With --nproc N > 1 outside torchrun: run this command in N processes, return the exit code; else None.

    Everything that would fail the same way in every process is checked here first, so that
    it is one line, not one per process: the options, the data, the device, the output files,
    and a process for every row at least. The processes are fresh interpreters started by
    PyTorch's launcher (`gradtwin.training.launch`), on 127.0.0.1 only.
    """
    validate.whole(args.nproc, "nproc")
    if args.nproc == 1 or "WORLD_SIZE" in os.environ:
        return None
    if getattr(args, "engine", None) == "exact":
        raise UsageError(EXACT_IN_ONE_PROCESS)
    model = _model(args)
    distributed.check_separable(model)
    data = load_data(args, model)  # a data error is reported once, here, not by every process
    distributed.check_rows(data.n, args.nproc)
    device = resolve_device(args.device, args.dtype)
    if device.type == "cuda" and args.nproc > torch.cuda.device_count():
        raise UsageError(f"nproc {args.nproc} on cuda needs one GPU per process; {torch.cuda.device_count()} here")
    if device.type not in ("cpu", "cuda"):
        raise UsageError(f"--nproc runs on cpu (gloo) or cuda (NCCL); got device {str(device)!r}")
    preflight(args, [getattr(args, "history", None), getattr(args, "plot", None)])
    from gradtwin.training.launch import launch

    command = list(sys.argv[1:] if argv is None else argv)
    return launch(args.nproc, [sys.executable, "-m", "gradtwin", *command])


def _progress(total: int, label: str) -> tuple[Callable[[int], None], Any]:
    """The bar's `update(k)` and the bar (`cli.progress.progress_bar`: terminal only, redrawn by time)."""
    bar = progress_bar(total, label)
    return bar.update, bar


def cmd_compare(args: argparse.Namespace, argv: Sequence[str] | None = None) -> int:
    launched = _launch(args, argv)
    if launched is not None:
        return launched
    model = _model(args)
    preflight(args, [args.plot])
    data = load_data(args, model)
    results = []
    for name in compared_twins(args, model):
        update, bar = _progress(args.iterations, name)
        with bar:
            results.append(_run(args, name, data, model, update))
    if distributed.rank() != 0:
        return _exit_for(results)  # process 0 reports for all
    manual, autograd = results[0], results[-1]
    diffs = {f"{r.engine} - autograd": history_max_abs_diff(r.history, autograd.history) for r in results[:-1]}
    if args.plot:
        from gradtwin.cli.plots import plot_compare

        plot_compare(manual, autograd, args.plot, force=args.force, loss_name=model.loss_name)
    written = [("plot", args.plot)] if args.plot else []
    runs_json = {r.engine: result_json(r, model, data) for r in results}
    diffs_json = {"max_abs_diff": diffs["manual - autograd"]} | (
        {"tape_max_abs_diff": diffs["tape - autograd"]} if "tape - autograd" in diffs else {}
    )
    if model.task == "classification":
        scores = _accuracies(args, model, results, data)
        if args.json:
            print_json(runs_json | diffs_json | scores)
        else:
            print(classifier_table(results, diffs, scores, data, model))
        return _exit_for(results, written)
    if model.family == "file":  # your own model: no reference answer is known, the twins alone
        if args.json:
            print_json({r.engine: result_json(r) for r in results} | diffs_json)
        else:
            print(twins_table(results, diffs, data, model.options["start"]))
        return _exit_for(results, written)
    try:
        lsq = least_squares(data)
        lsq_loss = float(model.manual.loss(lsq, data.X, data.Y))
    except np.linalg.LinAlgError:  # data at the edge of float64's range; the table says n/a
        lsq = {name: np.full(np.shape(v), np.nan) for name, v in manual.params.items()}
        lsq_loss = math.nan
    if args.json:
        print_json(runs_json | diffs_json | {"least_squares": {k: v.tolist() for k, v in lsq.items()}})
    else:
        print(compare_table(results, diffs, lsq, lsq_loss, data, model))
    return _exit_for(results, written)


def compared_twins(args: argparse.Namespace, model: Model) -> tuple[str, ...]:
    """manual, tape, autograd where the model has a tape twin and the run is on the cpu; else manual, autograd.

    The tape twin computes with NumPy in one process, so a run on a GPU or in several processes
    compares the other two.
    """
    on_cpu = resolve_device(args.device, args.dtype).type == "cpu"
    one_process = getattr(args, "nproc", 1) == 1 and distributed.world_size() == 1
    return THREE if model.tape is not None and on_cpu and one_process else TWINS


def _accuracies(
    args: argparse.Namespace, model: Model, results: Sequence[TrainResult], data: Dataset
) -> dict[str, dict[str, float]]:
    """Each twin's accuracy, by its own predictions, on the training rows and the held-out rows."""
    sets = {"train_accuracy": data} | ({"test_accuracy": data.test} if data.test is not None else {})
    engines = {r.engine: make_twin(r.engine, model, args.dtype, args.device) for r in results}
    return {key: {r.engine: accuracy(engines[r.engine], r.params, rows) for r in results} for key, rows in sets.items()}


def cmd_list(args: argparse.Namespace) -> int:
    """Each model: what it is, its parameters' shapes on its default data, that data, its settings."""
    for model in MODELS.values():
        data = model.default_data(True)
        shapes = ", ".join(f"{k} {tuple(v)}" for k, v in model.param_shapes(data).items())
        held = f" + {data.test.n} held out" if data.test is not None else ""
        options = "".join(f", {k}={v}" for k, v in model.options.items())
        print(f"{model.name}: {model.description}")
        print(f"  parameters: {shapes}")
        print(f"  default data: {data.name} ({data.n} rows{held}); {model.task}")
        print(f"  twins: manual, autograd{', tape' if model.tape is not None else ''}")
        print(f"  defaults: lr={model.default_lr:g}, iterations={model.default_iterations}{options}")
    return 0


def _exit_for(results: Sequence[TrainResult], written: Sequence[tuple[str, str]] = ()) -> int:
    """0, naming each file written on stderr; a diverged run raises, its one line naming the files instead."""
    for r in results:
        if r.stop_reason == "diverged":
            files = "".join(f"; wrote {what} to {shown(path)}" for what, path in written)
            raise DivergedError(f"{r.engine}: {r.message}{files}")
    for what, path in written:
        wrote(what, path)
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
        write_history(result, args.history, args.force)
    scores = _accuracies(args, model, [result], data) if model.task == "classification" else {}
    if args.json:
        print_json(result_json(result, model, data) | {key: s[result.engine] for key, s in scores.items()})
    else:
        print(train_summary(result, model, data, scores))
    return _exit_for([result], [("history", args.history)] if args.history else [])


def cmd_check(args: argparse.Namespace) -> int:
    if args.file is not None:
        if args.engine != "manual":
            raise UsageError(f"--engine {args.engine} checks a built-in model's twin (--model); a file is one twin")
        return _check_file(args)
    if args.dtype in ("float16", "bfloat16"):
        raise UsageError(
            f"--dtype {args.dtype} checks your own file (--file); the built-in models run in float32 or float64"
        )
    names = list(MODELS) if args.model == "all" else [get_model(args.model).name]
    if args.engine == "tape":
        names = [n for n in names if MODELS[n].tape is not None or args.model != "all"]
        hand = {n: tape_as_hand(MODELS[n]) for n in names}  # a model without a tape twin: one line, here
    preflight(args)
    checks = []
    points = {n: MODELS[n].check_points if args.points is None else args.points for n in names}
    with progress_bar(sum(points.values()), "check", unit="point") as bar:
        for name in names:
            bar.set_description(f"check {name}", refresh=False)
            twin = hand[name] if args.engine == "tape" else None
            checked = check_model(
                MODELS[name],
                points[name],
                args.dtype,
                args.device,
                args.seed,
                twin,
                label=args.engine,
                progress=bar.update,
            )
            found = worst(checked)
            for c in found:
                c.comparison = f"{name}: {c.comparison}" if len(names) > 1 else c.comparison
            checks += found
    if args.json:
        print(to_json(checks))
    else:
        which = "" if args.engine == "manual" else f" of the {args.engine} twin"
        counts = sorted(set(points.values()), reverse=True)
        at = f"{counts[0]}" if len(counts) == 1 else " or ".join(str(c) for c in counts)
        print(f"gradient parity{which} at {at} random points per model, {args.dtype} on {args.device}")
        print(format_table(checks))
        for c in checks:
            if not c.ok:
                print(c.message())
    return 0 if all(c.ok for c in checks) else 1


def cmd_sweep(args: argparse.Namespace) -> int:
    model = get_model(args.model)
    engine = ExactEngine(model, args.dtype)
    if args.lrs < 2:
        raise UsageError(f"lrs must be >= 2; got {args.lrs}")
    if args.iterations < 0:
        raise UsageError(f"iterations must be >= 0; got {args.iterations}")
    data = load_data(args, model)
    start = model.init_params(data, args.seed)
    traj = engine.trajectory(data, start, 1.0)
    bound = traj.stable_bound
    lr_min = validate.positive_finite(args.lr_min, "lr") if args.lr_min is not None else 0.01 * bound
    lr_max = validate.positive_finite(args.lr_max, "lr") if args.lr_max is not None else 1.2 * bound
    if lr_min >= lr_max:
        raise UsageError(f"lr-min must be below lr-max; got {lr_min:g} and {lr_max:g}")
    result = sweep(traj, np.geomspace(lr_min, lr_max, args.lrs), args.iterations)
    if args.plot:
        from gradtwin.cli.plots import plot_sweep

        plot_sweep(result, f"{model.name} on {data.name}", args.plot, force=args.force)
        wrote("plot", args.plot)
    if args.json:
        print_json(
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


def cmd_explain(args: argparse.Namespace) -> int:
    """Each step of a built-in model's hand backward pass beside autograd's; exit 1 when one disagrees."""
    from gradtwin.steps.explain import explain

    if args.plot and not args.plot.lower().endswith((".png", ".svg")):
        raise UsageError(f"--plot must name a .png or .svg file; got {args.plot!r}")
    preflight(args, [args.plot])
    explanation = explain(get_model(args.model), args.seed, args.dtype, args.device, args.rows, args.engine)
    if args.plot:
        from gradtwin.cli.plots import plot_explain

        plot_explain(explanation, args.plot, force=args.force)
    print(explanation.to_json() if args.json else explanation.table())
    if args.plot:
        wrote("plot", args.plot)
    return 0 if explanation.ok else 1


def _check_file(args: argparse.Namespace) -> int:
    points = FILE_POINTS if args.points is None else args.points
    report = check_file(args.file, args.dtype, args.device, args.allow_kinks, args.method, args.seed, points)
    print(report.to_json() if args.json else report.table())
    return 0 if report.ok else 1

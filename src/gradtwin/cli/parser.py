"""The command line's grammar: subcommands, options and the argparse types that read numbers."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import Any, NoReturn

from gradtwin.data import BUNDLED
from gradtwin.models import CHECK_POINTS, LAYERED_CHECK_POINTS, MODELS
from gradtwin.parity.userfile import DEFAULT_POINTS as FILE_POINTS
from gradtwin.steps.explain import ROWS as EXPLAIN_ROWS
from gradtwin.training import ENGINES


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
        help=f"'diabetes', {', '.join(repr(k) for k in BUNDLED)} (bundled), 'synthetic', "
        "or a CSV file (default: the model's own data)",
    )
    g.add_argument(
        "--x",
        action="append",
        default=None,
        metavar="COLUMNS",
        help="CSV column(s) of X: a header name or 0-based position; several for the multi-feature models, "
        "by repeating --x, a comma list (size,rooms) or a range FIRST:LAST of positions or names, both ends "
        "included (0:2 is columns 0, 1, 2; an empty end is the first or last column); a header name that "
        "matches exactly wins over a list or range (default: column 0 for linear1d, every column but --y "
        "for the other models)",
    )
    g.add_argument(
        "--y",
        default=None,
        help="CSV column of Y: header name or 0-based position (default 1); for the classifiers, labels: "
        "whole numbers (1.0 reads as 1) or words, k distinct values becoming classes 0..k-1 in sorted order",
    )
    g.add_argument("--header", choices=("auto", "yes", "no"), default="auto", help="does the CSV have a header row")
    g.add_argument(
        "--delimiter",
        choices=("auto", ",", ";", "tab", "space"),
        default="auto",
        metavar="{auto,',',';',tab,space}",
        help="what separates a CSV's cells: ',', ';', 'tab', or 'space' (runs of spaces and tabs, as "
        "numpy.loadtxt); auto: the first non-blank line decides: ';' if it has one, else ',', else tab, "
        "else space (default auto)",
    )
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
    which = p.add_mutually_exclusive_group()
    which.add_argument("--model", default="linear1d", help=f"one of {', '.join(MODELS)} (default linear1d)")
    which.add_argument(
        "--file",
        metavar="MY_MODEL.py",
        help="train your own model instead: a file defining manual_gradients, manual_loss, torch_loss and "
        "make_problem (README: Train your own model)",
    )
    p.add_argument(
        "--lr", type=positive_float, default=None, help="learning rate, a positive finite number (default: the model's)"
    )
    p.add_argument(
        "--iterations", type=positive_int, default=None, help="gradient steps to take at most (default: the model's)"
    )
    p.add_argument("--hidden", type=positive_int, default=None, help="mlp only: hidden units (default 32)")
    p.add_argument("--activation", default=None, help="mlp only: tanh, relu or sigmoid (default: the model's)")
    p.add_argument("--target-loss", type=nonnegative_float, default=None, help="stop once the loss is at or below this")
    p.add_argument(
        "--seed", type=nonnegative_int, default=None, help="start from seeded random parameters (default: zeros)"
    )
    p.add_argument(
        "--dtype",
        choices=("float32", "float64"),
        default="float64",
        help="precision of the data, parameters and arithmetic of both twins (default float64)",
    )
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
    """gradtwin's parser: compare, train, sweep, check and list."""
    parser = _Parser(prog="gradtwin", description="Gradient descent built twice: by hand and by autograd.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    compare = sub.add_parser(
        "compare",
        help="train the twins (manual, tape where the model has one, autograd) from the same start, step by step",
    )
    _add_run_options(compare)
    compare.add_argument("--plot", metavar="FILE.png", help="draw both loss curves and their difference")

    tr = sub.add_parser("train", help="train one twin")
    tr.add_argument(
        "--engine",
        choices=ENGINES,
        default="manual",
        help="manual: hand-derived gradients; autograd: PyTorch's; tape: gradtwin's own reverse-mode autodiff "
        "(NumPy, cpu); exact: the closed form (linear models) (default manual)",
    )
    _add_run_options(tr)
    tr.add_argument("--history", metavar="FILE.csv", help="write the recorded history as CSV")

    sw = sub.add_parser("sweep", help="final loss, stability and convergence rate at many lrs (exact engine)")
    sw.add_argument("--model", default="linear", help="linear1d or linear (default linear)")
    sw.add_argument(
        "--lr-min", type=float, default=None, help="smallest learning rate swept (default 0.01 x the stable bound)"
    )
    sw.add_argument(
        "--lr-max", type=float, default=None, help="largest learning rate of the sweep (default 1.2 x the stable bound)"
    )
    sw.add_argument("--lrs", type=int, default=200, help="how many learning rates, log-spaced (default 200)")
    sw.add_argument("--iterations", type=int, default=300, help="iterations at each lr (default 300)")
    sw.add_argument("--seed", type=int, default=None, help="start from seeded random parameters (default: zeros)")
    sw.add_argument(
        "--dtype",
        choices=("float32", "float64"),
        default="float64",
        help="precision of the closed-form trajectories (default float64)",
    )
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
    check.add_argument(
        "--engine",
        choices=("manual", "tape"),
        default="manual",
        help="with --model: the twin checked against autograd and finite differences: manual (hand-derived) or "
        "tape (gradtwin's own autodiff) (default manual)",
    )
    check.add_argument(
        "--points",
        type=positive_int,
        default=None,
        metavar="N",
        help=f"random data sets and parameters per model (default {CHECK_POINTS}, {LAYERED_CHECK_POINTS} for the "
        f"models made of layers); with --file, make_problem()'s point and N-1 around it or from "
        f"sample_problem(rng) (default {FILE_POINTS})",
    )
    check.add_argument(
        "--dtype",
        choices=("float32", "float64", "float16", "bfloat16"),
        default="float64",
        help="the dtype checked, against a float64 reference (default float64; float16 and bfloat16 with --file)",
    )
    check.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or mps (default cpu)")
    check.add_argument(
        "--method",
        choices=("auto", "exhaustive", "sampled"),
        default="auto",
        help="with --file: exhaustive (every element), sampled (linear cost), or auto: sampled above 1,000 elements",
    )
    check.add_argument("--seed", type=nonnegative_int, default=0, help="of the random points and draws (default 0)")
    check.add_argument("--json", action="store_true", help="print the report as JSON instead of a table")

    sub.add_parser("list", help="the registered models: parameters, default data and settings")

    ex = sub.add_parser(
        "explain", help="a built-in model's hand backward pass step by step beside autograd's; the first wrong step"
    )
    ex.add_argument("--model", default="linear1d", help=f"the built-in model explained: one of {', '.join(MODELS)}")
    ex.add_argument(
        "--seed", type=nonnegative_int, default=0, help="seeds the parameters and the rows drawn (default 0)"
    )
    ex.add_argument(
        "--rows",
        type=positive_int,
        default=EXPLAIN_ROWS,
        help=f"rows of the model's default data drawn by the seed (default {EXPLAIN_ROWS})",
    )
    ex.add_argument(
        "--dtype",
        choices=("float32", "float64"),
        default="float64",
        help="precision of both backward passes, held against float64 on the cpu (default float64)",
    )
    ex.add_argument("--device", default="cpu", help="where both backward passes run: cpu, cuda, cuda:N or mps")
    ex.add_argument(
        "--engine",
        choices=("manual", "tape"),
        default="manual",
        help="the side held to autograd: manual (the hand derivation) or tape (gradtwin's own autodiff, which "
        "also prints its recorded graph) (default manual)",
    )
    ex.add_argument("--json", action="store_true", help="print the steps as JSON instead of a table")
    ex.add_argument(
        "--plot", metavar="FILE.png|FILE.svg", help="draw the steps as a chain, each box coloured by error/tolerance"
    )
    ex.add_argument("--force", action="store_true", help="overwrite a plot file that exists")
    return parser

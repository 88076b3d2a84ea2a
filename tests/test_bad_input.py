"""Every row of the README's catalogue, run: the one line it promises and its exit code or exception."""

from __future__ import annotations

import errno
import operator
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from scipy import sparse
from sklearn.exceptions import NotFittedError

from conftest import CUDA
from gradtwin import data as datasets
from gradtwin.autodiff import Tensor
from gradtwin.cli import main
from gradtwin.errors import DataError, DataTypeError, DivergedError, UsageError
from gradtwin.estimators import GradientDescentClassifier, GradientDescentRegressor
from gradtwin.layers.manual import attention as attention_layer
from gradtwin.layers.manual import batchnorm as batchnorm_layer
from gradtwin.layers.manual import conv2d as conv2d_layer
from gradtwin.layers.manual import cross_entropy as cross_entropy_layer
from gradtwin.layers.manual import dropout as dropout_layer
from gradtwin.layers.manual import embedding as embedding_layer
from gradtwin.layers.manual import maxpool2d as maxpool2d_layer
from gradtwin.models import get_model
from gradtwin.parity.function_check import check_function
from gradtwin.parity.gradcheck import check_gradients
from gradtwin.steps import tap
from gradtwin.training.factory import make_engine
from gradtwin.training.loop import train

DOC = Path(__file__).resolve().parents[1] / "README.md"  # its catalogue: "What each bad input gets"


@dataclass
class Cli:
    """One command line run in a fresh folder holding `files`; `setup` may patch the world first."""

    input: str  # the row's first cell in the README's catalogue
    argv: list[str]
    exit: int
    says: str  # regular expression the one stderr line must match from its start
    files: dict[str, bytes] = field(default_factory=dict)
    setup: Callable[[pytest.MonkeyPatch, Path], None] | None = None
    skip: str | None = None


@dataclass
class Lib:
    """One library call that must raise `raises` with a message matching `says`."""

    input: str
    call: Callable[[], Any]
    raises: type[BaseException]
    says: str
    one_line: bool = True  # scikit-learn's own refusals, kept for its conformance suite, may run on


def _linreg_grad(p: dict[str, Any], X: Any, Y: Any) -> dict[str, Any]:
    r = X @ p["w"] + p["b"] - Y
    return {"w": 2 / len(Y) * X.T @ r, "b": 2 / len(Y) * r.sum()}


def _linreg_loss(p: dict[str, torch.Tensor], X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    return torch.mean((X @ p["w"] + p["b"] - Y) ** 2)


def _tapping_loss(how: str) -> Callable[..., torch.Tensor]:
    """The linear regression's loss with its residual tapped, in one of the ways a tap goes wrong."""

    def loss(p: dict[str, torch.Tensor], X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
        Z = X @ p["w"] + p["b"]  # (n,)
        if how == "twice":
            tap("Z", Z)
        tap("Z", Z.detach() if how == "detached" else Z.clone() if how == "copy" else Z)
        return torch.mean((Z - Y) ** 2)

    return loss


def _with_intermediate(value: Callable[[Any], Any], name: str = "Z") -> Callable[..., dict[str, Any]]:
    def grads(p: dict[str, Any], X: Any, Y: Any) -> dict[str, Any]:
        return {**_linreg_grad(p, X, Y), name: value(X)}

    return grads


_RNG = np.random.default_rng(0)
_CHECKED = (_linreg_grad, _linreg_loss, {"w": np.ones(2), "b": np.array(0.5)},
            (_RNG.standard_normal((6, 2)), _RNG.standard_normal(6)))  # fmt: skip


def _train(*argv: str) -> list[str]:
    return ["train", "--iterations", "2", *argv]


def _csv(text: str) -> dict[str, bytes]:
    return {"d.csv": text.encode()}


def _no_permission(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """chmod 000, or, as root (who reads any file), the refusal the kernel gives everyone else."""
    if os.geteuid() == 0:

        def refuse(self: Path) -> bytes:
            raise PermissionError(errno.EACCES, "Permission denied", str(self))

        monkeypatch.setattr(Path, "read_bytes", refuse)
    else:
        (folder / "d.csv").chmod(0)


def _disk_full(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)


def _interrupt(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    def interrupted(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("gradtwin.cli.commands.train", interrupted)


def _cpu_only_torch_with_driver(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    monkeypatch.setattr("gradtwin.devices.nvidia_driver", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", None)


_OK = "x,y\n1,2\n2,4\n3,7\n"
# a model file as `check --file` takes it (README: Check your own gradients), and what training adds to it
_MODEL_FILE = """import numpy as np
import torch


def manual_gradients(params, X, Y):
    return {"w": X.T @ (X @ params["w"] - Y) * 2 / len(Y)}


def torch_loss(params, X, Y):
    z = X @ params["w"]
    return torch.mean((z - Y) ** 2)


def make_problem():
    return {"w": np.array([1.0, -1.0])}, (np.array([[0.5, 1.0], [2.0, 3.0], [1.0, -1.0]]), np.array([1.0, 2.0, 0.5]))
"""
_FRAGILE_FILE = _MODEL_FILE.replace("    z = X", "    assert bool(abs(X[0, 0] - 0.5) < 1e-3), 'moved'\n    z = X")
_TRAINABLE = """

def manual_loss(params, X, Y):
    return np.mean((X @ params["w"] - Y) ** 2)
"""
_ABC = "a,b,c\n1,2,3\n2,5,4\n3,1,8\n"
_CUDA = "CUDA is available here" if CUDA else None
_MPS = "MPS is available here" if torch.backends.mps.is_available() else None

CLI_CASES = [
    # data files
    Cli("missing file", _train("--data", "d.csv"), 1, r"gradtwin: d\.csv: no such data file$"),
    Cli(
        "unreadable file (no permission)",
        _train("--data", "d.csv"),
        1,
        r"gradtwin: d\.csv: cannot be read \(Permission denied\)$",
        _csv(_OK),
        _no_permission,
    ),
    Cli("a folder", _train("--data", "."), 1, r"gradtwin: \.: is a folder, not a data file$"),
    Cli(
        "a device such as /dev/zero",
        _train("--data", "/dev/zero"),
        1,
        r"gradtwin: /dev/zero: is not a regular file; expected a CSV file$",
        skip=None if os.path.exists("/dev/zero") else "no /dev/zero here",
    ),
    Cli(
        "empty file, or only blank lines",
        _train("--data", "d.csv"),
        1,
        r"gradtwin: d\.csv: the file has no data rows$",
        _csv(""),
    ),
    Cli(
        "empty file, or only blank lines",
        _train("--data", "d.csv"),
        1,
        r"gradtwin: d\.csv: the file has no data rows$",
        _csv("\n  \n , \r\n"),
    ),
    Cli(
        "only a header",
        _train("--data", "d.csv"),
        1,
        r"gradtwin: d\.csv: the file has a header but no data rows$",
        _csv("x,y\n\n"),
    ),
    Cli(
        "ragged row",
        _train("--data", "d.csv"),
        1,
        r"gradtwin: d\.csv:4: 1 columns where the first row has 2$",
        _csv("x,y\n1,2\n\n3\n"),
    ),
    Cli(
        "non-numeric cell",
        _train("--data", "d.csv"),
        1,
        r"gradtwin: d\.csv:3: y holds 'abc', not a number$",
        _csv("x,y\n1,2\n3,abc\n"),
    ),
    Cli(
        "empty cell",
        _train("--data", "d.csv"),
        1,
        r"gradtwin: d\.csv:2: x holds an empty cell, not a number$",
        _csv("x,y\n,2\n3,4\n"),
    ),
    Cli(
        "NaN or infinite cell",
        _train("--data", "d.csv"),
        1,
        r"gradtwin: d\.csv:3: y is 'nan'; only finite numbers are allowed$",
        _csv("x,y\n1,2\n3,nan\n"),
    ),
    Cli(
        "NaN or infinite cell",
        _train("--data", "d.csv"),
        1,
        r"gradtwin: d\.csv:2: column 0 is '-inf'; only finite numbers are allowed$",
        _csv("1,2\n-inf,4\n"),
    ),
    Cli(
        "number beyond float64 (1e999)",
        _train("--data", "d.csv"),
        1,
        r"gradtwin: d\.csv:1: column 1 is '1e999'; only finite numbers are allowed$",
        _csv("1,1e999\n2,3\n"),
    ),
    Cli(
        "a header where none is expected (--header no)",
        _train("--data", "d.csv", "--header", "no"),
        1,
        r"gradtwin: d\.csv:1: 'x' is not a number: a header row where none is expected \(--header no\)$",
        _csv(_OK),
    ),
    Cli(
        "binary or non-UTF-8 content",
        _train("--data", "d.csv"),
        1,
        r"gradtwin: d\.csv:2: not UTF-8 text \(byte 5 is 0xff\); expected a CSV file$",
        {"d.csv": b"1,2\r\n\xff,4\n"},
    ),
    Cli(
        "NUL byte",
        _train("--data", "d.csv"),
        1,
        r"gradtwin: d\.csv:3: holds a NUL byte \(byte 10\); expected a CSV text file, not binary data$",
        {"d.csv": b"x,y\n1,2\n3,\x00\n"},
    ),
    Cli(
        "a cell longer than 131072 characters",
        _train("--data", "d.csv"),
        1,
        r"gradtwin: d\.csv:2: malformed CSV \(field larger than field limit \(131072\)\)$",
        _csv("1,2\n3," + "4" * 140_000 + "\n"),
    ),
    Cli(
        "unknown column name",
        _train("--data", "d.csv", "--x", "z"),
        1,
        r"gradtwin: d\.csv: x column 'z' not found; the header has x, y$",
        _csv(_OK),
    ),
    Cli(
        "column name in a file without a header",
        _train("--data", "d.csv", "--x", "z"),
        1,
        r"gradtwin: d\.csv: x column 'z' not found \(the file has no header; give a 0-based position\)$",
        _csv("1,2\n3,4\n"),
    ),
    Cli(
        "column position out of range",
        _train("--data", "d.csv", "--y", "5"),
        1,
        r"gradtwin: d\.csv: y column 5 out of range; rows have 2 columns \(0 to 1\)$",
        _csv(_OK),
    ),
    Cli(
        "constant X (cannot be standardized)",
        _train("--data", "d.csv"),
        1,
        r"gradtwin: d\.csv: X is constant, so it cannot be standardized$",
        _csv("x,y\n1,2\n1,3\n"),
    ),
    Cli(
        "value beyond float32 with --dtype float32",
        _train("--data", "d.csv", "--dtype", "float32"),
        1,
        r"gradtwin: d\.csv: Y holds 1e\+39 at row 2 \(counting from 0\), beyond float32's range \(\+-3\.4e\+38\); "
        r"use float64$",
        _csv("1,2\n3,4\n5,1e39\n"),
    ),
    Cli(
        "--delimiter other than auto, ',', ';', tab, space",
        _train("--data", "d.csv", "--delimiter", "pipe"),
        2,
        r"gradtwin train: error: argument --delimiter: invalid choice: 'pipe' \(choose from '?auto'?, '?,'?, '?;'?, "
        r"'?tab'?, '?space'?\)$",
        _csv(_OK),
    ),
    Cli(
        "x column that is also the y column",
        _train("--data", "d.csv", "--x", "y", "--y", "y"),
        1,
        r"gradtwin: d\.csv: x column 'y' is also the y column; X and Y must differ$",
        _csv(_OK),
    ),
    Cli(
        "x column given twice",
        _train("--model", "linear", "--data", "d.csv", "--x", "a", "--x", "a", "--y", "c"),
        1,
        r"gradtwin: d\.csv: x column 'a' is given twice$",
        _csv(_ABC),
    ),
    Cli(
        "x range that runs backwards (--x b:a)",
        _train("--model", "linear", "--data", "d.csv", "--x", "b:a", "--y", "c"),
        1,
        r"gradtwin: d\.csv: x range 'b:a' runs backwards: from column 1 to column 0$",
        _csv(_ABC),
    ),
    Cli(
        "x range with more than one colon",
        _train("--model", "linear", "--data", "d.csv", "--x", "a:b:c", "--y", "c"),
        1,
        r"gradtwin: d\.csv: x range 'a:b:c' must be FIRST:LAST, one colon; got 2$",
        _csv(_ABC),
    ),
    Cli(
        "x list with an empty entry (--x a,,b)",
        _train("--model", "linear", "--data", "d.csv", "--x", "a,,b", "--y", "c"),
        1,
        r"gradtwin: d\.csv: x column list 'a,,b' has an empty entry; give names or positions between commas$",
        _csv(_ABC),
    ),
    Cli(
        "a file of one column, and no x column besides y",
        _train("--model", "linear", "--data", "d.csv", "--y", "0"),
        1,
        r"gradtwin: d\.csv: rows have 1 column, the y column; X needs another$",
        _csv("y\n1\n2\n"),
    ),
    Cli(
        "several x columns for linear1d",
        _train("--data", "d.csv", "--x", "a:b", "--y", "c"),
        2,
        r"gradtwin: linear1d takes one x column; got 2 \(a,b\) from d\.csv; use --model linear for several$",
        _csv(_ABC),
    ),
    Cli(
        "a constant column among several x columns",
        _train("--model", "linear", "--data", "d.csv", "--y", "c"),
        1,
        r"gradtwin: d\.csv: x column 'b' is constant, so it cannot be standardized$",
        _csv("a,b,c\n1,2,3\n2,2,4\n3,2,8\n"),
    ),
    Cli(
        "label column (a classifier's --y) of one class",
        _train("--model", "logistic", "--data", "d.csv", "--y", "label"),
        1,
        r"gradtwin: d\.csv: label holds one class \('cat'\) in all 3 rows; a classifier needs at least 2$",
        _csv("x,label\n1,cat\n2,cat\n3,cat\n"),
    ),
    Cli(
        "label column with a fraction such as 0.5",
        _train("--model", "softmax", "--data", "d.csv", "--y", "label"),
        1,
        r"gradtwin: d\.csv:3: label holds '0\.5', not a class label; a classifier's labels are whole numbers or words "
        r"\(a column of measurements is a target for linear1d or linear\)$",
        _csv("x,label\n1,0\n2,0.5\n3,1\n"),
    ),
    Cli(
        "label column with an empty cell",
        _train("--model", "mlp", "--data", "d.csv", "--y", "label"),
        1,
        r"gradtwin: d\.csv:3: label holds an empty cell, not a class label$",
        _csv("x,label\n1,cat\n2,\n3,dog\n"),
    ),
    Cli(
        "a class whose rows all fall in the held-out 25%",
        _train("--model", "logistic", "--data", "d.csv", "--y", "label"),
        1,
        r"gradtwin: d\.csv: class 'b' of label has 1 row\(s\), all in the 25% held out \(seeded\); each class needs "
        r"training rows: add rows of it$",
        _csv("x,label\n1,a\n2,a\n3,b\n4,a\n"),  # the seeded split holds row 2 out
    ),
    # the command line
    *(
        Cli(
            "--lr not a positive finite number (0, -1, nan, inf, abc)",
            [command, f"--lr={value}"],
            2,
            rf"gradtwin {command}: error: argument --lr: expected a positive finite number; got {value!r}$",
        )
        for command, value in [("train", "0"), ("compare", "-1"), ("train", "nan"), ("train", "inf"), ("train", "abc")]
    ),
    *(
        Cli(
            "--iterations below 1 or not a whole number",
            ["train", "--iterations", value],
            2,
            rf"gradtwin train: error: argument --iterations: expected a whole number >= 1; got {value!r}$",
        )
        for value in ["0", "-3", "2.5", "1e3", ""]
    ),
    Cli(
        "--record-every below 1",
        ["compare", "--record-every", "0"],
        2,
        r"gradtwin compare: error: argument --record-every: expected a whole number >= 1; got '0'$",
    ),
    *(
        Cli(
            "--target-loss negative, nan or inf",
            ["train", f"--target-loss={value}"],
            2,
            rf"gradtwin train: error: argument --target-loss: expected a finite number >= 0; got {value!r}$",
        )
        for value in ["-1", "nan", "inf"]
    ),
    Cli(
        "--n below 1 (synthetic data)",
        ["train", "--data", "synthetic", "--n", "0"],
        2,
        r"gradtwin train: error: argument --n: expected a whole number >= 1; got '0'$",
    ),
    *(
        Cli(
            "--noise negative, nan or inf",
            ["train", "--data", "synthetic", f"--noise={value}"],
            2,
            rf"gradtwin train: error: argument --noise: expected a finite number >= 0; got {value!r}$",
        )
        for value in ["-0.5", "nan", "inf"]
    ),
    *(
        Cli(
            "--seed or --data-seed negative",
            ["train", option, "-1"],
            2,
            rf"gradtwin train: error: argument {option}: expected a whole number >= 0; got '-1'$",
        )
        for option in ["--seed", "--data-seed"]
    ),
    Cli(
        "--points below 1",
        ["check", "--points", "0"],
        2,
        r"gradtwin check: error: argument --points: expected a whole number >= 1; got '0'$",
    ),
    Cli(
        "--dtype other than float32, float64",
        ["train", "--dtype", "float16"],
        2,
        r"gradtwin train: error: argument --dtype: invalid choice: 'float16' \(choose from '?float32'?, '?float64'?\)$",
    ),
    Cli(
        "`gradtwin check --model linear --dtype bfloat16`",
        ["check", "--model", "linear", "--dtype", "bfloat16"],
        2,
        r"gradtwin: --dtype bfloat16 checks your own file \(--file\); the built-in models run in float32 or float64$",
    ),
    Cli(
        "explain --plot to a file that is not .png or .svg",
        ["explain", "--model", "linear1d", "--plot", "steps.pdf"],
        2,
        r"gradtwin: --plot must name a \.png or \.svg file; got 'steps\.pdf'$",
    ),
    Cli(
        "--x, --y or --delimiter without a data file",
        ["train", "--data", "diabetes", "--x", "age"],
        2,
        r"gradtwin: --x applies to a data file \(--data FILE\.csv\); got --data diabetes$",
    ),
    Cli(
        "--x, --y or --delimiter without a data file",
        ["train", "--y", "2", "--delimiter", "tab"],
        2,
        r"gradtwin: --y, --delimiter apply to a data file \(--data FILE\.csv\); got the model's own data$",
    ),
    Cli(
        "--header other than auto, yes, no",
        ["train", "--header", "maybe"],
        2,
        r"gradtwin train: error: argument --header: invalid choice: 'maybe' \(choose from .*\)$",
    ),
    Cli(
        "unknown engine",
        ["train", "--engine", "jax"],
        2,
        r"gradtwin train: error: argument --engine: invalid choice: 'jax' \(choose from .*manual.*\)$",
    ),
    Cli("unknown model", ["train", "--model", "quadratic"], 2, r"gradtwin: model must be one of .*; got 'quadratic'$"),
    Cli(
        "--nproc with a model whose batch norm couples the rows (charmlp)",
        ["train", "--model", "charmlp", "--nproc", "2"],
        2,
        r"gradtwin: --nproc needs a loss that is a mean over rows; charmlp's batch norm takes its statistics over the "
        r"whole batch, which a shard does not hold: train it in one process$",
    ),
    Cli(
        "check --file with --engine tape",
        ["check", "--file", "m.py", "--engine", "tape"],
        2,
        r"gradtwin: --engine tape checks a built-in model's twin \(--model\); a file is one twin$",
    ),
    Cli(
        "--engine tape with a model file, which has no tape twin",
        [
            "train",
            "--file",
            str(Path(__file__).resolve().parents[1] / "examples" / "train_model.py"),
            "--engine",
            "tape",
        ],
        2,
        r"gradtwin: engine 'tape' runs the models with a tape twin \(linear1d, .*, transformer\); got model '.+'$",
    ),
    Cli("unknown model", ["check", "--model", "quadratic"], 2, r"gradtwin: model must be one of .*; got 'quadratic'$"),
    Cli(
        "a model file without manual_loss (compare, train)",
        ["compare", "--file", "m.py"],
        2,
        r"gradtwin: m\.py must define manual_loss\(params, X, Y\) to be trained \(compare, train\): the manual twin's "
        r"loss, which the loop records and stops on$",
        {"m.py": _MODEL_FILE.encode()},
    ),
    Cli(
        "a model file's params that do not fit --data",
        ["train", "--file", "m.py", "--data", "d.csv"],
        2,
        r"gradtwin: m\.py: its params fit X of shape \(n, 2\) \(the data of make_problem\(\)\); got X of shape "
        r"\(3(, 1)?\) from d\.csv: define init_params\(X, Y\) to start on other data$",
        {"m.py": (_MODEL_FILE + _TRAINABLE).encode(), **_csv(_OK)},
    ),
    Cli(
        "a point drawn around make_problem()'s that the model file cannot take (check --file)",
        ["check", "--file", "m.py"],
        2,
        r"gradtwin: m\.py: at point 1 of 5 \(drawn around it, seed 0\): torch_loss raised AssertionError: moved "
        r"\(line 10\); define sample_problem\(rng\) to choose the points, or pass --points 1$",
        {"m.py": _FRAGILE_FILE.encode()},
    ),
    Cli(
        "--seed with a model file (compare, train)",
        ["train", "--file", "m.py", "--seed", "1"],
        2,
        r"gradtwin: m\.py starts from make_problem\(\)'s params \(edit the file to start elsewhere\); --seed draws a "
        r"random start$",
        {"m.py": (_MODEL_FILE + _TRAINABLE).encode()},
    ),
    Cli(
        "--model and --file together",
        ["compare", "--model", "linear", "--file", "m.py"],
        2,
        r"gradtwin compare: error: argument --file: not allowed with argument --model$",
    ),
    Cli(
        "unknown device",
        ["compare", "--device", "tpu"],
        2,
        r"gradtwin: device must be one of auto, cpu, cuda, cuda:N or mps; got 'tpu'$",
    ),
    Cli(
        "cuda without CUDA",
        ["train", "--device", "cuda"],
        2,
        r"gradtwin: device 'cuda' requested but CUDA is not available here$",
        setup=lambda mp, _: mp.setattr("gradtwin.devices.nvidia_driver", lambda: False),
        skip=_CUDA,
    ),
    Cli(
        "cuda with a CPU-only torch on a machine with an NVIDIA driver",
        ["train", "--device", "cuda"],
        2,
        r"gradtwin: device 'cuda' requested but this torch \(.+\) is a CPU-only build on a machine with an NVIDIA "
        r"driver; install the CUDA build of the same version with: make gpu$",
        setup=_cpu_only_torch_with_driver,
    ),
    Cli(
        "cuda:N beyond the GPUs there are",
        ["check", "--device", "cuda:7", "--points", "1"],
        2,
        r"gradtwin: device 'cuda:7' requested but (CUDA is not available here|only \d+ CUDA device\(s\) exist)$",
    ),
    Cli(
        "mps with float64",
        ["train", "--device", "mps"],
        2,
        r"gradtwin: device 'mps' has no float64 support; use --dtype float32$",
    ),
    Cli(
        "mps without MPS",
        ["train", "--device", "mps", "--dtype", "float32"],
        2,
        r"gradtwin: device 'mps' requested but MPS is not available here$",
        skip=_MPS,
    ),
    Cli("unknown option", ["train", "--bogus"], 2, r"gradtwin: error: unrecognized arguments: --bogus$"),
    Cli("no command", [], 2, r"gradtwin: error: the following arguments are required: command$"),
    Cli(
        "option without its value",
        ["train", "--lr"],
        2,
        r"gradtwin train: error: argument --lr: expected one argument$",
    ),
    Cli(
        "output file that exists, without --force",
        _train("--history", "h.csv"),
        2,
        r"gradtwin: output file 'h\.csv' exists; pass --force to overwrite it$",
        {"h.csv": b"keep me"},
    ),
    Cli(
        "output file that exists, without --force",
        ["compare", "--plot", "p.png"],
        2,
        r"gradtwin: output file 'p\.png' exists; pass --force to overwrite it$",
        {"p.png": b"keep me"},
    ),
    Cli(
        "output folder that does not exist",
        _train("--history", "nowhere/h.csv"),
        2,
        r"gradtwin: output folder 'nowhere' does not exist$",
    ),
    Cli(
        "output path that is a folder",
        _train("--history", ".", "--force"),
        2,
        r"gradtwin: output file '\.' is a folder; give a file name$",
    ),
    Cli(
        "--iterations too many to record",
        ["train", "--data", "synthetic", "--n", "5", "--iterations", str(10**19)],
        2,
        r"gradtwin: recording \d+ iterations does not fit in memory; raise record_every or lower iterations$",
    ),
    Cli(
        "output file that cannot be written (disk full, no permission)",
        _train("--data", "synthetic", "--n", "5", "--history", "h.csv"),
        1,
        r"gradtwin: cannot write output file 'h\.csv' \(No space left on device\)$",
        setup=_disk_full,
    ),
    Cli(
        "a run that diverges",
        ["train", "--data", "synthetic", "--n", "20", "--lr", "100", "--iterations", "50"],
        3,
        r"gradtwin: manual: diverged at iteration \d+ \(loss \S+ from \S+\) with lr=100; "
        r"the largest stable learning rate for this model and data is \d\S*$",
    ),
    Cli(
        "a run that diverges",
        ["compare", "--data", "synthetic", "--n", "20", "--lr", "1e300", "--iterations", "5", "--json"],
        3,
        r"gradtwin: manual: diverged at iteration \d+ \(.+\) with lr=1e\+300; the largest stable learning rate",
    ),
    Cli("Ctrl-C", _train("--data", "synthetic", "--n", "5"), 130, r"gradtwin: interrupted$", setup=_interrupt),
]


def _lin(X: Any, Y: Any) -> datasets.Dataset:
    return datasets.Dataset(X, Y, name="mine")


def _run(data: Any = None, engine: Any = None, **kwargs: Any) -> Any:
    engine = make_engine("manual", get_model("linear1d")) if engine is None else engine
    data = _lin(np.arange(5.0), np.arange(5.0) * 2) if data is None else data
    return train(engine, data, **{"lr": 0.1, "iterations": 3, **kwargs})


LIB_CASES = [
    Lib(
        "Dataset of strings",
        lambda: _lin(np.array(["1", "2", "3"]), [1, 2, 3]),
        DataTypeError,
        r"mine: X must hold real numbers; got dtype <U1$",
    ),
    Lib(
        "Dataset of strings",
        lambda: _lin([1, 2], np.array(["a", 2], dtype=object)),
        DataTypeError,
        r"mine: Y must hold real numbers; got strings or complex numbers \(dtype object\)$",
    ),
    Lib(
        "Dataset of complex numbers",
        lambda: _lin(np.array([1 + 2j, 3]), [1, 2]),
        DataTypeError,
        r"mine: X must hold real numbers; got complex values \(dtype complex128\)$",
    ),
    Lib(
        "Dataset of objects that are not numbers",
        lambda: _lin(np.array([{"a": 1}, None], dtype=object), [1, 2]),
        DataTypeError,
        r"mine: X must hold real numbers; got objects that are not numbers$",
    ),
    Lib(
        "Dataset from ragged nested lists",
        lambda: _lin([[1, 2], [3]], [1, 2]),
        DataError,
        r"mine: X must be an array of numbers; got list \(.+\)$",
    ),
    Lib("empty Dataset", lambda: _lin(np.empty(0), np.empty(0)), DataError, r"mine: no data rows$"),
    Lib(
        "Dataset with X of 3 dimensions",
        lambda: _lin(np.ones((2, 2, 2)), [1, 2]),
        DataError,
        r"mine: X must be 1-D \(n,\) or 2-D \(n, d\); got shape \(2, 2, 2\)$",
    ),
    Lib(
        "Dataset whose X and Y rows differ",
        lambda: _lin([1, 2, 3], [1, 2]),
        DataError,
        r"mine: X has 3 rows but Y has 2$",
    ),
    Lib(
        "Dataset with NaN or infinite values",
        lambda: _lin([1, np.nan, 3], [1, 2, 3]),
        DataError,
        r"mine: X has a non-finite value \(nan\) at row 1$",
    ),
    Lib(
        "Dataset with NaN or infinite values",
        lambda: _lin(np.ones((3, 2)), [1, 2, -np.inf]),
        DataError,
        r"mine: Y has a non-finite value \(-inf\) at row 2$",
    ),
    Lib(
        "train() on 2-D X for linear1d",
        lambda: _run(_lin(np.ones((5, 2)), np.ones(5))),
        DataError,
        r"linear1d needs X 1-D \(n,\); got shape \(5, 2\) from mine$",
    ),
    Lib(
        "a Dataset with 2-D Y",
        lambda: _run(_lin(np.arange(5.0), np.ones((5, 1)))),
        DataError,
        r"mine: Y must be 1-D \(n,\); got shape \(5, 1\)$",
    ),
    Lib(
        "train() on something not a Dataset",
        lambda: _run(np.ones(5)),
        TypeError,
        r"data must be a gradtwin Dataset \(Dataset\(X, Y, name\)\); got ndarray$",
    ),
    Lib(
        "train() with something not an engine",
        lambda: _run(engine="manual"),
        TypeError,
        r"engine must be a gradtwin Engine \(make_engine\(name, model\)\); got str$",
    ),
    *(
        Lib(
            "train() with a bad lr",
            lambda lr=lr: _run(lr=lr),
            UsageError,
            rf"lr must be a positive finite number; got {lr!r}$",
        )
        for lr in [float("nan"), 0.0, -1.0, "abc", None]
    ),
    Lib(
        "train() with bad iterations, record_every, target_loss or batch_size",
        lambda: _run(iterations=0),
        UsageError,
        r"iterations must be an integer >= 1; got 0$",
    ),
    Lib(
        "train() with bad iterations, record_every, target_loss or batch_size",
        lambda: _run(record_every=0),
        UsageError,
        r"record_every must be an integer >= 1; got 0$",
    ),
    Lib(
        "train() with bad iterations, record_every, target_loss or batch_size",
        lambda: _run(target_loss=-1.0),
        UsageError,
        r"target_loss must be a finite number >= 0; got -1\.0$",
    ),
    Lib(
        "train() with bad iterations, record_every, target_loss or batch_size",
        lambda: _run(batch_size=0),
        UsageError,
        r"batch_size must be an integer >= 1; got 0$",
    ),
    Lib(
        "train() with init of wrong names",
        lambda: _run(init={"w": np.array(1.0)}),
        UsageError,
        r"init must give linear1d's parameters w, b; got w$",
    ),
    Lib(
        "train() with init of wrong shape",
        lambda: _run(init={"w": np.ones(3), "b": np.array(0.0)}),
        UsageError,
        r"init\['w'\] must have shape \(\); got shape \(3,\)$",
    ),
    Lib(
        "train() with non-finite init",
        lambda: _run(init={"w": np.array(0.0), "b": np.array(np.nan)}),
        UsageError,
        r"init\['b'\] must be finite; got nan$",
    ),
    Lib(
        "train() with a negative seed",
        lambda: _run(seed=-1),
        UsageError,
        r"seed must be an integer >= 0 or None; got -1$",
    ),
    Lib(
        "synthetic_linear1d with n below 1",
        lambda: datasets.synthetic_linear1d(n=0),
        UsageError,
        r"synthetic data needs n, an integer >= 1; got 0$",
    ),
    Lib(
        "load_csv with a header mode not auto, yes, no",
        lambda: datasets.load_csv("whatever.csv", header="maybe"),
        UsageError,
        r"header must be 'auto', 'yes' or 'no'; got 'maybe'$",
    ),
    Lib(
        "make_engine with an unknown engine or dtype",
        lambda: make_engine("jax", get_model("linear1d")),
        UsageError,
        r"engine must be one of .*manual.*; got 'jax'$",
    ),
    Lib(
        "make_engine with an unknown engine or dtype",
        lambda: make_engine("manual", get_model("linear1d"), dtype="float16"),
        UsageError,
        r"dtype must be one of float32, float64; got 'float16'$",
    ),
    Lib(
        "check_gradients with an unknown dtype or method",
        lambda: check_gradients(*_CHECKED, dtype="half"),
        UsageError,
        r"dtype must be one of float32, float64, float16, bfloat16; got 'half'$",
    ),
    Lib(
        "check_gradients with an unknown dtype or method",
        lambda: check_gradients(*_CHECKED, method="fast"),
        UsageError,
        r"method must be one of auto, exhaustive, sampled; got 'fast'$",
    ),
    Lib(
        "check_gradients in bfloat16 with NumPy hand code",
        lambda: check_gradients(*_CHECKED, dtype="bfloat16"),
        UsageError,
        r"dtype 'bfloat16' has no NumPy type: pass params as torch tensors \(or manual_array='torch'\) and return "
        r"torch tensors from manual_gradients$",
    ),
    Lib(
        "a torch hand gradient in another dtype or on another device",
        lambda: check_gradients(
            lambda p, X, Y: {k: torch.zeros(np.shape(v), dtype=torch.float64) for k, v in p.items()},
            _CHECKED[1],
            {k: torch.tensor(v) for k, v in _CHECKED[2].items()},
            _CHECKED[3],
            dtype="float32",
        ),
        UsageError,
        r"manual_gradients\(\)\['w'\] must be a tensor of dtype torch.float32 on cpu, like its inputs; got "
        r"torch.float64 on cpu$",
    ),
    Lib(
        "a name tapped twice (gradtwin.tap)",
        lambda: check_gradients(_CHECKED[0], _tapping_loss("twice"), *_CHECKED[2:]),
        UsageError,
        r"gradtwin.tap: the name 'Z' is tapped twice; each tapped tensor needs its own name$",
    ),
    Lib(
        "a tap on a tensor that does not require grad",
        lambda: check_gradients(_CHECKED[0], _tapping_loss("detached"), *_CHECKED[2:]),
        UsageError,
        r"gradtwin.tap\('Z', \.\.\.\): the tensor does not require grad \(it does not depend on the parameters, or "
        r"was detached\); tap a tensor computed from the parameters$",
    ),
    Lib(
        "a tap on a tensor the loss does not use",
        lambda: check_gradients(_with_intermediate(lambda X: np.zeros(len(X))), _tapping_loss("copy"), *_CHECKED[2:]),
        UsageError,
        r"gradtwin.tap\('Z', \.\.\.\): the tapped tensor is not on the loss's graph \(the loss does not depend on "
        r"it: a copy or a detached value was used after tapping\)$",
    ),
    Lib(
        "an intermediate's hand gradient of the wrong shape",
        lambda: check_gradients(
            _with_intermediate(lambda X: np.zeros((len(X), 1))), _tapping_loss("once"), *_CHECKED[2:]
        ),
        UsageError,
        r"manual_gradients\(\)\['Z'\] must have the shape of the tapped tensor 'Z', \(6,\); got \(6, 1\)$",
    ),
    Lib(
        "a hand gradient under a name torch_loss never tapped",
        lambda: check_gradients(
            _with_intermediate(lambda X: np.zeros(len(X)), "dZ"), _tapping_loss("once"), *_CHECKED[2:]
        ),
        UsageError,
        r"manual_gradients\(\)\['dZ'\] is neither a parameter nor a tensor the torch loss taps \(tapped: Z\); mark "
        r"it in torch_loss with gradtwin.tap\('dZ', tensor\)$",
    ),
    Lib(
        "a loss that overflows float16",
        lambda: check_gradients(
            _CHECKED[0], lambda p, X, Y: 1e6 * _CHECKED[1](p, X, Y), *_CHECKED[2:], dtype="float16"
        ),
        UsageError,
        r"torch_loss in float16 is inf: a value overflows float16's range \(65504\); scale the data or check in "
        r"float32$",
    ),
    Lib(
        "check_function whose fn has no hand-written backward",
        lambda: check_function(lambda x: x + 1.0, torch.ones(3, requires_grad=True)),
        UsageError,
        r"fn must be the apply of a torch.autograd.Function with a hand-written backward; its outputs' graph has "
        r"none \(grad_fn AddBackward0\)$",
    ),
    *(
        Lib("attention inputs of mismatched shapes", call, error, says)
        for call, error, says in [
            (
                lambda: attention_layer.forward({k: np.ones((4, 3)) for k in ("Wq", "Wk", "Wv")}, np.ones(4)),
                DataError,
                r"attention: X must be 2-D \(T, d\) or 3-D \(B, T, d\) with T >= 1; got shape \(4,\)$",
            ),
            (
                lambda: attention_layer.forward(
                    {"Wq": np.ones((4, 3)), "Wk": np.ones((4, 3)), "Wv": np.ones((4, 2))}, np.ones((5, 3))
                ),
                DataError,
                r"attention: Wq and Wk must be \(d, d_k\), Wv \(d, d_v\) with d = 3, the last axis of X; got "
                r"Wq \(4, 3\), Wk \(4, 3\), Wv \(4, 2\)$",
            ),
            (
                lambda: attention_layer.forward({"Wq": np.ones((4, 3)), "Wk": np.ones((4, 3))}, np.ones((5, 4))),
                UsageError,
                r"attention: params must be Wq, Wk, Wv and, optionally, Wo; got Wq, Wk$",
            ),
        ]
    ),
    *(
        Lib("cross_entropy labels out of range, not integers, or not one per row of the logits", call, error, says)
        for call, error, says in [
            (
                lambda: cross_entropy_layer.forward({}, np.zeros((5, 3)), np.array([0, 1, 2, 3, 1])),
                DataError,
                r"cross_entropy: Y must hold class indices in \[0, k\) with k = 3, the columns of X; got 3 at row 3$",
            ),
            (
                lambda: cross_entropy_layer.forward({}, np.zeros((5, 3)), np.zeros(5)),
                DataTypeError,
                r"cross_entropy: Y must hold integer class indices; got dtype float64$",
            ),
            (
                lambda: cross_entropy_layer.forward({}, np.zeros((5, 3)), np.zeros(4, dtype=int)),
                DataError,
                r"cross_entropy: X \(the logits\) must be 2-D \(n, k\) with n, k >= 1 and Y 1-D \(n,\); got "
                r"X \(5, 3\), Y \(4,\)$",
            ),
        ]
    ),
]


def _xy(n: int = 6, d: int = 2) -> tuple[np.ndarray, np.ndarray]:
    X = np.arange(n * d, dtype=float).reshape(n, d) ** 1.5
    return X, np.arange(n) % 2


def _fit(cls: type = GradientDescentRegressor, X: Any = None, y: Any = None, **kwargs: Any) -> Any:
    """Fit an estimator; keyword arguments go to its constructor, `sample_weight` to fit."""
    X0, y0 = _xy()
    weight = kwargs.pop("sample_weight", None)
    kwargs.setdefault("max_iter", 50)  # these fits only need to exist (their convergence is tested elsewhere)
    kwargs.setdefault("tol", None)
    return cls(**kwargs).fit(X0 if X is None else X, y0 if y is None else y, sample_weight=weight)


ESTIMATOR_CASES = [
    Lib(
        "estimator with 1-D X",
        lambda: _fit(X=np.arange(6.0)),
        ValueError,
        r"^Expected 2D array, got 1D array instead:",
        one_line=False,
    ),
    Lib(
        "estimator with sparse X",
        lambda: _fit(X=sparse.csr_matrix(_xy()[0])),
        TypeError,
        r"^Sparse data was passed for X, but dense data is required\. Use '\.toarray\(\)' to convert",
    ),
    Lib(
        "estimator with NaN or infinite X",
        lambda: _fit(X=np.where(np.eye(6, 2) > 0, np.nan, 1.0)),
        ValueError,
        r"^Input X contains NaN\.",
        one_line=False,
    ),
    Lib(
        "estimator with negative sample weights",
        lambda: _fit(sample_weight=[1.0, -1.0, 1.0, 1.0, 1.0, 1.0]),
        DataError,
        r"^sample_weight must be >= 0; got -1 at row 1 \(counting from 0\)$",
    ),
    Lib(
        "estimator with all-zero sample weights",
        lambda: _fit(sample_weight=np.zeros(6)),
        DataError,
        r"^sample_weight must not be all zero; got 6 zeros, which leave nothing to fit$",
    ),
    Lib(
        "regressor with a non-numeric target",
        lambda: _fit(y=np.array(list("abcdef"))),
        DataTypeError,
        r"^GradientDescentRegressor \(a regressor; for class labels use GradientDescentClassifier\): "
        r"y must hold real numbers; got dtype <U1$",
    ),
    Lib(
        "classifier with a continuous target",
        lambda: _fit(GradientDescentClassifier, y=np.linspace(0, 1, 6)),
        ValueError,
        r"^Unknown label type: continuous\. Maybe you are trying to fit a classifier",
    ),
    Lib(
        "classifier with one class, or one class of positive weight",
        lambda: _fit(GradientDescentClassifier, y=np.ones(6)),
        DataError,
        r"^GradientDescentClassifier needs samples of at least 2 classes; got 1 class \(1\.0\)$",
    ),
    Lib(
        "classifier with one class, or one class of positive weight",
        lambda: _fit(GradientDescentClassifier, sample_weight=np.arange(6) % 2),
        DataError,
        r"^GradientDescentClassifier needs samples of at least 2 classes with a positive sample_weight; "
        r"got 1 class \(1\)$",
    ),
    *(
        Lib(
            "estimator with an unknown engine, or a bad lr, max_iter, target_loss or batch_size",
            lambda kw=kw: _fit(**kw),
            UsageError,
            says,
        )
        for kw, says in [
            ({"engine": "jax"}, r"^GradientDescentRegressor: engine must be one of manual, autograd.*; got 'jax'$"),
            ({"lr": 0}, r"^GradientDescentRegressor: lr must be 'auto' or a positive finite number; got 0$"),
            ({"max_iter": 1.5}, r"^GradientDescentRegressor: max_iter must be an integer >= 1; got 1\.5$"),
            ({"target_loss": -1}, r"target_loss must be None or a finite number >= 0; got -1$"),
            ({"batch_size": "all"}, r"batch_size must be None or an integer >= 1; got 'all'$"),
        ]
    ),
    *(
        Lib("estimator with a bad tol or n_iter_no_change", lambda kw=kw: _fit(**kw), UsageError, says)
        for kw, says in [
            ({"tol": -1}, r"^GradientDescentRegressor: tol must be None or a finite number >= 0; got -1$"),
            (
                {"n_iter_no_change": 0},
                r"^GradientDescentRegressor: n_iter_no_change must be an integer >= 1; got 0$",
            ),
        ]
    ),
    Lib(
        "estimator whose run diverges",
        lambda: _fit(lr=1e6),
        DivergedError,
        r"^GradientDescentRegressor\(engine='manual'\): diverged at iteration \d+ \(.*\) with lr=1e\+06; "
        r"the largest stable learning rate for this model and data is [0-9.e+-]+; lr='auto' takes [0-9.e+-]+$",
    ),
    Lib(
        "predict before fit",
        lambda: GradientDescentClassifier().predict(_xy()[0]),
        NotFittedError,
        r"^This GradientDescentClassifier instance is not fitted yet\.",
    ),
    Lib(
        "predict with another number of features",
        lambda: _fit().predict(np.ones((2, 3))),
        ValueError,
        r"^X has 3 features, but GradientDescentRegressor is expecting 2 features as input\.$",
    ),
]
LIB_CASES += ESTIMATOR_CASES

LIB_CASES += [
    Lib(
        "character indices that are not whole numbers in [0, V) (charmlp, transformer)",
        lambda: get_model("charmlp").manual.loss(
            get_model("charmlp").init_params(datasets.load_names()), np.full((2, 3), 0.5), np.zeros(2, dtype=np.int64)
        ),
        DataError,
        r"charmlp: X must hold whole-number character indices in \[0, V\) with V = 27; got 0.5 at \(0, 0\)$",
    ),
    Lib(
        "character indices that are not whole numbers in [0, V) (charmlp, transformer)",
        lambda: get_model("transformer").autograd.loss(
            {k: torch.as_tensor(v) for k, v in get_model("transformer").init_params(datasets.load_names(8)).items()},
            torch.full((1, 8), 27.0),
            torch.zeros(1, dtype=torch.int64),
        ),
        DataError,
        r"transformer: X must hold whole-number character indices in \[0, V\) with V = 27; got 27.0 at \(0, 0\)$",
    ),
    Lib(
        "an engine Tensor mixed with a torch tensor or a list in an op",
        lambda: operator.add(Tensor(np.ones(2)), [1.0, 2.0]),
        TypeError,
        r"add: expected an engine Tensor, a NumPy array or a Python number; got list$",
    ),
    Lib(
        "an engine Tensor mixed with a torch tensor or a list in an op",
        lambda: Tensor(np.ones(2)) * torch.ones(2),
        TypeError,
        r"mul: expected an engine Tensor, a NumPy array or a Python number; got torch.Tensor$",
    ),
]

EMBEDDING_ROW = "embedding indices out of range or not integers"
CONV2D_ROW = "conv2d with a kernel larger than the padded input, X's channels not W's, or a bad stride or padding"
MAXPOOL2D_ROW = (
    "maxpool2d with a pool larger than the input or a bad kernel or stride (a pool that does not tile the input is "
    "no error: as in PyTorch, the trailing rows and columns no full window reaches are dropped and get no gradient)"
)
LIB_CASES += [
    Lib(
        EMBEDDING_ROW,
        lambda: embedding_layer.forward({"W": np.ones((5, 2))}, np.array([[0, 1], [5, 2]])),
        DataError,
        r"^embedding: X must hold indices in \[0, V\) with V = 5, the rows of W; got 5 at \(1, 0\)$",
    ),
    Lib(
        EMBEDDING_ROW,
        lambda: embedding_layer.forward({"W": np.ones((5, 2))}, np.array([0.0, 1.0])),
        DataTypeError,
        r"^embedding: X must hold integer indices; got dtype float64$",
    ),
    Lib(
        CONV2D_ROW,
        lambda: conv2d_layer.forward({"W": np.ones((2, 1, 5, 5)), "b": np.zeros(2)}, np.ones((1, 1, 2, 3)), 1, 1),
        UsageError,
        r"^conv2d: the kernel \(kh, kw\) must fit in the padded input \(H \+ 2\*padding, W \+ 2\*padding\); got "
        r"kernel \(5, 5\) and padded input \(4, 5\)$",
    ),
    Lib(
        CONV2D_ROW,
        lambda: conv2d_layer.forward({"W": np.ones((2, 1, 3, 3)), "b": np.zeros(2)}, np.ones((1, 2, 4, 4))),
        UsageError,
        r"^conv2d: X must be 4-D \(N, C_in, H, W\) with C_in = 1, W's second axis; got shape \(1, 2, 4, 4\)$",
    ),
    Lib(
        CONV2D_ROW,
        lambda: conv2d_layer.forward({"W": np.ones((2, 1, 3, 3)), "b": np.zeros(2)}, np.ones((1, 1, 4, 4)), 0),
        UsageError,
        r"^conv2d: stride must be an integer >= 1 and padding >= 0; got stride=0, padding=0$",
    ),
    Lib(
        MAXPOOL2D_ROW,
        lambda: maxpool2d_layer.forward({}, np.ones((1, 1, 3, 5)), 4),
        UsageError,
        r"^maxpool2d: X must be 4-D \(N, C, H, W\) with H, W >= kernel = 4; got shape \(1, 1, 3, 5\)$",
    ),
    Lib(
        MAXPOOL2D_ROW,
        lambda: maxpool2d_layer.forward({}, np.ones((1, 1, 4, 4)), 2, 0),
        UsageError,
        r"^maxpool2d: kernel and stride must be integers >= 1; got kernel=2, stride=0$",
    ),
]


DROPOUT_P_ROW = "dropout with p outside [0, 1)"
DROPOUT_MASK_ROW = "dropout with a mask not of X's shape or not of 0s and 1s"
LIB_CASES += [
    *(
        Lib(
            DROPOUT_P_ROW,
            lambda p=p: dropout_layer.forward({}, np.ones((2, 3)), np.ones((2, 3)), p),
            UsageError,
            rf"^dropout: p must be the probability of dropping an element, in \[0, 1\); got {re.escape(repr(p))}$",
        )
        for p in [1.0, -0.1, float("nan"), "0.5"]
    ),
    Lib(
        DROPOUT_MASK_ROW,
        lambda: dropout_layer.forward({}, np.ones((2, 3)), np.ones((3, 2)), 0.5),
        UsageError,
        r"^dropout: keep \(the mask\) must have X's shape \(2, 3\); got \(3, 2\)$",
    ),
    Lib(
        DROPOUT_MASK_ROW,
        lambda: dropout_layer.forward({}, np.ones((2, 3)), np.full((2, 3), 2.0), 0.5),
        UsageError,
        r"^dropout: keep \(the mask\) must hold only 0 \(drop\) and 1 \(keep\); got 6 other value\(s\)$",
    ),
    Lib(
        "batchnorm on X of fewer than 2 rows or not 2-D",
        lambda: batchnorm_layer.forward({"gamma": np.ones(3), "beta": np.zeros(3)}, np.ones((1, 3))),
        DataError,
        r"^batchnorm: X must be 2-D \(n, d\) with n >= 2 rows \(one row's batch statistics normalise it to 0\); "
        r"got shape \(1, 3\)$",
    ),
]


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Each file's size and modification time: what an overwrite or a stray file would change."""
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir()}


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """main(argv) in this process: (exit code, stdout, stderr)."""
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("case", CLI_CASES, ids=lambda c: f"{c.input}|{' '.join(c.argv)}")
def test_command_line_bad_input(
    case: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    if case.skip:
        pytest.skip(case.skip)
    monkeypatch.chdir(tmp_path)
    for name, content in case.files.items():
        (tmp_path / name).write_bytes(content)
    if case.setup is not None:
        case.setup(monkeypatch, tmp_path)
    before = _snapshot(tmp_path)
    code, out, err = run_cli(case.argv, capsys)
    assert code == case.exit, err
    lines = err.splitlines()
    assert len(lines) == 1, f"expected one line on stderr; got {err!r}"
    assert re.match(case.says, lines[0]), f"{lines[0]!r} does not match {case.says!r}"
    assert _as_documented(case.input, lines[0])
    assert "nan" not in re.findall(r"[a-z]+", out.lower()) and "inf" not in re.findall(r"[a-z]+", out.lower())
    # nothing written, nothing overwritten, no temporary file left beside the outputs
    assert _snapshot(tmp_path) == before


@pytest.mark.parametrize("case", LIB_CASES, ids=lambda c: c.input)
def test_library_bad_input(case: Lib) -> None:
    with pytest.raises(case.raises) as raised:
        case.call()
    assert re.search(case.says, str(raised.value)), f"{raised.value!s} does not match {case.says!r}"
    assert _as_documented(case.input, f"{type(raised.value).__name__}: {raised.value}")
    assert "\n" not in str(raised.value) or not case.one_line


def _doc_rows() -> dict[str, str]:
    """input -> exit, from the catalogue's tables (those whose first column is 'input')."""
    rows: dict[str, str] = {}
    in_table = False
    for line in DOC.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("|") else []
        if not cells:
            in_table = False
        elif cells[0] == "input":
            in_table = True
        elif in_table and not set(cells[0]) <= {"-"}:
            rows[cells[0]] = cells[-1]
    return rows


def _doc_patterns() -> dict[str, list[str]]:
    """input -> the messages its row shows (each text in backticks), as regular expressions (`_pattern`)."""
    patterns: dict[str, list[str]] = {}
    in_table = False
    for line in DOC.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("|") else []
        if not cells:
            in_table = False
        elif cells[0] == "input":
            in_table = True
        elif in_table and not set(cells[0]) <= {"-"}:
            said = "|".join(cells[1:-1]).replace("\\|", "|")
            patterns[cells[0]] = [_pattern(shown) for shown in re.findall(r"`([^`]+)`", said)]
    return patterns


def _pattern(shown: str) -> str:
    """The words exactly; a placeholder (`<file>`), a quoted value, a number, nan, inf or None as an
    example of its kind; `...` for the rest of a long message."""
    value = r"'[^']*'|(?<![\w.])(?:[-+]?\d[\d.e+-]*|-?inf|nan|None)(?![\w])"
    parts = re.split(rf"(<[a-z ]+>|\s*\.\.\.|{value})", shown)

    def regex(part: str) -> str:
        if part.startswith("<"):
            return ".+?"
        if part.strip() == "...":
            return ".*"
        if part.startswith("'"):
            return "'[^']*'"
        return r"\S+" if re.fullmatch(value, part) else re.escape(part)

    return "".join(regex(p) for p in parts)


def _as_documented(row: str, said: str) -> bool:
    """Whether `said` is a message the catalogue shows for `row`: the code's words, not a paraphrase."""
    shown = _doc_patterns().get(row, [])
    assert shown, f"the catalogue row {row!r} shows no message in backticks"
    assert any(re.fullmatch(p, said, re.S) for p in shown), f"README shows {shown} for {row!r}; the code says {said!r}"
    return True


def test_every_catalogue_row_has_a_test_and_every_test_a_row() -> None:
    rows = _doc_rows()
    tested = {c.input: str(c.exit) for c in CLI_CASES} | {c.input: "-" for c in LIB_CASES}
    assert set(rows) == set(tested)
    assert rows == tested, "the exit codes in the README's catalogue differ from those the tests expect"


def test_library_errors_are_both_gradtwin_errors_and_builtin_ones() -> None:
    """DataError/UsageError are ValueErrors and DataTypeError a TypeError, so callers may catch either."""
    assert issubclass(DataError, ValueError) and issubclass(UsageError, ValueError)
    assert issubclass(DataTypeError, TypeError) and issubclass(DataTypeError, DataError)


def test_object_arrays_of_numbers_and_integers_are_accepted_as_float64() -> None:
    """The refusal is of non-numbers, not of dtypes: ints, bools and objects holding numbers convert."""
    data = _lin(np.array([1, 2, 3], dtype=object), np.array([True, False, True]))
    assert data.X.dtype == np.float64 and data.Y.dtype == np.float64
    np.testing.assert_array_equal(data.X, [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(data.Y, [1.0, 0.0, 1.0])


def test_the_catalogue_check_catches_a_paraphrase() -> None:
    """The drift issue 15 found: a row listing one model where the code lists seven does not pass."""
    said = "gradtwin: model must be one of linear1d, linear, logistic; got 'quadratic'"
    assert re.fullmatch(_pattern("gradtwin: model must be one of linear1d; got 'quadratic'"), said) is None
    assert re.fullmatch(_pattern("gradtwin: model must be one of linear1d, linear, logistic; got 'x'"), said)
    assert re.fullmatch(_pattern("gradtwin: <file>:<line>: X is 'nan'"), "gradtwin: a.csv:3: X is '-inf'")

"""Fuzzing the boundary: random bytes, malformed CSV files and random option values.

The contract, whatever comes in: either a correct run (exit 0, finite numbers, valid JSON
with --json) or one clear line on stderr and a non-zero exit; never a traceback, never NaN
or Infinity in the output.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from gradtwin import data as datasets
from gradtwin.cli import main
from gradtwin.errors import DataError

FUZZ = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
NON_FINITE_WORDS = re.compile(r"\b(nan|inf|infinity)\b", re.IGNORECASE)


def _file(folder: str, content: bytes, name: str = "d.csv") -> Path:
    path = Path(folder) / name
    path.write_bytes(content)
    return path


def _assert_one_clear_line(message: str, starts: str) -> None:
    assert "\n" not in message and "Traceback" not in message, message
    assert message.startswith(starts), f"{message!r} does not start with {starts!r}"


# --- the loader ----------------------------------------------------------------------------


CSV_BYTES = st.lists(st.sampled_from([*b"0123456789", *b'..,,,--e+ \t\n\n\r"x\xff\x00', b"nan"[0]]), max_size=120).map(
    bytes
)


@settings(FUZZ, max_examples=300)
@given(content=st.one_of(st.binary(max_size=300), CSV_BYTES), header=st.sampled_from(["auto", "yes", "no"]))
def test_random_bytes_load_or_fail_with_one_line(content: bytes, header: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = _file(folder, content)
        try:
            data = datasets.load_csv(path, header=header)
        except DataError as e:
            _assert_one_clear_line(str(e), str(path))
            event("refused")
            return
    event("loaded")
    assert data.n >= 1 and data.X.dtype == np.float64 and data.Y.dtype == np.float64
    assert np.all(np.isfinite(data.X)) and np.all(np.isfinite(data.Y))


NUMBER = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False, width=64),
    st.integers(-(10**6), 10**6),
)
JUNK = ["abc", "--", "1..2", "0x10", "1,5", "", " ", "true", "e5", "1e", "½"]
NON_FINITE = ["nan", "NaN", "-inf", "Infinity", "1e999", "-1e400"]
NAMES = ["x", "y", "bmi", "target", "col 3", "ä", "weight_kg"]
CORRUPTIONS = ["none", "ragged", "junk", "non_finite", "nul", "not_utf8", "header_no", "empty", "header_only"]


@st.composite
def csv_file(draw: st.DrawFn) -> dict[str, Any]:
    """A CSV of known numbers, optionally with one planted fault at a known line."""
    width = draw(st.integers(2, 4))
    n = draw(st.integers(1, 12))
    table = [[draw(NUMBER) for _ in range(width)] for _ in range(n)]
    ix, iy = draw(st.lists(st.integers(0, width - 1), min_size=2, max_size=2, unique=True))
    names = draw(st.lists(st.sampled_from(NAMES), min_size=width, max_size=width, unique=True))
    with_header = draw(st.booleans())
    mode = draw(st.sampled_from(["auto", "yes"] if with_header else ["auto", "no"]))
    newline = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    pad = draw(st.sampled_from(["", " ", "\t"]))
    bom = draw(st.booleans())
    corruption = draw(st.sampled_from(CORRUPTIONS))
    target_row = draw(st.integers(0, n - 1))
    target_col = draw(st.sampled_from([ix, iy]))

    if not with_header and target_row == 0 and corruption == "ragged":
        # without a header the first row sets the width, so a short first row is not "the ragged one"
        corruption = "ragged" if n > 1 else "none"
        target_row = 1 if n > 1 else 0
    if not with_header and target_row == 0 and corruption == "junk":
        mode = "no"  # with 'auto', a first row of words is a header, not a fault: the format is ambiguous

    cells = [[f"{pad}{v!r}{pad}" for v in row] for row in table]
    if corruption == "ragged":
        cells[target_row] = cells[target_row][: draw(st.integers(1, width - 1))]
    elif corruption in ("junk", "non_finite"):
        token = draw(st.sampled_from(JUNK if corruption == "junk" else NON_FINITE))
        cells[target_row][target_col] = f'"{token}"' if "," in token else token

    lines: list[str] = []
    data_lines: list[int] = []  # the file line (from 1) of each data row
    if with_header or corruption == "header_no":
        lines.append(",".join(names))
    for row in cells if corruption not in ("empty", "header_only") else []:
        if draw(st.booleans()) and draw(st.booleans()):
            lines.append("")  # blank lines are skipped but still counted
        lines.append(",".join(row))
        data_lines.append(len(lines))
    if corruption == "header_only" and not lines:
        lines.append(",".join(names))
    text = newline.join(lines) + (newline if draw(st.booleans()) else "")
    raw = ("\ufeff" if bom else "").encode() + text.encode()
    bad_line = data_lines[target_row] if data_lines else 1
    if corruption in ("nul", "not_utf8"):
        offset = len(("\ufeff" if bom else "").encode() + newline.join(lines[: bad_line - 1]).encode())
        offset += len(newline.encode()) if bad_line > 1 else 0
        raw = raw[:offset] + (b"\x00" if corruption == "nul" else b"\xff") + raw[offset:]
    use_names = with_header and draw(st.booleans())
    return {
        "raw": raw,
        "mode": "no" if corruption == "header_no" else mode,
        "x": names[ix] if use_names else str(ix),
        "y": names[iy] if use_names else str(iy),
        "expected": (np.array([r[ix] for r in table], float), np.array([r[iy] for r in table], float)),
        "corruption": corruption,
        "line": bad_line,
        "with_header": with_header,
    }


@settings(FUZZ, max_examples=300)
@given(case=csv_file())
def test_malformed_csv_is_refused_at_its_line_and_clean_csv_reads_exactly(case: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = _file(folder, case["raw"])
        try:
            data = datasets.load_csv(path, x=case["x"], y=case["y"], header=case["mode"])
        except DataError as e:
            message = str(e)
            _assert_one_clear_line(message, str(path))
            corruption = case["corruption"]
            assert corruption != "none", f"a clean file was refused: {message}"
            if corruption in ("ragged", "junk", "non_finite", "nul", "not_utf8"):
                assert message.startswith(f"{path}:{case['line']}: "), message
            if corruption == "header_no":
                assert message.startswith(f"{path}:1: ") and "(--header no)" in message
            if corruption == "empty":
                assert "no data rows" in message
            return
    assert case["corruption"] == "none", f"{case['corruption']} was not noticed"
    X, Y = case["expected"]
    np.testing.assert_array_equal(data.X, X)
    np.testing.assert_array_equal(data.Y, Y)


# --- the command line ----------------------------------------------------------------------

# Each option's values that should run, and values that should be refused (exit 1 or 2).
# Data files that load but cannot be trained on (huge.csv) and learning rates that diverge
# sit among the valid ones: they are legal input whose outcome is decided by the run.
VALID: dict[str, list[str]] = {
    "--lr": ["0.1", "0.5", "1e-3", "1.5", "3", "1e300", "1e-320"],
    "--iterations": ["1", "4", "25"],
    "--target-loss": ["0", "1", "1e12"],
    "--seed": ["0", "7"],
    "--dtype": ["float32", "float64"],
    "--device": ["cpu"],
    "--record-every": ["1", "3", "1000000"],
    "--data": ["diabetes", "synthetic", "good.csv", "huge.csv"],
    "--x": ["0", "x"],
    "--y": ["1", "y"],
    "--header": ["auto", "yes"],
    "--n": ["1", "2", "40"],
    "--noise": ["0", "0.5", "1e308"],
    "--data-seed": ["0", "3"],
    "--model": ["linear1d"],
    "--engine": ["manual", "autograd"],
    "--history": ["h.csv"],
    "--plot": [],  # a successful plot costs a second of matplotlib; test_atomic_write draws one
    "--points": ["1", "2"],
}
INVALID: dict[str, list[str]] = {
    "--lr": ["0", "-1", "nan", "inf", "abc", ""],
    "--iterations": ["0", "-2", "2.5", "1e3", "x", str(10**20)],
    "--target-loss": ["-1", "nan", "inf", "x"],
    "--seed": ["-1", "x", "1.5"],
    "--dtype": ["float16", ""],
    "--device": ["cuda", "cuda:3", "mps", "tpu", "", "CPU"],
    "--record-every": ["0", "-1", "x"],
    "--data": ["missing.csv", "bad.csv", "notfinite.csv", "."],
    "--x": ["2", "nope", "-1"],
    "--y": ["9", "nope"],
    "--header": ["no", "maybe"],
    "--n": ["0", "-5", "x"],
    "--noise": ["-1", "nan"],
    "--data-seed": ["-1"],
    "--model": ["quadratic"],
    "--engine": ["jax"],
    "--history": ["exists.csv", "nowhere/h.csv", "."],
    "--plot": ["nowhere/p.png", "exists.png", "."],
    "--points": ["0", "x"],
}
FLAGS = ["--json", "--force", "--no-standardize"]
OPTIONS = {
    "train": [o for o in VALID if o not in ("--plot", "--points")],
    "compare": [o for o in VALID if o not in ("--history", "--points", "--engine")],
    "check": ["--points", "--dtype", "--device", "--seed", "--model"],
}
FILES = {
    "good.csv": b"x,y\n1,2\n2,4.5\n3,5.9\n4,8.2\n",
    "bad.csv": b"x,y\n1,2\n2,abc\n",
    "notfinite.csv": b"1,2\n2,nan\n",
    "huge.csv": b"1e308,1\n-1e308,2\n1e300,3e300\n",
    "exists.csv": b"keep",
    "exists.png": b"keep",
}


@st.composite
def command_line(draw: st.DrawFn) -> list[str]:
    """A command with some options set to valid values and none, one or two to invalid ones."""
    command = draw(st.sampled_from(list(OPTIONS)))
    faulty = draw(st.lists(st.sampled_from(OPTIONS[command]), max_size=2, unique=True))
    argv = [command]
    for option in OPTIONS[command]:
        choices = INVALID[option] if option in faulty else VALID[option]
        if choices and (option in faulty or draw(st.booleans())):
            argv.append(f"{option}={draw(st.sampled_from(choices))}")
    if "--points" not in " ".join(argv) and command == "check":
        argv.append("--points=1")  # the default, 200 points, is a minute of work, not a fuzz example
    if command != "check":
        argv += [f for f in FLAGS if draw(st.booleans())]
    elif draw(st.booleans()):
        argv.append("--json")
    if command != "check" and not any(a.startswith("--iterations") for a in argv):
        argv.append("--iterations=25")  # likewise the default budget
    return [command, *draw(st.permutations(argv[1:]))]


def run_in_process(argv: list[str], folder: str) -> tuple[int, str, str]:
    """main(argv) with cwd `folder`, its stdout and stderr captured; any escaping exception fails."""
    out, err = io.StringIO(), io.StringIO()
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(argv)
    finally:
        os.chdir(cwd)
    return code, out.getvalue(), err.getvalue()


def _no_non_finite_json(text: str) -> Any:
    def refuse(constant: str) -> Any:
        raise AssertionError(f"JSON holds {constant}")

    return json.loads(text, parse_constant=refuse)


def check_contract(argv: list[str], code: int, out: str, err: str, folder: str) -> None:
    """The promise of every run: success with finite numbers, or one line and a non-zero exit."""
    assert "Traceback" not in err and "Traceback" not in out
    assert not NON_FINITE_WORDS.search(out), f"non-finite number in the output of {argv}: {out!r}"
    if "--json" in argv and out:
        _no_non_finite_json(out)
    history = next((a.split("=", 1)[1] for a in argv if a.startswith("--history=")), None)
    plot = next((a.split("=", 1)[1] for a in argv if a.startswith("--plot=")), None)
    outputs = (("plot", plot), ("history", history))
    wrote = "".join(f"gradtwin: wrote {what} to {path!r}\n" for what, path in outputs if path is not None)  # named
    if code == 0:
        assert err == wrote, f"{argv} succeeded but wrote to stderr: {err!r}"
        assert out.strip(), f"{argv} succeeded and said nothing"
        if history is not None:
            written = datasets.load_csv(Path(folder) / history, x="iteration", y="loss", header="yes")
            assert np.all(np.isfinite(written.Y))
    else:
        assert code in (1, 2, 3), f"{argv}: exit {code}"
        lines = err.splitlines()  # a diverged run's one line names the files it wrote
        assert len(lines) == 1, f"{argv}: expected one line on stderr; got {err!r}"
        assert lines[0].startswith("gradtwin"), lines[0]
    for name, content in FILES.items():
        if "--force" not in argv:
            assert (Path(folder) / name).read_bytes() == content, f"{argv} changed {name} without --force"
    strays = [p.name for p in Path(folder).iterdir() if p.name.startswith(".")]
    assert strays == [], f"{argv} left temporary files {strays}"


@settings(FUZZ, max_examples=400)
@given(argv=command_line())
def test_random_options_run_correctly_or_fail_with_one_line(argv: list[str]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        for name, content in FILES.items():
            _file(folder, content, name)
        code, out, err = run_in_process(argv, folder)
        check_contract(argv, code, out, err, folder)
    event(f"exit {code}")  # --hypothesis-show-statistics shows how many runs got how far


@settings(FUZZ, max_examples=100)
@given(argv=st.lists(st.text(max_size=12), max_size=6), command=st.sampled_from(["train", "compare", "check", "x"]))
def test_arbitrary_words_on_the_command_line_never_raise(argv: list[str], command: str) -> None:
    """Words of any characters (control characters, surrogate-free unicode) as options and values."""
    with tempfile.TemporaryDirectory() as folder:
        code, _, err = run_in_process([command, *argv, "--iterations=3", "--points=1"], folder)
    if code != 0:
        assert len(err.splitlines()) == 1 and err.startswith("gradtwin"), err
    assert "Traceback" not in err


def test_no_traceback_reaches_stderr_of_the_real_command(tmp_path: Path) -> None:
    """Two runs as a user would make them: a bad option, and a binary file given as data."""
    (tmp_path / "photo.csv").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    runs = [
        (["train", "--lr", "nan"], 2, "gradtwin train: error: argument --lr: expected a positive finite number"),
        (["compare", "--data", "photo.csv"], 1, "gradtwin: photo.csv:1: not UTF-8 text (byte 0 is 0x89)"),
    ]
    for argv, code, says in runs:
        done = subprocess.run(
            [sys.executable, "-m", "gradtwin", *argv], cwd=tmp_path, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == code, done.stderr
        assert done.stderr.count("\n") == 1 and done.stderr.startswith(says), done.stderr
        assert done.stdout == ""


def test_the_fuzz_values_hold_both_valid_and_invalid_choices() -> None:
    """A fuzz test whose values were all invalid would only ever see argparse refuse them."""
    with tempfile.TemporaryDirectory() as folder:
        for name, content in FILES.items():
            _file(folder, content, name)
        code, out, err = run_in_process(
            ["train", "--data=good.csv", "--lr=0.5", "--iterations=25", "--json", "--history=h.csv"], folder
        )
        check_contract(["--json", "--history=h.csv"], code, out, err, folder)
    assert code == 0 and math.isfinite(json.loads(out)["loss"])

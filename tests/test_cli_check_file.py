"""`gradtwin check --file`: the example files, and one clear line for every mistake in a user's file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import DTYPES
from gradtwin.cli import main

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

GOOD = (EXAMPLES / "good_model.py").read_text()


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("dtype", DTYPES)
def test_good_example_exits_0(dtype: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["check", "--file", str(EXAMPLES / "good_model.py"), "--dtype", dtype], capsys)
    assert code == 0, out + err
    assert "all agree" in out and err == ""


def test_bad_example_exits_1_with_the_diagnoses(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["check", "--file", str(EXAMPLES / "bad_model.py")], capsys)
    assert code == 1
    assert "MISMATCH" in out and "opposite sign" in out and "n = 50 times" in out


def test_bad_example_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["check", "--file", str(EXAMPLES / "bad_model.py"), "--json"], capsys)
    report = json.loads(out)
    assert code == 1 and report["ok"] is False
    assert [p["name"] for p in report["params"]] == ["w", "b"]


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (GOOD.replace("def torch_loss", "def other_loss"), "missing: torch_loss"),
        (GOOD + "\ndef broken(:\n", "syntax error"),
        (GOOD + "\n1 / 0\n", "importing it raised ZeroDivisionError: division by zero (line"),
        (GOOD.replace('"b": np.sum(dz)}', '"bias": np.sum(dz)}'), "missing ['b']; unexpected ['bias']"),
        (
            GOOD.replace('"w": X.T @ dz', '"w": X.T @ dz[:, None]'),
            "must have the shape of params['w'], (3,); got (3, 1)",
        ),
        (GOOD.replace("X = rng.standard_normal((50, 3))", "X = rng.standard_normal((50, 4))"), "raised"),
        (GOOD + "\ndef make_problem():\n    return [1, 2]\n", "make_problem() must return"),
    ],
)
def test_mistakes_in_the_file_are_one_line_exit_2(
    source: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "my_model.py"
    path.write_text(source)
    code, out, err = run(["check", "--file", str(path)], capsys)
    assert code == 2
    assert out == ""
    assert err.startswith("gradtwin: ") and err.count("\n") == 1, err
    assert message in err
    assert "Traceback" not in err


def test_missing_file_is_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["check", "--file", "no/such/model.py"], capsys)
    assert code == 2 and "no such file" in err


def test_builtin_models_still_checked(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["check", "--model", "all", "--points", "3"], capsys)
    assert code == 0 and "manual vs autograd" in out

"""`compare --file` and `train --file`: your own twins through the one loop; the registry; the README's commands."""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import gradtwin
from gradtwin import MODELS, make_engine, model_from_file, register, train
from gradtwin.cli import main
from gradtwin.errors import UsageError

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "train_model.py"
POISSON = EXAMPLE.read_text()
GOOD = (ROOT / "examples" / "good_model.py").read_text()
README = (ROOT / "README.md").read_text()

# the logistic regression of good_model.py, trainable, and a classifier by its predict
CLASSIFIER = (
    GOOD
    + """

def manual_loss(params, X, Y):
    z = X @ params["w"] + params["b"]
    return np.mean(np.logaddexp(0.0, z) - Y * z)


def predict(params, X):
    return (X @ params["w"] + params["b"] > 0).astype(int)


LR = 1.0
ITERATIONS = 200
"""
)


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def _write(tmp_path: Path, source: str, name: str = "my_model.py") -> str:
    path = tmp_path / name
    path.write_text(source)
    return str(path)


@pytest.fixture
def registry() -> Iterator[None]:
    """Whatever a test registers is gone after it: MODELS holds the built-in models again."""
    before = dict(MODELS)
    yield
    MODELS.clear()
    MODELS.update(before)


def test_compare_trains_both_twins_of_the_file_side_by_side(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["compare", "--file", str(EXAMPLE)], capsys)
    assert code == 0 and err == "", err
    assert "manual (NumPy)" in out and "autograd (PyTorch)" in out and "least squares" not in out
    assert "start: make_problem()'s params" in out and "lr=0.1" in out  # the file's LR
    code, out, _ = run(["compare", "--file", str(EXAMPLE), "--json"], capsys)
    got = json.loads(out)
    assert set(got) == {"manual", "autograd", "max_abs_diff"}
    m, a = got["manual"], got["autograd"]
    assert m["iterations"] == a["iterations"] == 500  # the file's ITERATIONS
    assert np.allclose(m["params"]["w"], a["params"]["w"], rtol=0, atol=1e-12)
    # Poisson regression recovers the rates the file drew its counts from: exp(0.8 x1 - 0.5 x2 + 1)
    assert np.allclose(m["params"]["w"], [0.8, -0.5], atol=0.1) and abs(m["params"]["b"] - 1.0) < 0.1
    assert max(got["max_abs_diff"].values()) < 1e-12


def test_the_cli_runs_the_one_loop_from_the_files_start(capsys: pytest.CaptureFixture[str]) -> None:
    model = model_from_file(EXAMPLE)
    data = model.default_data()
    start = model.init_params(data)
    assert all(not np.any(v) for v in start.values())  # make_problem()'s zeros
    ran = {name: train(make_engine(name, model), data, lr=0.1, iterations=50) for name in ("manual", "autograd")}
    for name, result in ran.items():
        code, out, _ = run(["train", "--file", str(EXAMPLE), "--engine", name, "--iterations", "50", "--json"], capsys)
        assert code == 0
        printed = json.loads(out)
        assert printed["engine"] == name and printed["loss"] == result.loss
        assert printed["params"]["w"] == result.params["w"].tolist()


@pytest.mark.parametrize("engine", ["manual", "autograd"])
def test_train_prints_a_summary_and_writes_the_history(
    engine: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    history = tmp_path / "h.csv"
    argv = ["train", "--file", str(EXAMPLE), "--engine", engine, "--iterations", "20", "--history", str(history)]
    code, out, _ = run(argv, capsys)
    assert code == 0 and f"train_model.py ({engine}, float64 on cpu)" in out and "loss" in out
    with history.open() as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["iteration", "w[0]", "w[1]", "b", "loss"] and len(rows) == 22


def test_compare_plots(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plot = tmp_path / "p.png"
    code, _, _ = run(["compare", "--file", str(EXAMPLE), "--iterations", "30", "--plot", str(plot)], capsys)
    assert code == 0 and plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_file_with_predict_is_a_classifier_with_its_accuracy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, CLASSIFIER)
    code, out, _ = run(["compare", "--file", path], capsys)
    assert code == 0 and "training accuracy" in out and "lr=1" in out
    code, out, _ = run(["compare", "--file", path, "--json"], capsys)
    scores = json.loads(out)["train_accuracy"]
    assert scores["manual"] == scores["autograd"] and 0.5 < scores["manual"] <= 1.0
    code, out, _ = run(["train", "--file", path, "--json"], capsys)
    assert code == 0 and json.loads(out)["train_accuracy"] == scores["manual"]


MORE_DATA = (
    POISSON
    + """

def make_data():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((500, 3))
    return X, rng.poisson(np.exp(X @ np.array([0.3, -0.2, 0.1]) + 0.5)).astype(float)


def init_params(X, Y):
    return {"w": np.zeros(X.shape[1]), "b": np.array(np.log(np.mean(Y)))}
"""
)


def test_make_data_and_init_params_give_the_training_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, MORE_DATA)
    code, out, _ = run(["compare", "--file", path], capsys)
    assert code == 0 and "n=500" in out and "start: init_params(X, Y)" in out
    code, out, _ = run(["train", "--file", path, "--iterations", "1", "--json"], capsys)
    assert len(json.loads(out)["params"]["w"]) == 3
    # and a CSV through --data, of yet another width: init_params(X, Y) starts there too
    rows = "\n".join(f"{i % 3},{i % 5},{i % 4}" for i in range(30))
    (tmp_path / "d.csv").write_text("a,b,y\n" + rows + "\n")
    code, out, err = run(["train", "--file", path, "--data", str(tmp_path / "d.csv"), "--x", "0", "--x", "1",
                          "--y", "2", "--iterations", "5", "--json"], capsys)  # fmt: skip
    assert code == 0, err
    assert len(json.loads(out)["params"]["w"]) == 2


def test_the_files_params_must_fit_other_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "d.csv").write_text("a,y\n" + "\n".join(f"{i},{i % 3}" for i in range(10)) + "\n")
    code, out, err = run(["train", "--file", str(EXAMPLE), "--data", str(tmp_path / "d.csv"), "--x", "0",
                          "--y", "1"], capsys)  # fmt: skip
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "its params fit X of shape (n, 2)" in err and "define init_params(X, Y)" in err


@pytest.mark.parametrize(
    ("source", "command", "message"),
    [
        (GOOD, "compare", "must define manual_loss(params, X, Y) to be trained (compare, train)"),
        (GOOD, "train", "must define manual_loss(params, X, Y) to be trained (compare, train)"),
        (POISSON.replace("LR = 0.1", "LR = -1"), "compare", "line 13: LR must be a positive finite number; got -1"),
        (POISSON.replace("ITERATIONS = 500", "ITERATIONS = 2.5"), "train", "ITERATIONS must be a whole number >= 1"),
        (
            POISSON.replace("    n = X.shape[0]\n", "    n = X.shape[0]\n    assert params['b'] < 0.5, 'too far'\n"),
            "compare",
            "manual_gradients raised AssertionError: too far (line 24)",
        ),
        (POISSON.replace('"b": np.sum(dz)}', '"bias": np.sum(dz)}'), "train", "returned ['bias', 'w'] but params has"),
        (
            POISSON.replace("return np.mean(np.exp(z) - Y * z)", "return np.exp(z) - Y * z"),
            "train",
            "manual_loss must return a number; got shape (200,)",
        ),
        (POISSON + "\ndef make_data():\n    return np.ones((3, 2))\n", "compare", "training needs make_data()'s data"),
        (POISSON.replace('"b": np.sum(dz)}', '"b": "zero"}'), "compare", "manual_gradients()['b'] must be an array of"),
    ],
    ids=[
        "compare-no-manual-loss",
        "train-no-manual-loss",
        "bad-lr",
        "bad-iterations",
        "raises-while-training",
        "other-keys",
        "loss-not-a-number",
        "make-data-not-x-y",
        "gradient-not-numbers",
    ],
)
def test_mistakes_in_a_file_to_train_are_one_line_exit_2(
    source: str, command: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, source)
    code, out, err = run([command, "--file", path, "--iterations", "3"], capsys)
    assert code == 2 and out == "", out
    assert err.startswith(f"gradtwin: {path}") and err.count("\n") == 1 and "Traceback" not in err, err
    assert message in err


def test_a_file_without_manual_loss_still_checks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["check", "--file", _write(tmp_path, GOOD)], capsys)
    assert code == 0 and "all agree" in out


def test_model_and_file_together_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["compare", "--model", "linear", "--file", str(EXAMPLE)], capsys)
    assert code == 2 and "argument --file: not allowed with argument --model" in err


def test_register_adds_a_model_every_command_sees(registry: None, capsys: pytest.CaptureFixture[str]) -> None:
    model = register(model_from_file(EXAMPLE, name="poisson"))
    assert gradtwin.get_model("poisson") is model
    code, out, _ = run(["list"], capsys)
    assert code == 0 and "poisson: Poisson regression" in out and "linear1d:" in out
    code, out, _ = run(["compare", "--model", "poisson", "--iterations", "20"], capsys)
    assert code == 0 and out.startswith("poisson on the data of make_problem()") and "least squares" not in out
    code, out, _ = run(["train", "--model", "poisson", "--iterations", "20", "--engine", "autograd"], capsys)
    assert code == 0 and out.startswith("poisson (autograd")
    code, _, err = run(["check", "--model", "poisson"], capsys)
    assert code == 2 and "check poisson with check --file" in err


def test_register_refuses_a_taken_name_and_what_is_not_a_model(registry: None) -> None:
    builtin = dict(MODELS)
    with pytest.raises(UsageError, match="a model called 'linear' is registered already; give yours another name"):
        register(model_from_file(EXAMPLE, name="linear"))
    register(model_from_file(EXAMPLE, name="poisson"))
    with pytest.raises(UsageError, match="'poisson' is registered already"):
        register(model_from_file(EXAMPLE, name="poisson"))
    with pytest.raises(TypeError, match="register takes a gradtwin Model"):
        register("poisson")  # type: ignore[arg-type]
    assert {k: v for k, v in MODELS.items() if k != "poisson"} == builtin  # the built-in entries untouched


def _section(title: str) -> str:
    start = README.index(title)
    end = README.find("\n### ", start + len(title))
    return README[start:end]


TRAIN_SECTION = _section("### Train your own model")


def _steady(text: str) -> list[str]:
    """The lines that do not depend on the machine: not the times, not the last digits of the differences."""
    return [line for line in text.strip().splitlines() if not line.startswith(("time / iteration", "  w "))]


def test_the_readme_commands_run_and_print_what_it_shows(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    blocks = re.findall(r"```\n(.*?)```", TRAIN_SECTION, re.S)
    commands = [line.split("#")[0].split() for line in blocks[0].splitlines() if line.strip()]
    assert [c[:3] for c in commands] == [["gradtwin", "compare", "--file"], ["gradtwin", "train", "--file"],
                                         ["gradtwin", "check", "--file"]]  # fmt: skip
    printed = []
    for words in commands:
        code, out, err = run(words[1:], capsys)
        assert code == 0 and err == "", err
        printed.append(out)
    assert _steady(printed[0]) == _steady(blocks[1])
    differences = re.search(r"^  w (\S+), b (\S+), loss (\S+)$", printed[0], re.M)
    assert differences is not None and all(float(v) < 1e-12 for v in differences.groups())


def test_the_readme_registers_a_model(registry: None, capsys: pytest.CaptureFixture[str], monkeypatch: Any) -> None:
    monkeypatch.chdir(ROOT)
    (code,) = re.findall(r"```py\n(.*?)```", TRAIN_SECTION, re.S)
    exec(compile(code, "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "poisson: Poisson regression, a model gradtwin does not ship" in out
    assert "poisson on the data of make_problem()" in out and "iterations        100" in out

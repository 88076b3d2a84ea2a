"""`check --file` at many points: make_problem()'s and points around it, and diagnoses that hold at all of them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from gradtwin import check_file
from gradtwin.cli import main
from gradtwin.cli.parser import build_parser
from gradtwin.model_file import perturbed
from gradtwin.parity.report import ParamReport
from gradtwin.parity.userfile import DEFAULT_POINTS, FileReport

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
POISSON = (EXAMPLES / "train_model.py").read_text()
# the classic slip: dL/db written without the exp(z) of dL/dz = exp(z) - Y; at one point b, a scalar, is
# "c times the true one" for some c, whatever the mistake
NO_EXP = POISSON.replace('"b": np.sum(dz)}', '"b": np.mean(X @ params["w"] + params["b"] - Y)}')  # np.mean(z - Y)
README = (EXAMPLES.parent / "README.md").read_text()

LINEAR = """
import numpy as np
import torch


def manual_gradients(params, X, Y):
    r = X @ params["w"] + params["b"] - Y  # (n,)
    return {"w": X.T @ r / len(Y), "b": np.mean(r)}  # half of 2/n: the d/dx x^2 = 2x lost in both


def torch_loss(params, X, Y):
    return torch.mean((X @ params["w"] + params["b"] - Y) ** 2)


def make_problem():
    rng = np.random.default_rng(3)
    return {"w": rng.standard_normal(3), "b": np.array(0.5)}, (rng.standard_normal((40, 3)), rng.standard_normal(40))
"""


def _write(tmp_path: Path, source: str, name: str = "my_model.py") -> str:
    path = tmp_path / name
    path.write_text(source)
    return str(path)


def _b(report: FileReport) -> ParamReport:
    return next(p for p in report.params if p.name == "b")


def test_one_point_names_a_constant_factor_the_points_around_it_refute(tmp_path: Path) -> None:
    path = _write(tmp_path, NO_EXP)
    alone = check_file(path, points=1)
    assert not alone.ok and "a constant factor is wrong" in _b(alone).diagnosis  # what one point can say
    many = check_file(path)
    b = _b(many)
    assert not many.ok and many.points == DEFAULT_POINTS
    assert "constant factor is wrong" not in b.diagnosis and "varies between points" in b.diagnosis
    # the README quotes both, word for word
    said = " ".join(README.split())
    assert "1.36101 times the true one: a constant factor is wrong" in _b(alone).diagnosis
    assert "1.36101 times the true one: a constant factor is wrong" in said
    quoted = "hand / true varies between points, from -4.54774 to 1.5004 over the 5: no constant factor explains it"
    assert quoted in b.diagnosis and quoted in said
    assert '`"b": np.mean(z - Y)`' in said
    assert next(p for p in many.params if p.name == "w").ok  # dL/dw keeps its exp(z)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("points", [2, 3, 8])
def test_no_constant_factor_is_claimed_for_a_missing_exp_at_any_seed(tmp_path: Path, points: int, seed: int) -> None:
    b = _b(check_file(_write(tmp_path, NO_EXP), points=points, seed=seed))
    assert not b.ok and "a constant factor is wrong" not in b.diagnosis, b.diagnosis
    assert "varies between points" in b.diagnosis


@pytest.mark.parametrize("seed", [0, 1, 5])
def test_a_gradient_exactly_half_everywhere_is_still_half(tmp_path: Path, seed: int) -> None:
    report = check_file(_write(tmp_path, LINEAR), points=6, seed=seed)
    assert not report.ok
    for p in report.params:  # w (3,) and b (): half at every point
        assert "half the true one" in p.diagnosis and "(at each of the 6 points)" in p.diagnosis, p.diagnosis


def test_the_examples_keep_their_diagnoses_at_every_point() -> None:
    report = check_file(str(EXAMPLES / "bad_model.py"))
    said = {p.name: p.diagnosis for p in report.params}
    assert "opposite sign" in said["w"] and "n = 50 times" in said["b"]
    assert all(f"at each of the {DEFAULT_POINTS} points" in d for d in said.values())
    assert check_file(str(EXAMPLES / "good_model.py")).ok
    assert check_file(str(EXAMPLES / "train_model.py"), points=10).ok


def test_points_and_seed_change_what_is_checked_and_a_seed_repeats(tmp_path: Path) -> None:
    path = _write(tmp_path, NO_EXP)
    one, again, other = (check_file(path, points=4, seed=s).to_dict() for s in (7, 7, 8))
    assert one == again  # reproducible
    assert one["points"] == 4 and one["seed"] == 7
    assert [p["hand"] for p in one["params"]] != [p["hand"] for p in other["params"]]
    assert one["params"] != check_file(path, points=1, seed=7).to_dict()["params"]
    assert (
        check_file(path, points=1, seed=7).to_dict()["params"] == check_file(path, points=1, seed=8).to_dict()["params"]
    )


def test_the_table_says_how_many_points(tmp_path: Path) -> None:
    path = _write(tmp_path, NO_EXP)
    assert (
        check_file(path, points=3, seed=2)
        .table()
        .splitlines()[0]
        .startswith(
            "gradient check at 3 points (make_problem()'s and 2 drawn around it, seed 2), float64 on cpu: MISMATCH"
        )
    )
    assert check_file(path, points=1).table().startswith("gradient check at make_problem()'s point, float64")
    assert "worst point of each parameter: w at point" in check_file(path, points=3).table()


SAMPLED = LINEAR.replace(
    '/ len(Y), "b": np.mean(r)}', "* 2 / len(Y), \"b\": 2 * np.mean(r) * (1 + (params['b'] > 100))}"
)
SAMPLED += """

def sample_problem(rng):
    params, data = make_problem()
    return {"w": params["w"] + rng.standard_normal(3), "b": np.array(200.0)}, data
"""


def test_sample_problem_gives_the_points_beyond_the_first(tmp_path: Path) -> None:
    """b's gradient is wrong only where b > 100: only the file's own sample_problem goes there."""
    path = _write(tmp_path, SAMPLED)
    assert check_file(path, points=1).ok
    report = check_file(path, points=3)
    b = _b(report)
    assert not b.ok and report.worst_point["b"] in (1, 2) and report.drawn == "from sample_problem(rng)"
    # twice at the two drawn points, right at make_problem()'s: no constant factor
    assert "varies between points, from 1 to 2 over the 3" in b.diagnosis, b.diagnosis


def test_labels_and_counts_are_kept_parameters_and_real_data_move() -> None:
    rng = np.random.default_rng(0)
    labels, counts = np.array([0, 2, 1, 1]), np.array([0.0, 3.0, 1.0])
    real = np.array([[-1.5, 0.0], [2.0, 1e-3]])
    zeros = np.zeros(3)
    got = perturbed({"labels": labels, "counts": counts, "real": real, "tensor": torch.tensor(real)}, rng, True)
    assert got["labels"] is labels and got["counts"] is counts
    assert np.all(np.sign(got["real"][real != 0]) == np.sign(real[real != 0])) and np.all(got["real"] != real)
    assert isinstance(got["tensor"], torch.Tensor) and got["tensor"].dtype == torch.float64
    assert perturbed(np.array([2, 3]), rng, keep_whole=False).dtype == np.float64  # integer parameters move
    moved = perturbed(zeros, rng, keep_whole=False)  # parameters: whole numbers and zeros move too
    assert np.all(moved != 0) and perturbed(np.ones(2), rng, keep_whole=False).tolist() != [1.0, 1.0]


INT_LABELS = """
import numpy as np
import torch


def manual_gradients(params, X, Y):
    Z = X @ params["W"]  # (n, k)
    P = np.exp(Z - Z.max(axis=1, keepdims=True))
    P /= P.sum(axis=1, keepdims=True)
    P[np.arange(len(Y)), Y] -= 1.0
    return {"W": X.T @ P / len(Y)}


def torch_loss(params, X, Y):
    return torch.nn.functional.cross_entropy(X @ params["W"], Y)


def make_problem():
    rng = np.random.default_rng(0)
    return {"W": rng.standard_normal((3, 4))}, (rng.standard_normal((30, 3)), rng.integers(0, 4, 30))
"""


def test_integer_class_labels_stay_labels_at_every_point(tmp_path: Path) -> None:
    report = check_file(_write(tmp_path, INT_LABELS), points=4)
    assert report.ok, report.table()


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_points_and_seed_reach_the_file_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, NO_EXP)
    code, out, _ = run(["check", "--file", path, "--points", "3", "--seed", "4"], capsys)
    assert code == 1 and out.startswith("gradient check at 3 points (make_problem()'s and 2 drawn around it, seed 4)")
    assert "varies between points" in out
    code, out, _ = run(["check", "--file", path], capsys)
    assert out.startswith(f"gradient check at {DEFAULT_POINTS} points")
    code, out, _ = run(["check", "--file", path, "--points", "1"], capsys)
    assert code == 1 and "a constant factor is wrong" in out


def test_help_says_both_defaults() -> None:
    check = build_parser()._subparsers._group_actions[0].choices["check"]  # type: ignore[union-attr]
    text = " ".join(check.format_help().split())
    assert "(default 200, 20 for the models made of layers)" in text and f"(default {DEFAULT_POINTS})" in text
    assert "sample_problem(rng)" in text


FRAGILE = (
    LINEAR.replace(
        "def torch_loss(params, X, Y):\n",
        "def torch_loss(params, X, Y):\n    assert bool(torch.abs(X[0, 0] - START) < 1e-3), 'moved'\n",
    )
    + "\nSTART = float(make_problem()[1][0][0, 0])\n"
)


def test_an_error_at_a_drawn_point_names_the_point(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, FRAGILE)
    code, out, err = run(["check", "--file", path, "--points", "1"], capsys)
    assert code == 1  # make_problem()'s point is checked as before (the file's gradients are half)
    code, out, err = run(["check", "--file", path], capsys)
    assert code == 2 and out == "" and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"gradtwin: {path}: at point 1 of {DEFAULT_POINTS} (drawn around it, seed 0): ")
    assert "torch_loss raised AssertionError: moved (line " in err and "define sample_problem(rng)" in err

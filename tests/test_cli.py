"""The command line: tables, JSON, files, and one line with the right exit code for each error."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import CUDA
from gradtwin.cli import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as e:  # argparse's own errors
        code = int(e.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(err: str, fragment: str) -> None:
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert fragment in err, err


def test_compare_table_on_bundled_data(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "compare")
    assert code == 0 and err == ""
    assert "manual (NumPy)" in out and "autograd (PyTorch)" in out and "least squares" in out
    assert "largest |manual - autograd| over the whole run" in out
    assert "time / iteration" in out


def test_compare_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "compare", "--json", "--iterations", "300")
    assert code == 0
    result = json.loads(out)
    assert set(result) == {"manual", "tape", "autograd", "max_abs_diff", "tape_max_abs_diff", "least_squares"}
    assert set(result["max_abs_diff"]) == set(result["tape_max_abs_diff"]) == {"w", "b", "loss"}
    assert set(result["least_squares"]) == {"w", "b"}
    for twin in ("manual", "tape", "autograd"):
        assert result[twin]["params"]["w"] == pytest.approx(result["least_squares"]["w"], rel=1e-10)
    assert result["max_abs_diff"]["w"] < 1e-12
    assert result["tape_max_abs_diff"]["w"] < 1e-12


def test_compare_shows_three_twins_on_the_cpu_and_two_elsewhere(capsys: pytest.CaptureFixture[str]) -> None:
    """The tape twin computes with NumPy: its column is in a cpu run, and a model without one (a file) has two."""
    code, out, _ = run(capsys, "compare", "--iterations", "20")
    assert code == 0
    header = out.splitlines()[2]
    assert header.split()[:6] == ["manual", "(NumPy)", "tape", "(gradtwin", "autodiff)", "autograd"]
    assert "largest |tape - autograd|" in out
    example = str(Path(__file__).resolve().parents[1] / "examples" / "train_model.py")
    code, out, _ = run(capsys, "compare", "--file", example, "--iterations", "2")  # your own model: two twins
    assert code == 0
    assert "tape" not in out and "autograd (PyTorch)" in out.splitlines()[2]


def test_train_json_keys(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "train", "--engine", "autograd", "--json", "--iterations", "10")
    assert code == 0
    result = json.loads(out)
    expected = {"model", "engine", "device", "dtype", "params", "loss", "iterations", "stop_reason", "seconds"}
    assert expected <= set(result)
    assert set(result["params"]) == {"w", "b"}
    assert (result["engine"], result["iterations"], result["stop_reason"]) == ("autograd", 10, "iterations")


def test_history_csv_and_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    history = tmp_path / "h.csv"
    assert run(capsys, "train", "--iterations", "5", "--history", str(history))[0] == 0
    lines = history.read_text().splitlines()
    assert lines[0] == "iteration,w,b,loss" and len(lines) == 7
    plot = tmp_path / "p.png"
    assert run(capsys, "compare", "--iterations", "20", "--plot", str(plot))[0] == 0
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    code, _, err = run(capsys, "compare", "--iterations", "20", "--plot", str(plot))
    assert code == 2
    assert_one_line_error(err, "exists; pass --force")


def test_csv_data_with_header_and_column_names(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "d.csv"
    f.write_text("a,size,price\n" + "".join(f"0,{x},{2 * x + 1}\n" for x in range(10)))
    code, out, _ = run(
        capsys,
        "train",
        "--data",
        str(f),
        "--x",
        "size",
        "--y",
        "price",
        "--no-standardize",
        "--lr",
        "0.01",
        "--iterations",
        "20000",
        "--json",
    )
    result = json.loads(out)
    assert code == 0
    assert result["params"]["w"] == pytest.approx(2.0, rel=1e-9)
    assert result["params"]["b"] == pytest.approx(1.0, rel=1e-9)


@pytest.mark.parametrize("lr", ["0", "-1", "nan", "inf"])
def test_bad_lr(capsys: pytest.CaptureFixture[str], lr: str) -> None:
    code, _, err = run(capsys, "train", "--lr", lr)
    assert code == 2
    assert_one_line_error(err, f"argument --lr: expected a positive finite number; got '{lr}'")


def test_bad_iterations(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "compare", "--iterations", "0")
    assert code == 2
    assert_one_line_error(err, "argument --iterations: expected a whole number >= 1; got '0'")


def test_unknown_device(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "train", "--device", "tpu")
    assert code == 2
    assert_one_line_error(err, "device must be one of auto, cpu, cuda, cuda:N or mps; got 'tpu'")


@pytest.mark.skipif(CUDA, reason="CUDA exists here")
def test_cuda_without_cuda(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "train", "--device", "cuda")
    assert code == 2
    assert_one_line_error(err, "CUDA is not available")


def test_mps_with_float64(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "train", "--device", "mps", "--dtype", "float64")
    assert code == 2
    assert_one_line_error(err, "no float64 support; use --dtype float32")


def test_data_error_names_file_and_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "bad.csv"
    f.write_text("x,y\n1,2\n3,oops\n")
    code, _, err = run(capsys, "train", "--data", str(f))
    assert code == 1
    assert_one_line_error(err, f"{f}:3: y holds 'oops', not a number")


def test_diverged_run_exits_3(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "train", "--lr", "1.5", "--iterations", "1000", "--json")
    assert code == 3
    assert_one_line_error(err, "the largest stable learning rate for this model and data is 1")
    assert json.loads(out)["stop_reason"] == "diverged"


def test_check_passes_and_prints_rows(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "check", "--points", "30", "--dtype", "float32")
    assert code == 0
    for row in ("manual vs autograd", "manual float32 vs float64", "manual float64 vs finite diff"):
        assert row in out


def test_python_dash_m_and_no_traceback_in_a_real_process() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "gradtwin", "train", "--lr", "-3"], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == "gradtwin train: error: argument --lr: expected a positive finite number; got '-3'"

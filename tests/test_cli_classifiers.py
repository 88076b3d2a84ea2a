"""The command line with the classifiers: list, compare with held-out accuracy, check --model all."""

from __future__ import annotations

import json

import pytest

from gradtwin.cli import main
from gradtwin.models import MODELS


def test_list_names_every_model_with_its_parameters(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in MODELS:
        assert f"{name}: " in out
    assert "W1 (64, 32), b1 (32,), W2 (32, 10), b2 (10,)" in out
    assert "w (30,), b ()" in out and "breast cancer" in out


@pytest.mark.parametrize("name", ["logistic", "softmax", "mlp-relu"])
def test_compare_reports_each_twins_held_out_accuracy(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", "--model", name, "--iterations", "5", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["test_accuracy"]) == {"manual", "tape", "autograd"}
    assert out["test_accuracy"]["manual"] == out["test_accuracy"]["tape"] == out["test_accuracy"]["autograd"]
    assert out["manual"]["lr"] == MODELS[name].default_lr
    assert "least_squares" not in out


def test_compare_table_for_a_classifier(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", "--model", "softmax", "--data", "iris", "--iterations", "50"]) == 0
    out = capsys.readouterr().out
    assert "held-out accuracy" in out and "least squares" not in out and "iris" in out


def test_mlp_width_and_activation_are_options(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["train", "--model", "mlp", "--hidden", "5", "--activation", "sigmoid", "--iterations", "2", "--json"]
    assert main([*args, "--data", "synthetic", "--n", "40"]) == 0
    params = json.loads(capsys.readouterr().out)["params"]
    assert len(params["W1"]) == 4 and len(params["W1"][0]) == 5  # d=4 synthetic features, 5 units


def test_hidden_is_refused_for_a_model_without_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--model", "logistic", "--hidden", "5"]) == 2
    assert "apply to the mlp models" in capsys.readouterr().err


def test_check_all_covers_every_model(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--model", "all", "--points", "1", "--dtype", "float32", "--json"]) == 0
    checked = {c["comparison"].split(":")[0] for c in json.loads(capsys.readouterr().out)}
    assert checked == set(MODELS)


@pytest.mark.parametrize(
    ("name", "data", "message"), [("softmax", "diabetes", "integer class labels"), ("logistic", "iris", "0..1")]
)
def test_classifier_refuses_data_it_cannot_fit(
    name: str, data: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["compare", "--model", name, "--data", data]) == 1
    err = capsys.readouterr().err
    assert err.startswith("gradtwin: ") and message in err and "Traceback" not in err

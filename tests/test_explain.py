"""`gradtwin explain`: every step of each manual twin's backward pass agrees with autograd, and a bug planted
in one step (a copy of the twin's module with one line changed) is pinned to that step and no earlier one."""

from __future__ import annotations

import inspect
import json
import re
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from conftest import DEVICES, DTYPES, MODEL_NAMES
from gradtwin.cli import main
from gradtwin.cli.plots import explain_figure
from gradtwin.errors import UsageError
from gradtwin.models import MODELS, Model, bind, configure
from gradtwin.steps.explain import Explanation, chain_formulas, explain

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()

# model -> (line of the twin's backward, the line with the bug, the step it breaks)
PLANTED = {
    "linear1d": [
        ("dpred = (2.0 / n) * residual  # (n,)", "dpred = 2.0 * residual", "pred"),  # a lost 1/n
        ("dw = xp.sum(dpred * X)  # ()", "dw = xp.sum(dpred)", "w"),  # a dropped X_i
        ("db = xp.sum(dpred)  # ()", "db = xp.mean(dpred)", "b"),  # mean for sum
    ],
    "linear": [
        ("dpred = (2.0 / n) * residual  # (n,)", "dpred = (1.0 / n) * residual", "pred"),  # a lost factor 2
        ("dw = dpred @ X  # (d,)", "dw = -(dpred @ X)", "w"),  # a flipped sign
        ("db = xp.sum(dpred)  # ()", "db = 2.0 * xp.sum(dpred)", "b"),
    ],
    "logistic": [
        ("dz = (s * sigmoid(s * z)) / n  # (n,)", "dz = sigmoid(s * z) / n", "z"),  # a dropped s_i
        ("dw = X.T @ dz  # (d,)", "dw = X.T @ dz / n", "w"),
        ("db = xp.sum(dz)  # ()", "db = xp.sum(dz) + 1.0", "b"),
    ],
    "softmax": [
        (
            "dZ = cross_entropy_gradient(Z, Y, weight)  # (n, k)",
            "dZ = cross_entropy_gradient(Z, Y, weight) * Z.shape[0]",
            "Z",
        ),
        ("dW = X.T @ dZ  # (d, k)", "dW = 0.5 * (X.T @ dZ)", "W"),
        ("db = xp.sum(dZ, axis=0)  # (k,)", "db = xp.mean(dZ, axis=0)", "b"),
    ],
}
MLP = [
    ("dZ2 = cross_entropy_gradient(Z2, Y)  # (n, k)", "dZ2 = cross_entropy_gradient(Z2, Y) * Z2.shape[0]", "Z2"),
    ('dH = dZ2 @ params["W2"].T  # (n, h)', 'dH = dZ2 @ params["W2"]', "H"),  # a missing transpose (h == k)
    ("dZ1 = dH * activation_derivative(Z1, H, activation)  # (n, h)", "dZ1 = dH", "Z1"),  # act' dropped
    ("dW2 = H.T @ dZ2  # (h, k)", "dW2 = H.T @ dZ2 * 2.0", "W2"),
    ("db2 = xp.sum(dZ2, axis=0)  # (k,)", "db2 = xp.sum(dZ2, axis=1)[:10]", "b2"),  # the wrong axis
    ("dW1 = X.T @ dZ1  # (d, h)", "dW1 = X.T @ dH", "W1"),  # the step skipped act'
    ("db1 = xp.sum(dZ1, axis=0)  # (h,)", "db1 = xp.sum(dH, axis=0)", "b1"),
]
for name in ("mlp", "mlp-relu", "mlp-sigmoid"):
    PLANTED[name] = MLP
CASES = [(name, old, new, step) for name, bugs in PLANTED.items() for old, new, step in bugs]
N_DEFAULT = 32


def planted(name: str, old: str, new: str) -> Model:
    """MODELS[name] with a copy of its manual twin's module in which the line `old` reads `new`.

    The mlp's copies have hidden = 10 = k, so that a missing transpose keeps its shape and shows as values.
    """
    model = MODELS[name] if "activation" not in MODELS[name].options else configure(MODELS[name], hidden=10)
    source_module = inspect.getmodule(MODELS[name].manual.backward)
    assert source_module is not None
    source = inspect.getsource(source_module)
    assert source.count(old) == 1, f"the twin no longer has the line {old!r}: update the planted bug"
    copy = ModuleType(f"{source_module.__name__}_planted")
    exec(compile(source.replace(old, f"{new}  # planted; was:"), f"<planted {name}>", "exec"), copy.__dict__)
    manual = bind(copy, **{"activation": model.options["activation"]}) if "activation" in model.options else copy
    return replace(model, manual=manual)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_step_of_every_model_agrees(name: str, dtype: str, device: str) -> None:
    """On a GPU the hand side runs on torch tensors there (no autograd), the referee float64 on the cpu."""
    e = explain(name, dtype=dtype, device=device)
    assert e.device == device
    assert e.ok and e.first_wrong is None, e.table()
    steps = [s.name for s in e.steps]
    keys = list(MODELS[name].manual.backward(*_point(name)))
    assert sorted(steps) == sorted(keys)
    params = set(MODELS[name].param_shapes(MODELS[name].default_data(True)))
    assert all(s not in params for s in steps[: len(steps) - len(params)]), "intermediates first, then parameters"
    assert all(s.formula and s.formula.startswith(f"dL/d{s.name}") for s in e.steps), "each step shows its formula"
    assert e.rows == N_DEFAULT and all(np.isfinite(s.hand_norm) and s.tol > 0 for s in e.steps)


def _point(name: str) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    model = MODELS[name]
    data = model.default_data(True)
    return model.init_params(data, 0), data.X[:5], data.Y[:5]


@pytest.mark.parametrize(("name", "old", "new", "step"), CASES, ids=[f"{c[0]}-{c[3]}" for c in CASES])
def test_a_planted_bug_is_pinned_to_its_step_and_no_earlier_one(name: str, old: str, new: str, step: str) -> None:
    e = explain(planted(name, old, new))
    names = [s.name for s in e.steps]
    wrong = [s.name for s in e.steps if not s.ok]
    assert not e.ok and wrong and wrong[0] == step, e.table()
    assert all(s.ok for s in e.steps[: names.index(step)]), e.table()
    parent = e.parents[step]
    expected = f"dL/d{parent} agrees; dL/d{step} does not" if parent else f"dL/d{step} does not agree"
    assert e.first_wrong is not None and e.first_wrong.startswith(expected), e.first_wrong
    assert e.first_wrong.endswith(f"from {parent or 'the loss'} to {step}")


def test_a_step_comes_from_the_step_its_formula_names() -> None:
    parents = explain("mlp").parents
    assert parents == {"Z2": None, "H": "Z2", "Z1": "H", "W2": "Z2", "b2": "Z2", "W1": "Z1", "b1": "Z1"}


def test_the_chain_block_is_read_line_by_line() -> None:
    doc = """Loss::  L = ...
    Chain::   dL/dZ = (P - onehot(Y)) / n     (the softmax)
              dL/dW = X.T @ dL/dZ ;   dL/db = sum_i dL/dZ_i
    Shapes::  dL/dq = not a step
    """
    assert chain_formulas(doc) == {"Z": "dL/dZ = (P - onehot(Y)) / n", "W": "dL/dW = X.T @ dL/dZ",
                                   "b": "dL/db = sum_i dL/dZ_i"}  # fmt: skip


def test_explain_exits_0_when_every_step_agrees_and_1_when_one_does_not(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["explain", "--model", "softmax"]) == 0
    assert "every step agrees (3 steps)" in capsys.readouterr().out
    bad = planted("mlp", *MLP[2][:2])
    monkeypatch.setattr("gradtwin.cli.commands.get_model", lambda name: bad)
    assert main(["explain", "--model", "mlp"]) == 1
    out = capsys.readouterr().out
    assert "dL/dH agrees; dL/dZ1 does not: the mistake is in the step from H to Z1" in out
    assert re.search(r"^dL/dZ1 .* NO$", out, re.M) and re.search(r"^dL/dH .* yes$", out, re.M)


def test_explain_json_gives_the_same_as_data(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain", "--model", "mlp-relu", "--json", "--dtype", "float32", "--seed", "3", "--rows", "8"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {"model", "data", "rows", "of", "seed", "dtype", "device", "ok", "first_wrong", "steps"} <= set(data)
    assert (data["model"], data["rows"], data["seed"], data["dtype"], data["ok"]) == ("mlp-relu", 8, 3, "float32", True)
    assert [s["name"] for s in data["steps"]] == ["Z2", "H", "Z1", "W2", "b2", "W1", "b1"]
    for s in data["steps"]:
        assert {"formula", "shape", "hand_norm", "hand_max", "autograd_norm", "autograd_max", "abs_err", "tol", "ok",
                "parent"} <= set(s)  # fmt: skip
    assert data["steps"][0]["shape"] == [8, 10]


def test_the_plot_draws_a_box_per_step_and_the_wrong_one_red() -> None:
    e = explain(planted("mlp-sigmoid", *MLP[1][:2]))
    fig = explain_figure(e)
    boxes = {p.get_gid(): p for p in fig.axes[0].patches if p.get_gid()}
    assert set(boxes) == {"loss", *(f"step:{s.name}" for s in e.steps)}
    for s in e.steps:
        r, g, _, _ = boxes[f"step:{s.name}"].get_facecolor()
        assert (r > g) == (not s.ok), s.name
    first = next(s.name for s in e.steps if not s.ok)
    assert first == "H" and boxes["step:H"].get_linewidth() > boxes["step:Z2"].get_linewidth()


@pytest.mark.parametrize("suffix", [".png", ".svg"])
def test_the_plot_is_written_and_named(tmp_path: Path, capsys: pytest.CaptureFixture[str], suffix: str) -> None:
    path = tmp_path / f"steps{suffix}"
    assert main(["explain", "--model", "linear", "--plot", str(path)]) == 0
    assert path.stat().st_size > 0
    assert f"gradtwin: wrote plot to {str(path)!r}" in capsys.readouterr().err
    assert main(["explain", "--model", "linear", "--plot", str(path)]) == 2  # exists, no --force
    assert main(["explain", "--model", "linear", "--plot", str(tmp_path / "steps.pdf")]) == 2
    assert "--plot must name a .png or .svg file" in capsys.readouterr().err


def test_a_model_without_a_backward_is_refused() -> None:
    bare = ModuleType("bare")
    with pytest.raises(UsageError, match="backward"):
        explain(replace(MODELS["linear"], manual=bare))


def test_the_readme_shows_what_explain_prints(capsys: pytest.CaptureFixture[str]) -> None:
    """The README's explain command, run as written: the same lines, apart from the numbers."""
    section = README[README.index("### Step by step: `gradtwin explain`") :]
    shown = re.search(r"```\n\$ (gradtwin explain[^\n]*)\n(.*?)```", section, re.S)
    assert shown is not None
    words = shown.group(1).split()[1:]
    code = main(words)
    printed = capsys.readouterr().out

    def steady(text: str) -> list[str]:
        return [re.sub(r"\d[\d.e+-]*", "#", " ".join(line.split())) for line in text.strip().splitlines()]

    assert code == 0 and steady(printed) == steady(shown.group(2))


def test_an_explanation_is_its_table() -> None:
    e = explain("logistic", rows=5)
    assert isinstance(e, Explanation) and str(e) == e.table() and e.rows == 5
    assert e.table().splitlines()[-1] == "every step agrees (3 steps)"


def test_off_the_cpu_the_hand_side_runs_on_torch_tensors_there() -> None:
    """The path a GPU takes, on the 'meta' device: tensors of the dtype there, labels int64, every step's shape."""
    import torch

    from gradtwin.steps.explain import _hand_in

    model = MODELS["mlp"]
    params, X, Y = _point("mlp")
    out = _hand_in(model.manual.backward, params, X, Y, "float32", torch.device("meta"))
    want = {k: np.shape(v) for k, v in model.manual.backward(params, X, Y).items()}
    assert {k: tuple(v.shape) for k, v in out.items()} == want
    assert all(v.device.type == "meta" and v.dtype == torch.float32 for v in out.values())


def test_explain_on_the_tape_prints_its_graph_beside_the_hand_steps(capsys: pytest.CaptureFixture[str]) -> None:
    """`explain --engine tape` (the README's command): the tape twin's steps held to autograd's, then its recorded
    graph from the loss back, each tapped node next to the hand step of its name."""
    assert main(["explain", "--model", "mlp", "--engine", "tape"]) == 0
    out = capsys.readouterr().out
    assert "hand = gradtwin's own autodiff (tape)" in out.splitlines()[0]
    graph = out[out.index("the tape's graph of mlp") :].splitlines()
    assert graph[1].split()[:3] == ["node", "op", "shape"]
    assert graph[3].split()[:3] == ["#0", "mean", "()"]  # the loss first
    named = {line.split("dL/d")[1].split(":")[0] for line in graph if "dL/d" in line}
    assert named == {"Z2", "H", "Z1", "W1", "b1", "W2", "b2"}
    assert all(line.endswith("agrees") for line in graph if "dL/d" in line)


def test_explain_on_the_tape_catches_a_wrong_tape_twin(monkeypatch: pytest.MonkeyPatch) -> None:
    """An engine whose tanh passes back half its gradient is pinned to dL/dZ1 (the step from H): it can fail."""
    from gradtwin.autodiff import ops

    real = ops.tanh

    def half_tanh(a: Any) -> Any:
        out = real(a)
        back = out._backward
        out._backward = lambda g: back(0.5 * g)
        return out

    monkeypatch.setattr(ops, "tanh", half_tanh)
    explanation = explain("mlp", engine="tape")
    assert not explanation.ok
    assert next(s.name for s in explanation.steps if not s.ok) == "Z1"

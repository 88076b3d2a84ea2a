"""The step-by-step view: taps, each intermediate's dL/dT against autograd, the first wrong step."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import gradtwin
from gradtwin.errors import UsageError
from gradtwin.parity.rounding import ROUNDING_OPS, rounding_bound
from gradtwin.steps import check_steps, compare_steps, recording, tap
from gradtwin.steps.compare import autograd_steps, exact_scales, graph_leaves, run_tapped

TAPS = ["Z", "H", "pred"]  # forward order; graph order is its reverse


def _problem(seed: int, n: int = 12, d: int = 3, h: int = 4) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X, Y = rng.normal(size=(n, d)), rng.normal(size=n)
    P = {"W1": rng.normal(size=(d, h)), "b1": rng.normal(size=h), "W2": rng.normal(size=h), "b2": np.array(0.3)}
    return P, X, Y


def torch_loss(p: dict[str, torch.Tensor], X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    Z = tap("Z", X @ p["W1"] + p["b1"])  # (n, h)
    H = tap("H", torch.tanh(Z))  # (n, h)
    pred = tap("pred", H @ p["W2"] + p["b2"])  # (n,)
    return ((pred - Y) ** 2).mean()


def hand(p: dict[str, Any], X: Any, Y: Any, bug: str | None = None) -> dict[str, Any]:
    """The MLP's backward pass, one intermediate per line; `bug` plants a mistake in one step."""
    Z = X @ p["W1"] + p["b1"]  # (n, h)
    H = np.tanh(Z)  # (n, h)
    pred = H @ p["W2"] + p["b2"]  # (n,)
    dpred = 2 * (pred - Y) / len(Y)  # (n,)
    if bug == "pred":
        dpred = dpred * len(Y)  # a lost 1/n
    dH = np.outer(dpred, p["W2"])  # (n, h)
    if bug == "H":
        dH = -dH
    dZ = dH * (1 - H**2) if bug != "Z" else dH  # a dropped derivative of tanh
    dW1 = X.T @ dZ if bug != "W1" else 2 * X.T @ dZ
    return {"pred": dpred, "H": dH, "Z": dZ, "W2": H.T @ dpred, "b2": dpred.sum(), "W1": dW1, "b1": dZ.sum(0)}


def _check(problem: int, dtype: str = "float64", bug: str | None = None, **kw: Any) -> Any:
    P, X, Y = _problem(problem, **kw.pop("size", {}))
    cast = {k: v.astype(dtype) for k, v in P.items()}
    h = hand(cast, X.astype(dtype), Y.astype(dtype), bug)
    return check_steps(h, hand(P, X, Y, bug), torch_loss, P, (X, Y), dtype=dtype, **kw)


def test_tap_outside_recording_is_the_identity() -> None:
    x = torch.ones(3, requires_grad=True) * 2
    assert tap("x", x) is x and x.grad_fn is not None and type(x.grad_fn).__name__ == "MulBackward0"
    assert gradtwin.tap is tap and gradtwin.recording is recording
    assert tap("y", torch.zeros(2)).shape == (2,)  # outside recording nothing is checked


def test_recording_keeps_the_tapped_tensors_in_forward_order() -> None:
    P, X, Y = _problem(0)
    tape, _, _ = run_tapped(torch_loss, P, (X, Y), "float64", torch.device("cpu"))
    assert tape.names() == TAPS and "H" in tape and "W1" not in tape and len(tape) == 3
    assert tape["H"].shape == (12, 4) and [t.shape for t in tape.tensors] == [(12, 4), (12, 4), (12,)]
    with recording() as outer:
        tap("a", torch.ones(1, requires_grad=True))
        with recording() as inner:
            tap("a", torch.ones(1, requires_grad=True))  # the innermost tape records: no clash with outer's
        assert outer.names() == ["a"] and inner.names() == ["a"]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_a_correct_derivation_agrees_at_many_random_problems(dtype: str) -> None:
    for seed in range(25):
        size = {"n": 3 + seed % 7 * 9, "d": 1 + seed % 4, "h": 2 + seed % 5}
        report = _check(seed, dtype, size=size)
        assert report.ok, report.table()
        assert [s.name for s in report.steps] == TAPS[::-1] and report.first_wrong is None
        assert report.after == {"W1": "Z", "b1": "Z", "W2": "pred", "b2": "pred"}


def test_the_sketched_scale_agrees_on_a_correct_derivation_and_catches_a_bug() -> None:
    for seed in range(5):
        assert _check(seed, "float32", sketch=True, seed=seed).ok
    assert not _check(0, "float32", bug="H", sketch=True).ok


@pytest.mark.parametrize(
    ("bug", "sentence"),
    [
        ("pred", "dL/dpred does not agree: the mistake is in the step from the loss to pred"),
        ("H", "dL/dpred agrees; dL/dH does not: the mistake is in the step from pred to H"),
        ("Z", "dL/dH agrees; dL/dZ does not: the mistake is in the step from H to Z"),
    ],
)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_a_planted_bug_is_pinned_to_its_step_and_no_earlier_one(bug: str, sentence: str, dtype: str) -> None:
    report = _check(1, dtype, bug=bug)
    assert not report.ok and report.first_wrong == sentence
    wrong = [s.name for s in report.steps if not s.ok]
    assert wrong[0] == bug, report.table()
    assert sentence in report.table()


def test_the_diagnosis_of_a_wrong_step_names_its_pattern() -> None:
    steps = {s.name: s for s in _check(2, bug="H").steps}
    assert "opposite sign" in (steps["H"].diagnosis or "")
    steps = {s.name: s for s in _check(2, bug="pred").steps}
    assert "n = 12 times" in (steps["pred"].diagnosis or "")


def _white_box(seed: int) -> tuple[Any, ...]:
    """The documented tolerance of hand vs autograd in float64, 2 gamma(K) S, element by element."""
    P, X, Y = _problem(seed)
    tape, loss, _ = run_tapped(torch_loss, P, (X, Y), "float64", torch.device("cpu"), data_grad=True)
    g = autograd_steps(loss, tape)
    S = exact_scales(loss, tape, graph_leaves(loss), g)
    K = X.size + Y.size + sum(v.size for v in P.values())
    gamma = rounding_bound("float64", K + ROUNDING_OPS, outputs=sum(v.size for v in g.values()) + 1).gamma
    return P, X, Y, g, S, K, gamma


@pytest.mark.parametrize("name", TAPS)
def test_the_tolerance_sits_where_documented_and_is_tight(name: str) -> None:
    """An error a few ulps times K beyond 2 gamma(K) S is caught at its element; half of the bound passes;
    and the bound is within a small factor of K u |dL/dT| (a sketch's 30-fold slack would fail here)."""
    for seed in range(5):
        P, X, Y, g, S, K, gamma = _white_box(seed)
        j = np.unravel_index(int(np.argmax(np.abs(g[name]))), g[name].shape)
        u = float(np.finfo(np.float64).eps) / 2
        tol_j = 2 * gamma * S[name][j]
        assert tol_j <= 60 * K * u * abs(g[name][j]), (tol_j, K * u * abs(g[name][j]))
        for extra, caught in ((tol_j + 4 * K * u * abs(g[name][j]), True), (0.5 * tol_j, False)):
            h = hand(P, X, Y)
            h[name] = h[name].copy()
            h[name][j] += extra
            report = check_steps(h, None, torch_loss, P, (X, Y))
            step = next(s for s in report.steps if s.name == name)
            assert step.ok is not caught, (seed, extra, step)
            if caught:
                assert step.worst_index == tuple(int(i) for i in j)


def test_a_relative_error_far_below_float32_is_caught_in_float64() -> None:
    P, X, Y = _problem(3)
    h = hand(P, X, Y)
    h["Z"] = h["Z"] * (1 + 1e-11)
    assert not check_steps(h, None, torch_loss, P, (X, Y)).ok


def test_intermediates_the_hand_side_does_not_give_are_listed_not_failed() -> None:
    P, X, Y = _problem(0)
    h = {k: v for k, v in hand(P, X, Y).items() if k != "H"}
    report = check_steps(h, None, torch_loss, P, (X, Y))
    assert report.ok and report.untapped == ["H"] and [s.name for s in report.steps] == ["pred", "Z"]
    assert "tapped but not given by the hand side (not checked): H" in report.table()


def test_compare_steps_on_a_users_own_run() -> None:
    """compare_steps alone: the scale from the graph's leaves, the float64 run its own referee."""
    P, X, Y = _problem(4)
    p = {k: torch.tensor(v, requires_grad=True) for k, v in P.items()}
    with recording() as tape:
        loss = torch_loss(p, torch.tensor(X, requires_grad=True), torch.tensor(Y))
    report = compare_steps(hand(P, X, Y), tape, loss, params=P, formulas={"Z": "dH * (1 - H**2)"})
    assert report.ok and report.dtype == "float64" and report.steps[-1].formula == "dH * (1 - H**2)"
    assert "dL/dZ = dH * (1 - H**2)" in report.table()
    data = report.to_dict()
    assert [s["name"] for s in data["steps"]] == ["pred", "H", "Z"] and data["first_wrong"] is None
    bad = hand(P, X, Y, bug="Z")
    with recording() as tape:
        loss = torch_loss(p, torch.tensor(X), torch.tensor(Y))
    assert compare_steps(bad, tape, loss, params=P).first_wrong.endswith("the step from H to Z")  # type: ignore[union-attr]


def test_bad_input_is_one_line_naming_it() -> None:
    P, X, Y = _problem(0)
    with pytest.raises(UsageError, match=r"^gradtwin.tap: the name 'Z' is tapped twice"), recording():
        tap("Z", torch.ones(1, requires_grad=True))
        tap("Z", torch.ones(1, requires_grad=True))
    with pytest.raises(UsageError, match=r"^gradtwin.tap\('X', \.\.\.\): the tensor does not require grad"):
        with recording():
            tap("X", torch.ones(2))

    def detached(p: dict[str, torch.Tensor], X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
        Z = X @ p["W1"] + p["b1"]
        tap("Z", Z.clone())  # a copy tapped: the loss does not use it
        return ((torch.tanh(Z) @ p["W2"] + p["b2"] - Y) ** 2).mean()

    with pytest.raises(UsageError, match=r"^gradtwin.tap\('Z', \.\.\.\): the tapped tensor is not on the loss's graph"):
        check_steps({"Z": np.zeros((12, 4))}, None, detached, P, (X, Y))
    h = hand(P, X, Y)
    with pytest.raises(UsageError, match=r"^hand\['H'\] must have the shape of the tapped tensor 'H', \(12, 4\); got"):
        check_steps({**h, "H": h["H"].T}, None, torch_loss, P, (X, Y))
    with pytest.raises(UsageError, match=r"^hand\['dZ'\] is neither a parameter nor a tensor the torch loss taps"):
        check_steps({**h, "dZ": h["Z"]}, None, torch_loss, P, (X, Y))
    for message in (str(e) for e in _messages(P, X, Y)):
        assert "\n" not in message


def _messages(P: dict[str, np.ndarray], X: np.ndarray, Y: np.ndarray) -> list[UsageError]:
    out = []
    h = hand(P, X, Y)
    for bad in ({**h, "H": h["H"][:, :1]}, {**h, "nope": 1.0}):
        try:
            check_steps(bad, None, torch_loss, P, (X, Y))
        except UsageError as e:
            out.append(e)
    assert len(out) == 2
    return out


README = (Path(__file__).resolve().parents[1] / "README.md").read_text()
_NUMBER = re.compile(r"-?\d+(\.\d+)?(e[-+]?\d+)?")


def _section(title: str) -> str:
    start = README.index(title)
    return README[start : README.index("\n### ", start + len(title))]


def test_the_readme_planted_bug_prints_what_the_readme_shows() -> None:
    """The README's intermediates example with `1 - Z**2` for `1 - H**2`: every line it shows is printed, in order,
    the same words and layout (numbers may differ in their last digits)."""
    section = _section("### Intermediates: the first wrong step")
    code = re.search(r"```python\n(.*?)```", section, re.S)
    shown = re.search(r"the same check prints \(the notes left out\):\n\n```\n(.*?)```", section, re.S)
    assert code is not None and shown is not None
    right = "    dZ = dH * (1 - H**2)"
    assert right in code.group(1)
    planted = code.group(1).replace(right, "    dZ = dH * (1 - Z**2)").replace("print(report)", "pass")
    namespace: dict[str, Any] = {}
    exec(compile(planted, "README.md", "exec"), namespace)
    report = namespace["report"]
    assert not report.ok and report.steps.first_wrong.endswith("the step from H to Z")
    printed = [_NUMBER.sub("#", line).rstrip() for line in report.table().splitlines()]
    for line in shown.group(1).strip().splitlines():
        masked = _NUMBER.sub("#", line).rstrip()
        # the columns may shift by a digit: compare the words, not the padding
        assert any(masked.split() == p.split() for p in printed), f"the README shows {line!r}; not printed"
    assert printed.index(_NUMBER.sub("#", shown.group(1).strip().splitlines()[-1])) > 0


FILE = """
import numpy as np, torch, gradtwin

def manual_gradients(p, X, Y):
    Z = X @ p["W1"] + p["b1"]                       # (n, h)
    H = np.tanh(Z)                                  # (n, h)
    dpred = 2 / len(Y) * (H @ p["W2"] - Y)          # (n,)
    dH = np.outer(dpred, p["W2"])                   # (n, h)
    dZ = dH * (1 - H**2)                            # (n, h)
    return {"W1": X.T @ dZ, "b1": dZ.sum(0), "W2": H.T @ dpred, "H": dH, "Z": dZ}

def torch_loss(p, X, Y):
    Z = gradtwin.tap("Z", X @ p["W1"] + p["b1"])
    H = gradtwin.tap("H", torch.tanh(Z))
    pred = gradtwin.tap("pred", H @ p["W2"])
    return torch.mean((pred - Y) ** 2)

def make_problem():
    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((10, 3)), rng.standard_normal(10)
    return {"W1": rng.standard_normal((3, 4)), "b1": np.zeros(4), "W2": rng.standard_normal(4)}, (X, Y)
"""


def _run_file(source: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    from gradtwin.cli import main

    path = tmp_path / "mlp.py"
    path.write_text(source)
    code = main(["check", "--file", str(path), "--points", "2", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_check_file_compares_the_files_intermediates(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run_file(FILE, tmp_path, capsys, "--json")
    assert code == 0, out + err
    steps = json.loads(out)["steps"]
    assert [s["name"] for s in steps["steps"]] == ["H", "Z"] and steps["untapped"] == ["pred"] and steps["ok"]
    code, out, _ = _run_file(FILE.replace("(1 - H**2)", "(1 - Z**2)"), tmp_path, capsys)
    assert code == 1 and "dL/dH agrees; dL/dZ does not: the mistake is in the step from H to Z" in out
    assert "steps from the loss back: MISMATCH" in out


def test_training_ignores_the_intermediates_of_a_file(tmp_path: Path) -> None:
    """A file's model trains: its gradients keep the parameters' keys, the taps are the identity outside a check."""
    from gradtwin.model_file import load, problem

    path = tmp_path / "mlp.py"
    path.write_text(
        FILE + "\ndef manual_loss(p, X, Y):\n    return np.mean((np.tanh(X @ p['W1'] + p['b1']) @ p['W2'] - Y) ** 2)\n"
    )
    model = gradtwin.model_from_file(str(path))
    p, (X, Y) = problem(load(str(path)), str(path))
    assert set(model.manual.gradients(p, X, Y)) == {"W1", "b1", "W2"}
    leaves = {k: torch.tensor(v) for k, v in p.items()}
    assert float(model.autograd.loss(leaves, torch.tensor(X), torch.tensor(Y))) == pytest.approx(
        float(model.manual.loss(p, X, Y))
    )


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (('pred = gradtwin.tap("pred"', 'pred = gradtwin.tap("H"'), "gradtwin.tap: the name 'H' is tapped twice"),
        (('"H": dH,', '"H": dH.T,'), "must have the shape of the tapped tensor 'H', (10, 4); got (4, 10)"),
        (('"H": dH,', '"dH": dH,'), "manual_gradients()['dH'] is neither a parameter nor a tensor the torch loss"),
    ],
)
def test_check_file_bad_taps_are_one_line_exit_2(
    change: tuple[str, str], says: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert change[0] in FILE
    code, out, err = _run_file(FILE.replace(*change), tmp_path, capsys)
    assert code == 2 and out == "" and says in err and len(err.strip().splitlines()) == 1, err


def test_compare_steps_in_float32_without_a_reference_says_so() -> None:
    P, X, Y = _problem(5)
    p = {k: torch.tensor(v, dtype=torch.float32, requires_grad=True) for k, v in P.items()}
    with recording() as tape:
        loss = torch_loss(p, torch.tensor(X, dtype=torch.float32), torch.tensor(Y, dtype=torch.float32))
    cast = {k: v.astype(np.float32) for k, v in P.items()}
    report = compare_steps(hand(cast, X.astype(np.float32), Y.astype(np.float32)), tape, loss, params=P)
    assert report.ok and report.dtype == "float32"
    assert all([c.comparison for c in s.checks] == ["hand vs autograd"] for s in report.steps)
    assert any("no float64 run given" in n for n in report.notes)


def test_intermediates_without_any_tap_are_refused_with_the_way_to_tap_them() -> None:
    P, X, Y = _problem(0)

    def plain(p: dict[str, torch.Tensor], X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
        return ((torch.tanh(X @ p["W1"] + p["b1"]) @ p["W2"] + p["b2"] - Y) ** 2).mean()

    with pytest.raises(UsageError, match=r"unexpected \['H', 'Z', 'pred'\] \(the gradient of an intermediate needs "):
        gradtwin.check_gradients(hand, plain, P, (X, Y))


def test_a_check_without_taps_has_no_steps() -> None:
    P, X, Y = _problem(0)
    no_taps = {k: v for k, v in hand(P, X, Y).items() if k in P}

    def plain(p: dict[str, torch.Tensor], X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
        return ((torch.tanh(X @ p["W1"] + p["b1"]) @ p["W2"] + p["b2"] - Y) ** 2).mean()

    report = gradtwin.check_gradients(lambda p, X, Y: no_taps, plain, P, (X, Y))
    assert report.ok and report.steps is None and "steps from the loss back" not in report.table()
    tapped = gradtwin.check_gradients(lambda p, X, Y: no_taps, torch_loss, P, (X, Y))
    assert tapped.ok and tapped.steps is not None and tapped.steps.untapped == TAPS[::-1] and not tapped.steps.steps


def test_only_the_first_wrong_step_is_detailed_and_the_later_ones_named() -> None:
    report = _check(1, "float64", bug="pred")
    wrong = [s.name for s in report.steps if not s.ok]
    assert len(wrong) > 1, report.table()  # the later steps inherit the first one's error
    text = report.table()
    assert text.count("elements of dL/d") == 1 and f"elements of dL/d{wrong[0]} disagree" in text
    later = [line for line in text.splitlines() if line.startswith("later steps that disagree")]
    assert later == [later[0]] and later[0].endswith(": " + ", ".join(f"dL/d{n}" for n in wrong[1:])), text

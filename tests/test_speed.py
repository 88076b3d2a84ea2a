"""What keeps the engines fast, held structurally (never by a time): the autograd twins' graph sizes, what the
loop keeps per step, and the hint that names the exact engine for many iterations of a linear model."""

from __future__ import annotations

import weakref

import numpy as np
import pytest
import torch

from gradtwin.cli import main
from gradtwin.data.dataset import Dataset
from gradtwin.models import MODELS
from gradtwin.training.factory import make_engine
from gradtwin.training.loop import _Recorder, train

# graph nodes of each twin's loss (AccumulateGrad leaves not counted), from fused torch functions:
# linear mse_loss(addmv); logistic mean(softplus(+-1 * addmv)); softmax cross_entropy(addmm) is
# log_softmax + nll_loss; mlp the same over addmm -> tanh -> addmm
NODES = {"linear": 2, "logistic": 4, "softmax": 3, "mlp": 5}


def _nodes(loss: torch.Tensor) -> list[str]:
    seen, stack, names = set(), [loss.grad_fn], []
    while stack:
        fn = stack.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        if type(fn).__name__ != "AccumulateGrad":
            names.append(type(fn).__name__)
        stack.extend(f for f, _ in fn.next_functions)
    return names


@pytest.mark.parametrize("name", list(NODES))
def test_autograd_losses_are_few_graph_nodes(name: str) -> None:
    model = MODELS[name]
    data = model.random_data(np.random.default_rng(0))
    engine = make_engine("autograd", model)
    params = {k: p.requires_grad_(True) for k, p in engine.params(model.init_params(data, seed=0)).items()}
    X, Y = engine.asarray(data.X), engine.asarray(data.Y)
    nodes = _nodes(model.autograd.loss(params, X, Y))
    assert len(nodes) <= NODES[name], nodes


@pytest.mark.parametrize("name", ["softmax", "mlp"])
def test_narrow_right_factors_are_column_major_and_autograd_keeps_their_layout(name: str) -> None:
    """On the cpu a right factor W (a, b) with b < a is laid out column-major, with its values unchanged, and
    autograd returns dL/dW in that layout: it formed (G.T @ A).T, the fast product. Wider ones stay row-major."""
    model = MODELS[name]
    rng = np.random.default_rng(3)
    data = Dataset(rng.standard_normal((40, 6)), np.arange(40) % 3, name="six features, three classes", y_name="class")
    start = {k: rng.standard_normal(v.shape) for k, v in model.init_params(data, seed=0).items()}
    engine = make_engine("autograd", model)
    params = engine.params(start)
    X, Y = engine.asarray(data.X), engine.asarray(data.Y)
    narrow = [k for k in model.right_factors if start[k].shape[1] < start[k].shape[0]]
    assert narrow == (["W"] if name == "softmax" else ["W2"])  # the mlp's W1 (6, 32) is wide
    for k, p in params.items():
        assert np.array_equal(p.numpy(), start[k])
        column_major = k in narrow
        assert p.is_contiguous() != column_major, (k, p.stride())
        if column_major:
            assert p.stride() == (1, p.shape[0])
    _, grads = engine.bind(params, X, Y).loss_and_gradients()
    for k in narrow:
        assert grads[k].stride() == (1, grads[k].shape[0]), (k, grads[k].stride())
    wide = model.autograd.gradients({k: torch.from_numpy(v) for k, v in start.items()}, X, Y)
    for k in narrow:
        assert wide[k].is_contiguous()  # the same gradient from a row-major W: the layout is the engine's choice


def test_an_mlp_with_a_narrow_first_layer_lays_both_weights_column_major() -> None:
    """W1 (d, h) with h < d and W2 (h, k) with k < h: both are column-major."""
    model = MODELS["mlp"]
    rng = np.random.default_rng(5)
    start = {"W1": rng.standard_normal((8, 3)), "b1": np.zeros(3), "W2": rng.standard_normal((3, 2)), "b2": np.zeros(2)}
    params = make_engine("autograd", model).params(start)
    assert [k for k, p in params.items() if not p.is_contiguous()] == ["W1", "W2"]


class _Watched:
    """An engine's bound gradients that note, at every call, how many loss tensors they handed out are still alive."""

    def __init__(self, bound: object) -> None:
        self.bound, self.given, self.alive = bound, [], []

    def loss_and_gradients(self) -> tuple[object, object]:
        self.alive.append(sum(ref() is not None for ref in self.given))
        value, grads = self.bound.loss_and_gradients()  # type: ignore[attr-defined]
        self.given.append(weakref.ref(value))
        return value, grads

    def loss(self) -> object:
        return self.bound.loss()  # type: ignore[attr-defined]


@pytest.mark.parametrize("record_every", [1, 100])
def test_a_cpu_torch_run_keeps_no_tensor_per_step(record_every: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Between checks the loop keeps each step's loss as a float and each recorded row in NumPy arrays: on the cpu a
    tensor kept per step leaves small blocks among the step's temporaries, and glibc then returns and refetches
    their memory every step. The losses and the history are the same as a run that checks every step."""
    model = MODELS["logistic"]
    data = model.random_data(np.random.default_rng(0))
    engine = make_engine("autograd", model)
    watched: list[_Watched] = []
    bind = engine.bind
    monkeypatch.setattr(engine, "bind", lambda *a: watched.append(_Watched(bind(*a))) or watched[-1])
    run = train(engine, data, lr=0.1, iterations=20, record_every=record_every)
    (w,) = watched
    assert max(w.alive) <= 1, w.alive  # at most the last step's, still named while the next one runs: none kept
    assert _Recorder(3, engine.params(model.init_params(data, seed=0))).on_host  # rows go into NumPy arrays
    checked = train(make_engine("autograd", model), data, 0.1, 20, record_every=record_every, check_every=1)
    assert np.array_equal(run.history.loss, checked.history.loss)
    for k, v in checked.history.params.items():
        assert np.array_equal(run.history.params[k], v), k


def test_parameters_off_the_cpu_are_recorded_on_their_device() -> None:
    """Off the cpu (the meta device stands in for an accelerator) rows are clones kept on the device: no host copy."""
    params = {"w": torch.zeros(4, device="meta"), "b": torch.zeros((), device="meta")}
    recorder = _Recorder(3, params)
    recorder.record(0, params)
    assert not recorder.on_host and not recorder.host
    assert [v[0].device.type for v in recorder.device.values()] == ["meta", "meta"]


def test_the_logistic_autograd_loss_leaves_float_labels_as_they_were() -> None:
    """s = 1 - 2Y is formed in place in a copy of Y: float labels in the twin's own dtype are not overwritten."""
    model = MODELS["logistic"]
    data = model.random_data(np.random.default_rng(1))
    engine = make_engine("autograd", model)
    params = engine.params(model.init_params(data, seed=0))
    Y = torch.as_tensor(data.Y, dtype=torch.float64)
    before = Y.clone()
    model.autograd.loss(params, engine.asarray(data.X), Y)
    assert torch.equal(Y, before)


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main(list(argv)) == 0
    return capsys.readouterr().out


HINT = "faster: `gradtwin train --engine exact` computes these"


@pytest.mark.parametrize("command", ["compare", "train"])
def test_many_iterations_of_a_linear_model_name_the_exact_engine(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = _cli(capsys, command, "--model", "linear1d", "--iterations", "10000")
    assert f"{HINT} 10,000 iterations of linear1d in closed form" in out
    assert HINT not in _cli(capsys, command, "--model", "linear1d", "--iterations", "9999")


def test_no_hint_where_the_exact_engine_runs_or_does_not_apply(capsys: pytest.CaptureFixture[str]) -> None:
    assert HINT not in _cli(capsys, "train", "--model", "linear", "--engine", "exact", "--iterations", "20000")
    assert HINT not in _cli(capsys, "train", "--model", "logistic", "--iterations", "10000", "--lr", "0.1")

"""What keeps the engines fast, held structurally (never by a time): the autograd twins' graph sizes, and
the hint that names the exact engine for many iterations of a linear model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gradtwin.cli import main
from gradtwin.models import MODELS
from gradtwin.training.factory import make_engine

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

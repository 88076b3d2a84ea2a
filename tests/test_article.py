"""The article's own code, bug by bug: each of its five bugs is caught, the fixed model passes.

ARTICLE is the article's code as printed (indentation restored). Each test fixes the bugs
found so far and shows how the next one is caught: by Python itself for the first three,
by gradtwin's parity check for the two that run silently and give wrong numbers.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from conftest import caught, plant
from gradtwin.data import Dataset
from gradtwin.models import get_model
from gradtwin.training import make_engine, train

ARTICLE = """
import numpy as np
def predict(X, w, b):
    return X * w + b
def mse(X, Y, w, b):
    return np.average(Y - (predict(X, w, b)) ** 2)
def gradients(X, Y, w, b):
    w_gradient = np.average(-2 * (X * (predict(X, w, b) - Y)))
    b_gradient = np.average(-2 * (predict(X, w, b) - Y))
    return (w_gradient, b_gradient)
def train(X, Y, iterations, lr):
    w = 0
    b = 0
    log = []
    mse = []
    for i in range(iterations):
        w_gradient, b_gradient = gradient(X, Y, w, b)
        w -= w_gradient * lr
        b -= b_gradient * lr
        log.append((w,b))
        mse.append(mse(X, Y, w, b)
    return w, b, log, mse
"""
FIX_PARENTHESIS = ("mse.append(mse(X, Y, w, b)\n", "mse.append(mse(X, Y, w, b))\n")
FIX_NAME = ("gradient(X, Y, w, b)", "gradients(X, Y, w, b)")
FIX_SHADOW = [("    mse = []", "    losses = []"), ("mse.append(", "losses.append("), ("log, mse\n", "log, losses\n")]

MODEL = get_model("linear1d")
rng = np.random.default_rng(0)
X = rng.standard_normal(40)
Y = 2.0 * X + 1.0 + 0.1 * rng.standard_normal(40)


def load(source: str) -> dict[str, Any]:
    namespace: dict[str, Any] = {}
    exec(compile(source, "article.py", "exec"), namespace)
    return namespace


def fixed(*fixes: tuple[str, str]) -> str:
    source = ARTICLE
    for old, new in fixes:
        assert old in source
        source = source.replace(old, new)
    return source


def test_bug_missing_parenthesis_does_not_compile() -> None:
    with pytest.raises(SyntaxError):
        compile(ARTICLE, "article.py", "exec")


def test_bug_gradient_against_gradients_is_a_name_error() -> None:
    article = load(fixed(FIX_PARENTHESIS))
    with pytest.raises(NameError, match="'gradient' is not defined"):
        article["train"](X, Y, 3, 0.1)


def test_bug_list_shadowing_mse_breaks_the_log() -> None:
    article = load(fixed(FIX_PARENTHESIS, FIX_NAME))
    with pytest.raises(TypeError, match="'list' object is not callable"):
        article["train"](X, Y, 3, 0.1)


def _as_twin(article: dict[str, Any]) -> SimpleNamespace:
    """The article's functions behind gradtwin's twin contract (params dict, X, Y)."""

    def gradients(params: dict[str, Any], X: Any, Y: Any) -> dict[str, Any]:
        dw, db = article["gradients"](X, Y, params["w"], params["b"])
        return {"w": np.asarray(dw), "b": np.asarray(db)}

    def loss(params: dict[str, Any], X: Any, Y: Any) -> Any:
        return article["mse"](X, Y, params["w"], params["b"])

    return plant(MODEL, loss=loss, gradients=gradients)


def test_bugs_sign_and_mse_parenthesis_run_silently_and_are_caught() -> None:
    """With the three crashes fixed, the article's code runs and its loss climbs;
    gradtwin's parity check names both remaining bugs."""
    source = fixed(FIX_PARENTHESIS, FIX_NAME, *FIX_SHADOW)
    article = load(source)
    _, _, _, losses = article["train"](X, Y, 20, 0.1)
    true_loss = [float(np.mean((X * w + b - Y) ** 2)) for w, b in article["train"](X, Y, 20, 0.1)[2]]
    assert true_loss[-1] > true_loss[0]  # stepping along the flipped gradient climbs the loss
    assert min(losses) < 0  # 'Y - pred ** 2' is not a squared error: it goes negative

    params = {"w": np.asarray(0.5), "b": np.asarray(-0.5)}
    failing = caught(MODEL, params, Dataset(X, Y, "article"), _as_twin(article))  # gradtwin's own twin passes
    failed = {name for comparison, name in failing if comparison == "manual vs autograd"}
    assert failed == {"loss", "w", "b"}


def test_the_meaning_of_the_article_converges() -> None:
    """gradtwin's twins, on the same data and lr, lower the loss at every step."""
    for engine in ("manual", "autograd"):
        result = train(make_engine(engine, MODEL), Dataset(X, Y, "article"), lr=0.1, iterations=20)
        assert np.all(np.diff(result.history.loss) < 0)

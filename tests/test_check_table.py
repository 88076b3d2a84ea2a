"""`gradtwin check --model`'s table is honest: each row's columns describe one element, and ok agrees with them."""

from __future__ import annotations

import re
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from gradtwin.cli import main
from gradtwin.models import MODELS
from gradtwin.parity.compare import ParamCheck, format_table, worst
from gradtwin.parity.model_check import check_model


def _halved(module: ModuleType) -> ModuleType:
    """The manual twin with every gradient exactly half the true one."""
    bugged = ModuleType(f"{module.__name__}[halved]")
    bugged.__dict__.update({k: v for k, v in vars(module).items() if not k.startswith("__")})

    def gradients(params: Any, X: Any, Y: Any, **kw: Any) -> Any:
        return {k: 0.5 * g for k, g in module.gradients(params, X, Y, **kw).items()}

    bugged.gradients = gradients  # type: ignore[attr-defined]
    return bugged


def _assert_honest(c: ParamCheck) -> None:
    assert c.worst_err == pytest.approx(abs(c.a - c.b), rel=1e-12, abs=0.0), c
    assert c.ok == (c.worst_err <= c.tol), c
    assert c.rel_err <= c.max_rel_err and c.worst_err <= c.max_abs_err, c
    # against the tensor's scale, which is at least |b| at the element: never blown up by a value near 0
    assert c.rel_err * abs(c.b) <= c.worst_err * (1 + 1e-12), c


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("planted", [False, True])
def test_every_row_describes_one_element(name: str, dtype: str, planted: bool) -> None:
    model = MODELS[name]
    checks = worst(check_model(model, 3, dtype, seed=1, manual_module=_halved(model.manual) if planted else None))
    for c in checks:
        _assert_honest(c)
    hand = [c for c in checks if c.comparison.startswith("manual") and c.name != "loss"]
    assert hand and all(c.ok for c in hand) != planted, format_table(checks)
    if planted:  # half the gradient is 50 % wrong at its largest, never "rel err 8.26"
        assert all(c.rel_err <= 0.5 + 1e-6 for c in hand if "finite" not in c.comparison), format_table(checks)


def test_the_printed_table_agrees_with_itself(capsys: pytest.CaptureFixture[str]) -> None:
    """In `check --model all`, a row that says yes prints an abs err within its printed tolerance."""
    assert main(["check", "--model", "all", "--points", "2"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if re.search(r"\s(yes|NO)\s", line)]
    assert len(rows) >= 2 * len(MODELS)
    for row in rows:
        ok, *_, abs_err, tol, rel, _point = re.split(r"\s{2,}", row.strip())[2:]
        assert ok == "yes" and float(abs_err) <= float(tol) and np.isfinite(float(rel)), row
        assert float(rel) < 1e-3, row  # twins that agree: a relative error of rounding, never 6e+297

"""One validator per kind of argument: each names the argument, what was expected and what came.

`owner` prefixes the message with who was given the argument ("GradientDescentRegressor:");
`needs` phrases it as a requirement of a thing ("synthetic data needs n, an integer >= 1").
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from gradtwin.errors import UsageError


def is_real(value: Any) -> bool:
    """A real number: int or float (NumPy's too), not a bool."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def is_whole(value: Any, minimum: int = 1) -> bool:
    """An integer (not a bool) of at least `minimum`."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and bool(value >= minimum)


def _fail(name: str, expected: str, value: Any, owner: str | None, needs: str | None) -> UsageError:
    if needs is not None:
        return UsageError(f"{needs} needs {name}, {expected}; got {value!r}")
    prefix = f"{owner}: " if owner else ""
    return UsageError(f"{prefix}{name} must be {expected}; got {value!r}")


def whole(
    value: Any,
    name: str,
    minimum: int = 1,
    *,
    allow_none: bool = False,
    owner: str | None = None,
    needs: str | None = None,
) -> Any:
    """`value` if it is an integer >= `minimum` (or None where allowed), else a UsageError."""
    if allow_none and value is None:
        return None
    if not is_whole(value, minimum):
        expected = f"an integer >= {minimum}" + (" or None" if allow_none else "")
        if allow_none and owner is not None:  # an estimator's parameter: None is its default, named first
            expected = f"None or an integer >= {minimum}"
        raise _fail(name, expected, value, owner, needs)
    return value


def positive_finite(value: Any, name: str, *, owner: str | None = None) -> float:
    """`value` as a float if it is a finite number > 0 (a learning rate, say), else a UsageError."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise _fail(name, "a positive finite number", value, owner, None) from None
    if isinstance(value, bool) or not (math.isfinite(number) and number > 0):
        raise _fail(name, "a positive finite number", value, owner, None)
    return number


def finite_at_least(
    value: Any, name: str, minimum: float = 0.0, *, allow_none: bool = False, owner: str | None = None,
    needs: str | None = None, strict: bool = False,
) -> Any:  # fmt: skip
    """`value` if it is a finite real number >= `minimum` (> with `strict`), or None where allowed."""
    if allow_none and value is None:
        return None
    ok = is_real(value) and math.isfinite(value) and (value > minimum if strict else value >= minimum)
    if not ok:
        bound = f"> {minimum:g}" if strict else f">= {minimum:g}"
        expected = f"a finite number {bound}"
        if allow_none and owner is not None:
            expected = f"None or {expected}"
        raise _fail(name, expected, value, owner, needs)
    return value


def finite(value: Any, name: str, *, needs: str | None = None) -> Any:
    """`value` if it is a finite real number, else a UsageError."""
    if not (is_real(value) and math.isfinite(value)):
        raise _fail(name, "a finite number", value, None, needs)
    return value

"""The Dataset and its one validation gate: whatever built it, the models see real, finite numbers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from gradtwin.errors import DataError, DataTypeError


@dataclass(frozen=True)
class Dataset:
    """Features X (n,) or (n, d), float64, and targets Y (n,): float64 values or int64 class labels.

    `weight` (n,) are sample weights (>= 0, not all 0), or None: the twins then minimise the
    weighted mean sum_i v_i l_i / sum_i v_i. `standardized` says X was centred and scaled.
    `test` is a held-out split of the same source (prepared like X, never trained on), or None.
    `class_names` (k,) names the classes of int64 labels 0..k-1 as the source wrote them, or None.
    `x_mean`, `x_scale` () for 1-D X or (d,): the statistics X was prepared with, X = (X_raw - x_mean)
    / x_scale, or None when X is in the data's own units.
    """

    X: np.ndarray
    Y: np.ndarray
    name: str
    x_name: str = "x"
    y_name: str = "y"
    weight: np.ndarray | None = None
    standardized: bool = False
    test: Dataset | None = None
    class_names: tuple[str, ...] | None = None
    x_mean: np.ndarray | None = None
    x_scale: np.ndarray | None = None

    def __post_init__(self) -> None:
        # The one gate every data set passes: whatever built it (a file, a generator, a
        # caller's arrays), the models downstream see real, finite float64 of agreeing rows.
        X = as_real(self.X, "X", self.name)
        Y = as_labels_or_real(self.Y, "Y", self.name)
        if X.ndim not in (1, 2):
            raise DataError(f"{self.name}: X must be 1-D (n,) or 2-D (n, d); got shape {X.shape}")
        if Y.ndim != 1:
            raise DataError(f"{self.name}: Y must be 1-D (n,); got shape {Y.shape}")
        if X.ndim == 2 and X.shape[1] == 0:
            raise DataError(f"{self.name}: X has no columns; got shape {X.shape}")
        check_xy(X, Y, self.name)
        object.__setattr__(self, "X", X)
        object.__setattr__(self, "Y", Y)
        if self.weight is not None:
            object.__setattr__(self, "weight", check_weight(self.weight, X.shape[0], self.name))
        if self.class_names is not None:
            self._check_class_names()
        if (self.x_mean is None) != (self.x_scale is None):
            raise DataError(f"{self.name}: x_mean and x_scale come together; got only one of them")
        for label in ("x_mean", "x_scale"):
            value = getattr(self, label)
            if value is not None:
                stat = as_real(value, label, self.name)
                if stat.shape != X.shape[1:]:
                    raise DataError(
                        f"{self.name}: {label} must have shape {X.shape[1:]}, one per column of X; got {stat.shape}"
                    )
                object.__setattr__(self, label, stat)

    def _check_class_names(self) -> None:
        names = tuple(self.class_names or ())
        if not all(isinstance(c, str) for c in names):
            raise DataError(f"{self.name}: class_names must be strings; got {names!r}")
        if self.Y.dtype.kind != "i" or (self.Y.size and not 0 <= self.Y.min() <= self.Y.max() < len(names)):
            raise DataError(f"{self.name}: class_names must name every label 0..k-1; got {len(names)} names")
        object.__setattr__(self, "class_names", names)

    def rows(self, rows: Any) -> Dataset:
        """The rows `rows` (indices or a slice) of X, Y and the weights, under the same names."""
        weight = None if self.weight is None else self.weight[rows]
        return Dataset(
            self.X[rows],
            self.Y[rows],
            self.name,
            self.x_name,
            self.y_name,
            weight,
            self.standardized,
            class_names=self.class_names,
            x_mean=self.x_mean,
            x_scale=self.x_scale,
        )

    @property
    def n(self) -> int:
        return int(self.X.shape[0])


def as_real(values: Any, label: str, source: str) -> np.ndarray:
    """`values` as a contiguous float64 array, or a DataTypeError saying what kind they were.

    Booleans, integers and floats convert; so do object arrays whose items are numbers.
    Strings, bytes, complex numbers and other objects are refused, not coerced.
    """
    try:
        arr = np.asarray(values)
    except (TypeError, ValueError) as e:  # ragged nested lists, for one
        raise DataError(f"{source}: {label} must be an array of numbers; got {type(values).__name__} ({e})") from None
    kind = arr.dtype.kind
    if kind == "O":
        if any(isinstance(v, (str, bytes, complex, np.complexfloating)) for v in arr.flat):
            raise DataTypeError(
                f"{source}: {label} must hold real numbers; got strings or complex numbers (dtype object)"
            )
        try:
            return np.asarray(arr, dtype=np.float64, order="C")
        except (TypeError, ValueError):
            raise DataTypeError(f"{source}: {label} must hold real numbers; got objects that are not numbers") from None
    if kind == "c":
        raise DataTypeError(f"{source}: {label} must hold real numbers; got complex values (dtype {arr.dtype})")
    if kind not in "biuf":
        raise DataTypeError(f"{source}: {label} must hold real numbers; got dtype {arr.dtype}")
    return np.asarray(arr, dtype=np.float64, order="C")


def as_labels_or_real(values: Any, label: str, source: str) -> np.ndarray:
    """Integer arrays are class labels and stay integers (int64); anything else as `as_real`."""
    arr = values if isinstance(values, np.ndarray) else None
    if arr is not None and arr.dtype.kind in "iu":
        return np.ascontiguousarray(arr, dtype=np.int64)
    return as_real(values, label, source)


def check_weight(weight: Any, n: int, source: str) -> np.ndarray:
    """Sample weights as float64 (n,): finite, >= 0 and not all 0, naming the first bad row."""
    v = as_real(weight, "weight", source)
    if v.shape != (n,):
        raise DataError(f"{source}: weight must have shape ({n},), one per row; got shape {v.shape}")
    bad = np.flatnonzero(~np.isfinite(v) | (v < 0))
    if bad.size:
        row = int(bad[0])
        raise DataError(f"{source}: weight must be finite and >= 0; got {v[row]} at row {row} (counting from 0)")
    if not np.any(v > 0):
        raise DataError(f"{source}: weight must not be all zero; got {n} zeros, which leave nothing to fit")
    return v


def check_xy(X: np.ndarray, Y: np.ndarray, source: str) -> None:
    """Refuse empty, mismatched, NaN or infinite data, naming the source and the first bad row."""
    if X.shape[0] == 0:
        raise DataError(f"{source}: no data rows")
    if X.shape[0] != Y.shape[0]:
        raise DataError(f"{source}: X has {X.shape[0]} rows but Y has {Y.shape[0]}")
    for label, values in (("X", X), ("Y", Y)):
        bad = ~np.isfinite(values)
        if bad.any():
            where = tuple(int(i) for i in np.argwhere(bad)[0])
            at = f"row {where[0]}" if len(where) == 1 else f"row {where[0]}, column {where[1]}"
            raise DataError(f"{source}: {label} has a non-finite value ({values[where]}) at {at}")

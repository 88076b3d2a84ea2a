"""Data sets: the bundled diabetes data, CSV files and a seeded generator, validated here."""

from __future__ import annotations

import csv
import io
import math
import os
import stat
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from gradtwin.errors import DataError, DataTypeError, UsageError


@dataclass(frozen=True)
class Dataset:
    """Features X (n,) or (n, d), float64, and targets Y (n,): float64 values or int64 class labels.

    `test` is a held-out split of the same source (prepared like X, never trained on), or None.
    """

    X: np.ndarray
    Y: np.ndarray
    name: str
    x_name: str = "x"
    y_name: str = "y"
    standardized: bool = False
    x_mean: np.ndarray | float = 0.0
    x_std: np.ndarray | float = 1.0
    notes: dict[str, str] = field(default_factory=dict)
    test: Dataset | None = None

    def __post_init__(self) -> None:
        # The one gate every data set passes: whatever built it (a file, a generator, a
        # caller's arrays), the models downstream see real, finite float64 of agreeing rows.
        X = as_real(self.X, "X", self.name)
        Y = as_labels_or_real(self.Y, "Y", self.name)
        if X.ndim not in (1, 2):
            raise DataError(f"{self.name}: X must be 1-D (n,) or 2-D (n, d); got shape {X.shape}")
        if Y.ndim not in (1, 2):
            raise DataError(f"{self.name}: Y must be 1-D (n,); got shape {Y.shape}")
        if X.ndim == 2 and X.shape[1] == 0:
            raise DataError(f"{self.name}: X has no columns; got shape {X.shape}")
        check_xy(X, Y, self.name)
        object.__setattr__(self, "X", X)
        object.__setattr__(self, "Y", Y)

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


def load_diabetes_bmi() -> Dataset:
    """scikit-learn's diabetes data: body-mass index (kg/m^2) against disease progression.

    442 patients; the raw (unscaled) values, so that w reads in the data's own units unless
    the caller standardizes.
    """
    from sklearn.datasets import load_diabetes

    bunch = load_diabetes(scaled=False)
    X = np.ascontiguousarray(bunch.data[:, 2], dtype=np.float64)  # (442,) column 'bmi'
    Y = np.ascontiguousarray(bunch.target, dtype=np.float64)  # (442,)
    check_xy(X, Y, "diabetes")
    return Dataset(X, Y, name="diabetes", x_name="bmi", y_name="progression")


def load_diabetes_all() -> Dataset:
    """scikit-learn's diabetes data: all 10 baseline variables against disease progression.

    442 patients, X (442, 10) in the data's own units (age, sex, bmi, bp, s1..s6).
    """
    from sklearn.datasets import load_diabetes

    bunch = load_diabetes(scaled=False)
    X = np.ascontiguousarray(bunch.data, dtype=np.float64)  # (442, 10)
    Y = np.ascontiguousarray(bunch.target, dtype=np.float64)  # (442,)
    check_xy(X, Y, "diabetes")
    return Dataset(X, Y, name="diabetes", x_name=",".join(bunch.feature_names), y_name="progression")


def synthetic_linear1d(n: int = 200, w: float = 3.0, b: float = -2.0, noise: float = 0.5, seed: int = 0) -> Dataset:
    """Y = w*X + b + noise * N(0, 1), with X ~ N(0, 1); the same seed gives the same data."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise UsageError(f"synthetic data needs n, an integer >= 1; got {n!r}")
    for label, value in (("w", w), ("b", b), ("noise", noise)):
        if not (isinstance(value, (int, float, np.integer, np.floating)) and math.isfinite(value)):
            raise UsageError(f"synthetic data needs {label}, a finite number; got {value!r}")
    if noise < 0:
        raise UsageError(f"synthetic data needs noise >= 0; got {noise!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise UsageError(f"synthetic data needs seed, an integer >= 0; got {seed!r}")
    rng = np.random.default_rng(seed)
    X = rng.standard_normal(n)  # (n,)
    Y = w * X + b + noise * rng.standard_normal(n)  # (n,)
    return Dataset(X, Y, name=f"synthetic(n={n}, seed={seed})")


def standardize(data: Dataset) -> Dataset:
    """Centre X and scale it to unit variance (per feature); Y is left in its units.

    With unit-variance X the loss's Hessian is close to 2*I, so one learning rate suits
    every data set and gradient descent reaches least squares in hundreds of steps.
    """
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is caught just below
        mean = data.X.mean(axis=0)
        std = data.X.std(axis=0)
        X = (data.X - mean) / std
    if np.any(std == 0):
        raise DataError(f"{data.name}: X is constant, so it cannot be standardized")
    if not (np.all(np.isfinite(std)) and np.all(np.isfinite(X))):
        raise DataError(f"{data.name}: X spreads beyond float64's range, so it cannot be standardized")
    test = data.test
    if test is not None:  # scaled by the training rows' statistics: the test rows stay unseen
        test = replace(test, X=(test.X - mean) / std, standardized=True, x_mean=mean, x_std=std)
    return replace(data, X=X, standardized=True, x_mean=mean, x_std=std, test=test)


def _column_index(spec: str | int, header: list[str] | None, width: int, path: str, arg: str) -> int:
    """Resolve a column given as a header name or a 0-based position."""
    if header is not None and isinstance(spec, str) and spec in header:
        return header.index(spec)
    try:
        index = int(spec)
    except (TypeError, ValueError):
        if header:
            known = f"; the header has {', '.join(_printable(h) for h in header)}"
        else:
            known = " (the file has no header; give a 0-based position)"
        raise DataError(f"{path}: {arg} column {str(spec)!r} not found{known}") from None
    if not 0 <= index < width:
        raise DataError(f"{path}: {arg} column {index} out of range; rows have {width} columns (0 to {width - 1})")
    return index


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _header_cell(cells: list[str]) -> str | None:
    """The first cell that marks a row as a header: not empty and not a number."""
    return next((c for c in cells if c.strip() and not _is_number(c)), None)


def load_csv(path: str | Path, x: str | int = 0, y: str | int = 1, header: str = "auto") -> Dataset:
    """Read two numeric columns of a CSV file, naming the file and line of any bad cell.

    header: 'auto' (a first row with a cell that is neither empty nor a number is a header),
    'yes' or 'no'. Columns are header names or 0-based positions. Blank lines are skipped.
    """
    if header not in ("auto", "yes", "no"):
        raise UsageError(f"header must be 'auto', 'yes' or 'no'; got {header!r}")
    name = _printable(os.fspath(path))
    rows = _read_rows(Path(path), name)
    if not rows:
        raise DataError(f"{name}: the file has no data rows")
    first_line, first = rows[0]
    marker = _header_cell(first)
    if header == "no" and marker is not None:
        raise DataError(
            f"{name}:{first_line}: {_cell(marker)} is not a number: a header row where none is expected (--header no)"
        )
    has_header = header == "yes" or (header == "auto" and marker is not None)
    names = [c.strip() for c in first] if has_header else None
    body = rows[1:] if has_header else rows
    if not body:
        raise DataError(f"{name}: the file has a header but no data rows")
    width = len(first)
    ix = _column_index(x, names, width, name, "x")
    iy = _column_index(y, names, width, name, "y")
    labels = tuple(_printable(names[i]) if names and names[i] else f"column {i}" for i in (ix, iy))
    X = np.empty(len(body))
    Y = np.empty(len(body))
    for row_number, (line, cells) in enumerate(body):
        if len(cells) != width:
            raise DataError(f"{name}:{line}: {len(cells)} columns where the first row has {width}")
        for target, col, label in ((X, ix, labels[0]), (Y, iy, labels[1])):
            target[row_number] = _parse_cell(cells[col], name, line, label)
    return Dataset(X, Y, name=name, x_name=labels[0], y_name=labels[1])


def _read_rows(path: Path, name: str) -> list[tuple[int, list[str]]]:
    """(line number, cells) for each non-blank line; file-level problems become DataError."""
    try:
        mode = path.stat().st_mode
        if stat.S_ISDIR(mode):
            raise DataError(f"{name}: is a folder, not a data file")
        if not (stat.S_ISREG(mode) or stat.S_ISFIFO(mode)):  # a device such as /dev/zero never ends
            raise DataError(f"{name}: is not a regular file; expected a CSV file")
        raw = path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        raise DataError(f"{name}: no such data file") from None
    except OSError as e:
        raise DataError(f"{name}: cannot be read ({e.strerror or e})") from None
    # report the first of the two faults binary data has: a NUL byte, or bytes that are not UTF-8
    bom = 3 if raw.startswith(b"\xef\xbb\xbf") else 0  # a UTF-8 byte-order mark, as some spreadsheets write
    nul = raw.find(b"\x00")
    try:
        text = raw[bom:].decode("utf-8")
        bad = -1
    except UnicodeDecodeError as e:
        text, bad = "", bom + e.start
    if nul >= 0 and (bad < 0 or nul < bad):
        raise DataError(
            f"{name}:{_line_of(raw, nul)}: holds a NUL byte (byte {nul}); expected a CSV text file, not binary data"
        )
    if bad >= 0:
        raise DataError(
            f"{name}:{_line_of(raw, bad)}: not UTF-8 text (byte {bad} is {raw[bad]:#04x}); expected a CSV file"
        )
    rows = []
    # newline="" hands line ends to csv untouched, so line_num counts the file's own lines
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        for cells in reader:
            if cells and any(c.strip() for c in cells):
                rows.append((reader.line_num, cells))
    except csv.Error as e:
        raise DataError(f"{name}:{reader.line_num}: malformed CSV ({e})") from None
    return rows


def _line_of(raw: bytes, at: int) -> int:
    """The line (from 1) that byte `at` is on, counting \\n, \\r\\n and a lone \\r as csv does."""
    head = raw[:at]
    return head.count(b"\n") + head.count(b"\r") - head.count(b"\r\n") + 1


def _printable(text: str) -> str:
    """`text` if it prints on one line as it is, else its quoted, escaped form."""
    return text if text.isprintable() else repr(text)


def _cell(text: str, limit: int = 40) -> str:
    """A cell's text as shown in a message: quoted, escaped and cut to `limit` characters."""
    return repr(text) if len(text) <= limit else repr(text[:limit]) + "..."


def _parse_cell(cell: str, name: str, line: int, label: str) -> float:
    text = cell.strip()
    try:
        value = float(text)
    except ValueError:
        shown = _cell(text) if text else "an empty cell"
        raise DataError(f"{name}:{line}: {label} holds {shown}, not a number") from None
    if not math.isfinite(value):
        raise DataError(f"{name}:{line}: {label} is {_cell(text)}; only finite numbers are allowed")
    return value

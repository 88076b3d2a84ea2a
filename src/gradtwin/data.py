"""Data sets: the bundled diabetes data, CSV files and a seeded generator, validated here."""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from gradtwin.errors import DataError


@dataclass(frozen=True)
class Dataset:
    """Features X (n,) or (n, d) and targets Y (n,), float64, validated finite and non-empty."""

    X: np.ndarray
    Y: np.ndarray
    name: str
    x_name: str = "x"
    y_name: str = "y"
    standardized: bool = False
    x_mean: np.ndarray | float = 0.0
    x_std: np.ndarray | float = 1.0
    notes: dict[str, str] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return int(self.X.shape[0])


def check_xy(X: np.ndarray, Y: np.ndarray, source: str) -> None:
    """Refuse empty, mismatched, NaN or infinite data, naming the source and the first bad row."""
    if X.shape[0] == 0:
        raise DataError(f"{source}: no data rows")
    if X.shape[0] != Y.shape[0]:
        raise DataError(f"{source}: X has {X.shape[0]} rows but Y has {Y.shape[0]}")
    for label, values in (("X", X), ("Y", Y)):
        bad = ~np.isfinite(values)
        if bad.any():
            row = int(np.argwhere(bad)[0][0])
            raise DataError(f"{source}: {label} has a non-finite value ({values[bad][0]}) at row {row}")


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
    if n < 1:
        raise DataError(f"synthetic data needs n >= 1; got {n}")
    rng = np.random.default_rng(seed)
    X = rng.standard_normal(n)  # (n,)
    Y = w * X + b + noise * rng.standard_normal(n)  # (n,)
    return Dataset(X, Y, name=f"synthetic(n={n}, seed={seed})")


def standardize(data: Dataset) -> Dataset:
    """Centre X and scale it to unit variance (per feature); Y is left in its units.

    With unit-variance X the loss's Hessian is close to 2*I, so one learning rate suits
    every data set and gradient descent reaches least squares in hundreds of steps.
    """
    mean = data.X.mean(axis=0)
    std = data.X.std(axis=0)
    if np.any(std == 0):
        raise DataError(f"{data.name}: X is constant, so it cannot be standardized")
    return replace(data, X=(data.X - mean) / std, standardized=True, x_mean=mean, x_std=std)


def _column_index(spec: str | int, header: list[str] | None, width: int, path: str, arg: str) -> int:
    """Resolve a column given as a header name or a 0-based position."""
    if header is not None and isinstance(spec, str) and spec in header:
        return header.index(spec)
    try:
        index = int(spec)
    except (TypeError, ValueError):
        known = f"; the header has {', '.join(header)}" if header else " (the file has no header)"
        raise DataError(f"{path}: {arg} column {spec!r} not found{known}") from None
    if not 0 <= index < width:
        raise DataError(f"{path}: {arg} column {index} out of range; rows have {width} columns")
    return index


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def load_csv(path: str | Path, x: str | int = 0, y: str | int = 1, header: str = "auto") -> Dataset:
    """Read two numeric columns of a CSV file, naming the file and line of any bad cell.

    header: 'auto' (a first row with any non-numeric cell is a header), 'yes' or 'no'.
    Columns are header names or 0-based positions. Blank lines are skipped.
    """
    if header not in ("auto", "yes", "no"):
        raise DataError(f"header must be 'auto', 'yes' or 'no'; got {header!r}")
    name = str(path)
    rows = _read_rows(Path(path))
    if not rows:
        raise DataError(f"{name}: the file has no data rows")
    first_line, first = rows[0]
    has_header = header == "yes" or (header == "auto" and not all(_is_number(c) for c in first))
    if header == "no" and not all(_is_number(c) for c in first):
        raise DataError(f"{name}:{first_line}: a header row where none is expected (--header no)")
    names = [c.strip() for c in first] if has_header else None
    body = rows[1:] if has_header else rows
    if not body:
        raise DataError(f"{name}: the file has a header but no data rows")
    width = len(first)
    ix = _column_index(x, names, width, name, "x")
    iy = _column_index(y, names, width, name, "y")
    labels = (names[ix], names[iy]) if names else (f"column {ix}", f"column {iy}")
    X = np.empty(len(body))
    Y = np.empty(len(body))
    for row_number, (line, cells) in enumerate(body):
        if len(cells) != width:
            raise DataError(f"{name}:{line}: {len(cells)} columns where the first row has {width}")
        for target, col, label in ((X, ix, labels[0]), (Y, iy, labels[1])):
            target[row_number] = _parse_cell(cells[col], name, line, label)
    return Dataset(X, Y, name=name, x_name=labels[0], y_name=labels[1])


def _read_rows(path: Path) -> list[tuple[int, list[str]]]:
    """(line number, cells) for each non-blank line; file-level problems become DataError."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DataError(f"{path}: no such data file") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, not a data file") from None
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text (byte {e.start}); expected a CSV file") from None
    except OSError as e:
        raise DataError(f"{path}: cannot be read ({e.strerror})") from None
    if "\x00" in text:
        raise DataError(f"{path}: holds NUL bytes; expected a CSV text file")
    rows = []
    reader = csv.reader(text.splitlines())
    try:
        for cells in reader:
            if cells and any(c.strip() for c in cells):
                rows.append((reader.line_num, cells))
    except csv.Error as e:
        raise DataError(f"{path}:{reader.line_num}: malformed CSV ({e})") from None
    return rows


def _parse_cell(cell: str, name: str, line: int, label: str) -> float:
    text = cell.strip()
    try:
        value = float(text)
    except ValueError:
        shown = repr(text) if text else "an empty cell"
        raise DataError(f"{name}:{line}: {label} holds {shown}, not a number") from None
    if not math.isfinite(value):
        raise DataError(f"{name}:{line}: {label} is {text!r}; only finite numbers are allowed")
    return value

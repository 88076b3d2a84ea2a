"""Data sets: the bundled data, CSV files and their errors, the synthetic generator."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gradtwin.data import load_csv, load_diabetes_bmi, standardize, synthetic_linear1d
from gradtwin.errors import DataError


def test_bundled_diabetes_bmi() -> None:
    data = load_diabetes_bmi()
    assert data.X.shape == data.Y.shape == (442,)
    assert 18 <= data.X.min() < data.X.max() <= 43  # body-mass index in kg/m^2
    s = standardize(data)
    assert abs(s.X.mean()) < 1e-12 and s.X.std() == pytest.approx(1.0, rel=1e-12)


def test_synthetic_is_seeded() -> None:
    a, b, c = synthetic_linear1d(seed=1), synthetic_linear1d(seed=1), synthetic_linear1d(seed=2)
    assert np.array_equal(a.Y, b.Y) and not np.array_equal(a.Y, c.Y)


@pytest.mark.parametrize(
    ("text", "header", "x", "y", "expected"),
    [
        ("1,2\n3,4\n", "auto", 0, 1, ([1, 3], [2, 4])),
        ("1,2\n3,4\n", "no", 1, 0, ([2, 4], [1, 3])),
        ("a,b\n1,2\n\n3,4\n", "auto", "b", "a", ([2, 4], [1, 3])),
        ("a,b\n1,2\n", "yes", "0", "1", ([1], [2])),
    ],
)
def test_csv_reads(tmp_path: Path, text: str, header: str, x: str, y: str, expected: tuple[list, list]) -> None:
    f = tmp_path / "d.csv"
    f.write_text(text)
    data = load_csv(f, x=x, y=y, header=header)
    assert data.X.tolist() == expected[0] and data.Y.tolist() == expected[1]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the file has no data rows"),
        ("x,y\n", "has a header but no data rows"),
        ("x,y\n1,2\n3\n", ":3: 1 columns where the first row has 2"),
        ("x,y\n1,2\n3,abc\n", ":3: y holds 'abc', not a number"),
        ("x,y\n1,2\n,4\n", ":3: x holds an empty cell, not a number"),
        ("x,y\n1,nan\n", ":2: y is 'nan'; only finite numbers are allowed"),
        ("x,y\n1,2\n-inf,2\n", ":3: x is '-inf'; only finite numbers are allowed"),
        ("x,y\n1,2\n", "column 'z' not found; the header has x, y"),
    ],
)
def test_csv_errors_name_file_and_line(tmp_path: Path, text: str, message: str) -> None:
    f = tmp_path / "bad.csv"
    f.write_text(text)
    with pytest.raises(DataError, match=None) as info:
        load_csv(f, x="z" if "'z'" in message else "x", y="y")
    assert str(f) in str(info.value) and message in str(info.value)


def test_csv_header_where_none_expected(tmp_path: Path) -> None:
    f = tmp_path / "h.csv"
    f.write_text("x,y\n1,2\n")
    with pytest.raises(DataError, match=r"h.csv:1: .*a header row where none is expected"):
        load_csv(f, header="no")


def test_missing_and_binary_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such data file"):
        load_csv(tmp_path / "absent.csv")
    f = tmp_path / "b.csv"
    f.write_bytes(b"\xff\xfe\x00\x01garbage")
    with pytest.raises(DataError, match="not UTF-8 text"):
        load_csv(f)


def test_constant_x_cannot_be_standardized() -> None:
    data = synthetic_linear1d(n=5)
    flat = type(data)(np.ones(5), data.Y, "flat")
    with pytest.raises(DataError, match="X is constant"):
        standardize(flat)

"""CSV files: numbers or class labels split by ',', ';', tabs or spaces; bad cells named by file, line, column."""

from __future__ import annotations

import csv
import io
import math
import os
import re
import stat
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from gradtwin.data.dataset import Dataset
from gradtwin.errors import DataError, UsageError

Column = str | int
DELIMITERS = {",": ",", ";": ";", "tab": "\t", "\t": "\t", "space": " "}  # " ": runs of spaces and tabs
_QUOTED = re.compile(r'"[^"]*"')
_LINE_END = re.compile(r"\r\n|\r|\n")  # the line ends csv counts, and no others


def _column_index(spec: Column, header: list[str] | None, width: int, path: str, arg: str) -> int:
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


def _spec_columns(spec: Column, header: list[str] | None, width: int, path: str) -> tuple[list[int], bool]:
    """The x columns one spec names, and whether it is a list or range (X then stays 2-D).

    A header name that matches exactly wins; else 'a,b,c' is a list and 'A:B' the columns
    from A to B, both included (positions or names; an empty end is the first or last column).
    """
    if not isinstance(spec, str) or (header is not None and spec in header):
        return [_column_index(spec, header, width, path, "x")], False
    if "," in spec:
        parts = [p.strip() for p in spec.split(",")]
        if not all(parts):
            raise DataError(
                f"{path}: x column list {spec!r} has an empty entry; give names or positions between commas"
            )
        return [i for part in parts for i in _spec_columns(part, header, width, path)[0]], True
    if ":" in spec:
        ends = spec.split(":")
        if len(ends) != 2:
            raise DataError(f"{path}: x range {spec!r} must be FIRST:LAST, one colon; got {len(ends) - 1}")
        a = _column_index(ends[0].strip(), header, width, path, "x") if ends[0].strip() else 0
        b = _column_index(ends[1].strip(), header, width, path, "x") if ends[1].strip() else width - 1
        if a > b:
            raise DataError(f"{path}: x range {spec!r} runs backwards: from column {a} to column {b}")
        return list(range(a, b + 1)), True
    return [_column_index(spec, header, width, path, "x")], False


def _x_columns(
    x: Column | Sequence[Column] | None, header: list[str] | None, width: int, iy: int, path: str
) -> tuple[list[int], bool]:
    """The x columns and whether X is 2-D; each given once and none of them the y column."""
    if x is None:
        ix, several = [i for i in range(width) if i != iy], True
        if not ix:
            raise DataError(f"{path}: rows have 1 column, the y column; X needs another")
    elif isinstance(x, (str, int)):
        ix, several = _spec_columns(x, header, width, path)
    else:
        ix = [i for spec in x for i in _spec_columns(spec, header, width, path)[0]]
        several = True
        if not ix:
            raise DataError(f"{path}: x names no columns; got {list(x)!r}")
    for position, i in enumerate(ix):
        if i == iy:
            raise DataError(f"{path}: x column {_name_of(i, header)} is also the y column; X and Y must differ")
        if i in ix[:position]:
            raise DataError(f"{path}: x column {_name_of(i, header)} is given twice")
    return ix, several


def _name_of(i: int, header: list[str] | None) -> str:
    return repr(_printable(header[i])) if header and header[i] else str(i)


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _header_cell(cells: list[str]) -> str | None:
    """The first cell that marks a row as a header: not empty and not a number."""
    return next((c for c in cells if c.strip() and not _is_number(c)), None)


def sniff_delimiter(text: str) -> str:
    """The delimiter of CSV text, read off its first non-blank line (quoted text ignored).

    A ';' makes it ';' (files with decimal commas use it); else a ',' makes it ','; else a
    tab makes it tab; else ' ': cells split by runs of spaces and tabs, as numpy.loadtxt's default.
    """
    first = next((line for line in _LINE_END.split(text) if line.strip()), "")
    bare = _QUOTED.sub("", first)
    return next((d for d in (";", ",", "\t") if d in bare), " ")


def load_csv(
    path: str | Path,
    x: Column | Sequence[Column] | None = 0,
    y: Column = 1,
    header: str = "auto",
    delimiter: str | None = None,
    labels: bool = False,
) -> Dataset:
    """Read numeric columns of a CSV file, naming the file, line and column of any bad cell.

    header: 'auto' (a first row with a cell that is neither empty nor a number is a header),
    'yes' or 'no'. Columns are header names or 0-based positions. Blank lines are skipped.
    x: one column gives X (n,); a sequence of them, a comma list 'a,b' or a range 'A:B' (both
    ends included) gives X (n, d); None gives every column but y, X (n, d). A header name
    that matches exactly always wins over a list or range ("a,b" may name one column).
    delimiter: ',', ';', 'tab' (or '\\t'), 'space' (runs of spaces and tabs), or None to sniff
    it from the first non-blank line (see `sniff_delimiter`).
    labels: read y as class labels: whole numbers (1.0 reads as 1) or words, sorted, become
    int64 indices 0..k-1, and the Dataset's `class_names` keeps them as written.
    """
    if header not in ("auto", "yes", "no"):
        raise UsageError(f"header must be 'auto', 'yes' or 'no'; got {header!r}")
    if delimiter is not None and delimiter not in DELIMITERS:
        raise UsageError(f"delimiter must be ',', ';', 'tab' or 'space' (or None: sniff it); got {delimiter!r}")
    name = _printable(os.fspath(path))
    text = _read_text(Path(path), name)
    rows = _split_rows(text, DELIMITERS[delimiter] if delimiter else sniff_delimiter(text), name)
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
    iy = _column_index(y, names, width, name, "y")
    ix, several = _x_columns(x, names, width, iy, name)
    label_of = {i: _printable(names[i]) if names and names[i] else f"column {i}" for i in (*ix, iy)}
    X = np.empty((len(body), len(ix)))  # (n, d)
    Y = np.empty(len(body))  # (n,)
    for row_number, (line, cells) in enumerate(body):
        if len(cells) != width:
            raise DataError(f"{name}:{line}: {len(cells)} columns where the first row has {width}")
        for j, col in enumerate(ix):
            X[row_number, j] = _parse_cell(cells[col], name, line, label_of[col])
        if not labels:
            Y[row_number] = _parse_cell(cells[iy], name, line, label_of[iy])
    x_name = ",".join(label_of[i] for i in ix)
    if not labels:
        return Dataset(X if several else X[:, 0], Y, name=name, x_name=x_name, y_name=label_of[iy])
    codes, classes = _labels([(line, cells[iy]) for line, cells in body], name, label_of[iy])
    return Dataset(X if several else X[:, 0], codes, name=name, x_name=x_name, y_name=label_of[iy], class_names=classes)


def _labels(cells: list[tuple[int, str]], name: str, label: str) -> tuple[np.ndarray, tuple[str, ...]]:
    """Class labels (line, cell) as int64 indices (n,) into their sorted distinct values, and those values.

    All whole numbers (1.0 counts as 1): sorted as numbers. Anything else: sorted as text.
    """
    texts = [cell.strip() for _, cell in cells]
    for (line, _), text in zip(cells, texts, strict=True):
        if not text:
            raise DataError(f"{name}:{line}: {label} holds an empty cell, not a class label")
    numbers = [float(t) if _is_number(t) else None for t in texts]
    keys: list[int] | list[str]
    if all(v is not None for v in numbers):
        for (line, _), text, v in zip(cells, texts, numbers, strict=True):
            assert v is not None
            if not math.isfinite(v):
                raise DataError(f"{name}:{line}: {label} is {_cell(text)}; only finite numbers are allowed")
            if not v.is_integer():
                raise DataError(
                    f"{name}:{line}: {label} holds {_cell(text)}, not a class label; a classifier's labels are "
                    "whole numbers or words (a column of measurements is a target for linear1d or linear)"
                )
        keys = [int(v) for v in numbers if v is not None]
    else:
        keys = texts
    distinct = sorted(set(keys))  # type: ignore[type-var]
    if len(distinct) < 2:
        raise DataError(
            f"{name}: {label} holds one class ({str(distinct[0])!r}) in all {len(keys)} rows; "
            "a classifier needs at least 2"
        )
    index = {k: i for i, k in enumerate(distinct)}
    return np.array([index[k] for k in keys], dtype=np.int64), tuple(str(k) for k in distinct)


def _read_text(path: Path, name: str) -> str:
    """The file's text, without a byte-order mark; file-level problems become DataError."""
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
    return text


def _split_rows(text: str, delimiter: str, name: str) -> list[tuple[int, list[str]]]:
    """(line number, cells) for each non-blank line; ' ' splits at runs of spaces and tabs."""
    if delimiter == " ":
        lines = enumerate(_LINE_END.split(text), start=1)
        return [(number, line.split()) for number, line in lines if line.strip()]
    rows = []
    # newline="" hands line ends to csv untouched, so line_num counts the file's own lines
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
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

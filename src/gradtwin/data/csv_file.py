"""CSV files: two numeric columns, every bad cell named by file, line and column."""

from __future__ import annotations

import csv
import io
import math
import os
import stat
from pathlib import Path

import numpy as np

from gradtwin.data.dataset import Dataset
from gradtwin.errors import DataError, UsageError


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

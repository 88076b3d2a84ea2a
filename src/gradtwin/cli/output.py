"""What the commands write: JSON on stdout, the history as CSV (written atomically)."""

from __future__ import annotations

import json
from typing import Any

from gradtwin.cli.files import atomic_write
from gradtwin.parity.compare import finite_or_none
from gradtwin.training import TrainResult


def print_json(obj: Any) -> None:
    """`obj` as indented JSON on stdout; NaN and infinities become null."""
    print(json.dumps(finite_or_none(obj), indent=2, allow_nan=False))


def write_history(result: TrainResult, path: str, force: bool) -> None:
    """The recorded iterations as CSV: iteration, each parameter element, loss; full precision."""
    h = result.history
    columns = {"iteration": h.iteration}
    for name, values in h.params.items():
        flat = values.reshape(values.shape[0], -1)
        if values.ndim == 1:
            columns[name] = flat[:, 0]
        else:
            columns.update({f"{name}[{j}]": flat[:, j] for j in range(flat.shape[1])})
    columns["loss"] = h.loss

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(",".join(columns) + "\n")
            for row in zip(*columns.values(), strict=True):
                f.write(",".join(repr(int(v)) if i == 0 else repr(float(v)) for i, v in enumerate(row)) + "\n")

    atomic_write(path, write, force=force)

"""What a command says on stderr while it works: a time-based progress bar, and each file it wrote."""

from __future__ import annotations

import os
import sys
from typing import Any

MININTERVAL = 0.5  # seconds between redraws, however often the work reports
DELAY = 1.0  # seconds before a bar appears: shorter work shows none


def progress_bar(total: int | None, label: str, unit: str = "it") -> Any:
    """A tqdm bar on stderr, on a terminal only, redrawn by time: at most every MININTERVAL seconds.

    `miniters=1` makes every `update(k)` look at the clock (one clock read; no redraw unless
    MININTERVAL has passed), so work that reports in bursts of any size moves the bar smoothly.
    Off a terminal the bar is disabled and `update` returns at once.
    """
    from tqdm import tqdm

    return tqdm(
        total=total,
        desc=label,
        unit=unit,
        file=sys.stderr,
        disable=not sys.stderr.isatty(),
        mininterval=MININTERVAL,
        miniters=1,
        delay=DELAY,
        leave=False,
        dynamic_ncols=True,
    )


def wrote(what: str, path: str | os.PathLike[str]) -> None:
    """One line on stderr naming a file just written: `gradtwin: wrote plot to 'p.png'`."""
    print(f"gradtwin: wrote {what} to {os.fspath(path)!r}", file=sys.stderr)

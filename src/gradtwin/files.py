"""Writing output files atomically, never clobbering an existing file unless asked."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from gradtwin.errors import UsageError


def atomic_write(path: str | os.PathLike[str], write: Callable[[str], None], force: bool = False) -> None:
    """Call `write(tmp_path)`, then rename the finished file onto `path` in one step.

    An interrupted run leaves at most a stray temporary file, never a half-written `path`.
    """
    target = Path(path)
    if target.exists() and not force:
        raise UsageError(f"output file {str(target)!r} exists; pass --force to overwrite it")
    if not target.parent.is_dir():
        raise UsageError(f"output folder {str(target.parent)!r} does not exist")
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=target.suffix)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike[str], text: str, force: bool = False) -> None:
    """Write `text` to `path` atomically."""

    def write(tmp: str) -> None:
        Path(tmp).write_text(text, encoding="utf-8")

    atomic_write(path, write, force=force)

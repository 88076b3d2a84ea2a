"""Writing output files atomically, never clobbering an existing file unless asked."""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from gradtwin.errors import OutputError, UsageError

_NO_HARD_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOSYS, errno.EXDEV, errno.EMLINK}


def shown(path: str | os.PathLike[str]) -> str:
    """`path` as it can be printed on one line: quoted, with control characters escaped."""
    return repr(os.fspath(path))


def check_target(path: str | os.PathLike[str], force: bool = False) -> Path:
    """Refuse an output path that cannot be written: a folder, an existing file without
    `force`, or a file in a folder that does not exist. Called before a long run, so that
    a bad --history or --plot fails in a second, not after the training.
    """
    target = Path(path)
    if target.is_dir():
        raise UsageError(f"output file {shown(target)} is a folder; give a file name")
    if target.exists() and not force:
        raise UsageError(f"output file {shown(target)} exists; pass --force to overwrite it")
    if not target.parent.is_dir():
        raise UsageError(f"output folder {shown(target.parent)} does not exist")
    return target


def atomic_write(path: str | os.PathLike[str], write: Callable[[str], None], force: bool = False) -> None:
    """Call `write(tmp_path)` on a temporary file beside `path`, then put it in place in one step.

    Whatever interrupts the write (an exception, Ctrl-C, a full disk) removes the temporary
    file and leaves `path` as it was: absent, or the old file untouched. Without `force` the
    finished file is linked into place, which fails rather than clobbers a file that appeared
    meanwhile. The new file gets the permissions a plain `open()` would give it.
    """
    target = check_target(path, force)
    try:
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=target.suffix)
    except OSError as e:
        raise OutputError(f"cannot write output file {shown(target)} ({e.strerror})") from None
    os.close(fd)
    try:
        write(tmp)
        _settle(tmp, target)
        _put_in_place(tmp, target, force)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise OutputError(f"cannot write output file {shown(target)} ({e.strerror or e})") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _settle(tmp: str, target: Path) -> None:
    """Give the temporary file its final permissions and flush it to disk before the rename."""
    umask = os.umask(0)
    os.umask(umask)
    mode = target.stat().st_mode & 0o777 if target.exists() else 0o666 & ~umask
    os.chmod(tmp, mode)
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _put_in_place(tmp: str, target: Path, force: bool) -> None:
    if force:
        os.replace(tmp, target)
        return
    try:
        os.link(tmp, target)  # fails if `target` appeared since check_target
    except FileExistsError:
        raise UsageError(f"output file {shown(target)} exists; pass --force to overwrite it") from None
    except OSError as e:
        if e.errno not in _NO_HARD_LINKS:
            raise
        os.replace(tmp, target)  # a file system without hard links (FAT, some network mounts)
        return
    Path(tmp).unlink()


def atomic_write_text(path: str | os.PathLike[str], text: str, force: bool = False) -> None:
    """Write `text` to `path` atomically."""

    def write(tmp: str) -> None:
        Path(tmp).write_text(text, encoding="utf-8")

    atomic_write(path, write, force=force)

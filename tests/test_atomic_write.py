"""Nothing lost: an interrupted write leaves neither a partial file nor a temporary one."""

from __future__ import annotations

import errno
import os
import re
import stat
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gradtwin import data as datasets
from gradtwin.cli import main
from gradtwin.cli.files import atomic_write, atomic_write_text
from gradtwin.errors import OutputError, UsageError

TRAIN = ["train", "--data", "synthetic", "--n", "20", "--iterations", "30"]


def _half_then(exc: BaseException) -> Any:
    """A writer that writes part of its file, then fails as `exc` does."""

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write("iteration,w,b,loss\n0,1.0,")
            f.flush()
            raise exc

    return write


@pytest.mark.parametrize(
    ("exc", "caught"),
    [
        (RuntimeError("boom"), RuntimeError),
        (KeyboardInterrupt(), KeyboardInterrupt),
        (OSError(errno.ENOSPC, "No space left on device"), OutputError),
    ],
)
@pytest.mark.parametrize("existing", [None, "the old results\n"])
def test_an_interrupted_write_leaves_the_folder_as_it_was(
    tmp_path: Path, exc: BaseException, caught: type[BaseException], existing: str | None
) -> None:
    target = tmp_path / "h.csv"
    if existing is not None:
        target.write_text(existing, encoding="utf-8")
    with pytest.raises(caught):
        atomic_write(target, _half_then(exc), force=True)
    assert [p.name for p in tmp_path.iterdir()] == ([] if existing is None else ["h.csv"])
    if existing is not None:
        assert target.read_text(encoding="utf-8") == existing


def test_an_existing_file_is_kept_without_force_and_the_writer_never_runs(tmp_path: Path) -> None:
    target = tmp_path / "h.csv"
    target.write_text("keep", encoding="utf-8")
    calls = []
    with pytest.raises(UsageError, match=r"exists; pass --force to overwrite it"):
        atomic_write(target, calls.append)
    assert calls == [] and target.read_text(encoding="utf-8") == "keep"
    assert [p.name for p in tmp_path.iterdir()] == ["h.csv"]


def test_a_file_that_appears_during_the_write_is_not_clobbered(tmp_path: Path) -> None:
    """The existence check and the rename are apart in time; linking into place closes that gap."""
    target = tmp_path / "h.csv"

    def write(tmp: str) -> None:
        Path(tmp).write_text("ours", encoding="utf-8")
        target.write_text("someone else's", encoding="utf-8")

    with pytest.raises(UsageError, match=r"exists; pass --force"):
        atomic_write(target, write)
    assert target.read_text(encoding="utf-8") == "someone else's"
    assert [p.name for p in tmp_path.iterdir()] == ["h.csv"]


def test_force_replaces_a_file_and_keeps_its_permissions(tmp_path: Path) -> None:
    target = tmp_path / "h.txt"
    target.write_text("old", encoding="utf-8")
    target.chmod(0o640)
    atomic_write_text(target, "new", force=True)
    assert target.read_text(encoding="utf-8") == "new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["h.txt"]


def test_a_new_file_gets_the_permissions_of_a_plain_open(tmp_path: Path) -> None:
    """mkstemp makes 0600 files; the finished file must not stay private by accident."""
    umask = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
        with open(tmp_path / "b.txt", "w", encoding="utf-8") as f:
            f.write("x")
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == stat.S_IMODE((tmp_path / "b.txt").stat().st_mode)


def test_history_written_by_the_cli_reads_back_through_load_csv(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main([*TRAIN, "--history", "h.csv", "--json"]) == 0
    capsys.readouterr()
    history = datasets.load_csv("h.csv", x="iteration", y="loss", header="yes")
    np.testing.assert_array_equal(history.X, np.arange(31.0))
    assert np.all(np.diff(history.Y) <= 0), "gradient descent at a stable lr lowers the loss every step"
    assert [p.name for p in tmp_path.iterdir()] == ["h.csv"]


def test_the_cli_refuses_an_existing_history_before_it_trains(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "h.csv").write_text("keep", encoding="utf-8")

    def no_training(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("trained although the output could never be written")

    monkeypatch.setattr("gradtwin.cli.commands.train", no_training)
    assert main([*TRAIN, "--history", "h.csv"]) == 2
    assert "exists; pass --force" in capsys.readouterr().err
    assert (tmp_path / "h.csv").read_text(encoding="utf-8") == "keep"


@pytest.mark.parametrize("force", [False, True])
def test_ctrl_c_during_the_history_write_leaves_nothing_half_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], force: bool
) -> None:
    """Interrupted after the rows are written but before the file is in place."""
    monkeypatch.chdir(tmp_path)
    if force:
        (tmp_path / "h.csv").write_text("old", encoding="utf-8")

    def interrupted(fd: int) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupted)
    assert main([*TRAIN, "--history", "h.csv", *(["--force"] if force else [])]) == 130
    assert capsys.readouterr().err == "gradtwin: interrupted\n"
    assert [p.name for p in tmp_path.iterdir()] == (["h.csv"] if force else [])
    if force:
        assert (tmp_path / "h.csv").read_text(encoding="utf-8") == "old"


def test_a_plot_that_fails_half_way_leaves_no_partial_png(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from matplotlib.figure import Figure

    def savefig_half(self: Figure, fname: str, **kwargs: Any) -> None:
        with open(fname, "wb") as f:
            f.write(b"\x89PNG\r\n\x1a\n half a picture")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(Figure, "savefig", savefig_half)
    code = main(["compare", "--data", "synthetic", "--n", "20", "--iterations", "5", "--plot", "p.png"])
    assert code == 1
    assert capsys.readouterr().err == "gradtwin: cannot write output file 'p.png' (No space left on device)\n"
    assert list(tmp_path.iterdir()) == []


def test_a_plot_is_written_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["compare", "--data", "synthetic", "--n", "20", "--iterations", "5", "--plot", "p.png"]) == 0
    assert (tmp_path / "p.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert [p.name for p in tmp_path.iterdir()] == ["p.png"]


WRITES = re.compile(
    r"\bopen\([^)]*[\"'][wax]b?\+?[\"']|\.(write_text|write_bytes|savefig|savetxt|savez)\(|\b(np|numpy|torch)\.save\("
)


def test_every_file_gradtwin_writes_goes_through_atomic_write() -> None:
    """Each place in src/ that writes a file writes the temporary file atomic_write hands it (`tmp`)."""
    src = Path(__file__).resolve().parents[1] / "src" / "gradtwin"
    sites = [
        (path.relative_to(src), number, line.strip())
        for path in sorted(src.rglob("*.py"))
        if path.name != "files.py"
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if WRITES.search(line)
    ]
    assert sites, "the pattern no longer finds the history and plot writers"
    direct = [site for site in sites if "tmp" not in site[2]]
    assert direct == [], f"files written without atomic_write: {direct}"

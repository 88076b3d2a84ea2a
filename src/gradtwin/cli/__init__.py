"""The command line: `gradtwin compare | train | sweep | check | list`; every expected error is one line."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence

import numpy as np

from gradtwin.cli.commands import cmd_check, cmd_compare, cmd_explain, cmd_list, cmd_sweep, cmd_train
from gradtwin.cli.parser import build_parser, one_line
from gradtwin.errors import DivergedError, GradtwinError
from gradtwin.training import distributed


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; every expected failure is one line on stderr and an exit code:
    2 a bad option, 1 bad data or an unwritable output, 3 a diverged run, 130 Ctrl-C.

    Run as a program (argv None) in a process of a data-parallel run (WORLD_SIZE in the
    environment, set by `--nproc`'s launcher or by torchrun), this never returns: the process
    ends with the exit code through `distributed.run_worker`, which skips the interpreter's
    teardown (seconds to minutes after torch, scikit-learn and SciPy).
    """
    if argv is None and "WORLD_SIZE" in os.environ:
        distributed.run_worker(_main, None)
    return _main(argv)


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse's own exit (--help, or a bad option already reported)
        return 0 if e.code is None else e.code if isinstance(e.code, int) else 2
    try:
        # NumPy's overflow warnings would add lines to stderr; every result is checked for
        # finiteness where it matters (divergence, data), so they say nothing new.
        with np.errstate(all="ignore"):
            if args.command in ("check", "list", "sweep", "explain"):
                return {"check": cmd_check, "list": cmd_list, "sweep": cmd_sweep, "explain": cmd_explain}[args.command](
                    args
                )
            return {"compare": cmd_compare, "train": cmd_train}[args.command](args, argv)
    except GradtwinError as e:
        rank = _rank()
        if rank == 0:
            print(f"gradtwin: {one_line(str(e))}", file=sys.stderr)
        elif not isinstance(e, DivergedError | distributed.TooFewRows):  # those are the same on every process
            print(f"gradtwin (process {rank}): {one_line(str(e))}", file=sys.stderr)
        else:
            _let_process_0_report()
        return e.exit_code
    except MemoryError:
        print(
            "gradtwin: out of memory; try a smaller data set, fewer iterations or a larger --record-every",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        if _rank() == 0:  # the launcher passes Ctrl-C on to every process: one says so
            print("gradtwin: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # stdout closed early (| head): stop quietly, as other tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


REPORT_WAIT = 10.0  # seconds a process waits for process 0 to report an error for all (see below)


def _rank() -> int:
    """This process's rank: the group's, else RANK as the launcher set it (an error may come before setup)."""
    if distributed.world_size() > 1:
        return distributed.rank()
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


def _let_process_0_report() -> None:
    """Wait (bounded) before leaving with an error that process 0 reports for all (a divergence, too few rows).

    The launcher stops every process once one has failed; a process that left first with
    the same error could get process 0 stopped before it printed the one line. Process 0
    fails with the same exit code right after, and the launcher (or torchrun) then stops this
    one; only a run without a launcher waits the whole REPORT_WAIT.
    """
    sys.stdout.flush()
    time.sleep(REPORT_WAIT)


if __name__ == "__main__":
    sys.exit(main())

"""The command line: `gradtwin compare | train | sweep | check | list`; every expected error is one line."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

import numpy as np

from gradtwin.cli.commands import cmd_check, cmd_compare, cmd_list, cmd_sweep, cmd_train
from gradtwin.cli.parser import build_parser, one_line
from gradtwin.errors import DivergedError, GradtwinError
from gradtwin.training import distributed


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; every expected failure is one line on stderr and an exit code:
    2 a bad option, 1 bad data or an unwritable output, 3 a diverged run, 130 Ctrl-C.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse's own exit (--help, or a bad option already reported)
        return 0 if e.code is None else e.code if isinstance(e.code, int) else 2
    try:
        # NumPy's overflow warnings would add lines to stderr; every result is checked for
        # finiteness where it matters (divergence, data), so they say nothing new.
        with np.errstate(all="ignore"):
            if args.command in ("check", "list", "sweep"):
                return {"check": cmd_check, "list": cmd_list, "sweep": cmd_sweep}[args.command](args)
            return {"compare": cmd_compare, "train": cmd_train}[args.command](args, argv)
    except GradtwinError as e:
        if distributed.rank() == 0:
            print(f"gradtwin: {one_line(str(e))}", file=sys.stderr)
        elif not isinstance(e, DivergedError):  # a divergence is the same on every process
            print(f"gradtwin (process {distributed.rank()}): {one_line(str(e))}", file=sys.stderr)
        return e.exit_code
    except MemoryError:
        print(
            "gradtwin: out of memory; try a smaller data set, fewer iterations or a larger --record-every",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        print("gradtwin: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # stdout closed early (| head): stop quietly, as other tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())

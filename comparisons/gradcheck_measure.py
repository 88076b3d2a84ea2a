"""Measure the gradient checker: false failures on correct gradients, catch rate of planted bugs.

    .venv/bin/python comparisons/gradcheck_measure.py [--correct 10000] [--bugs 3000]

Runs the same hypothesis strategies and case functions as tests/test_gradcheck_measure.py,
with many more examples, counting outcomes instead of stopping at the first failure, and
writes comparisons/gradcheck_measure.txt.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

import torch  # noqa: E402
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402

from gradtwin.cli.files import atomic_write_text  # noqa: E402
from test_gradcheck_measure import bug_problems, correct_problems, run_bug, run_correct  # noqa: E402


def measure(strategy: Any, run: Any, dtype: str, examples: int, key: str) -> tuple[Counter[tuple[str, str]], list[str]]:
    """Counter of (group, right/wrong/n/a) over `examples` drawn cases, and the cases it got wrong.

    `run(case, dtype)` is True when the checker's verdict is right (a correct gradient passes,
    a planted bug is reported), False when wrong, None when the case does not apply.
    """
    counts: Counter[tuple[str, str]] = Counter()
    wrong: list[str] = []

    @settings(max_examples=examples, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck), derandomize=True)  # fmt: skip
    @given(strategy)
    def prop(case: dict[str, Any]) -> None:
        outcome = run(case, dtype)
        counts[(str(case[key]), {True: "right", False: "wrong", None: "n/a"}[outcome])] += 1
        if outcome is False:
            wrong.append(repr(case))

    prop()
    return counts, wrong


def section(title: str, counts: Counter[tuple[str, str]], right: str, wrong: str, cases: list[str]) -> list[str]:
    lines = [title, f"  {'case':<12}{'drawn':>8}{'n/a':>6}{right:>10}{wrong:>16}"]
    for g in sorted({g for g, _ in counts}):
        r, w, na = counts[(g, "right")], counts[(g, "wrong")], counts[(g, "n/a")]
        lines.append(f"  {g:<12}{r + w + na:>8}{na:>6}{r:>10}{w:>16}")
    total_right = sum(v for (_, o), v in counts.items() if o == "right")
    applicable = sum(v for (_, o), v in counts.items() if o != "n/a")
    lines.append(f"  {right}: {total_right} of {applicable} applicable; {wrong}: {applicable - total_right}")
    lines += [f"    {wrong}: {c}" for c in cases[:20]]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--correct", type=int, default=10_000, help="correct cases per dtype")
    parser.add_argument("--bugs", type=int, default=3_000, help="planted-bug cases per dtype")
    parser.add_argument("--out", default=str(HERE / "gradcheck_measure.txt"))
    args = parser.parse_args()
    torch.set_num_threads(1)  # tiny tensors: threads only contend
    lines = ["gradtwin check_gradients, measured (comparisons/gradcheck_measure.py)", ""]
    for dtype in ("float32", "float64"):
        start = time.perf_counter()
        counts, wrong = measure(correct_problems, run_correct, dtype, args.correct, "model")
        lines += section(f"{dtype}: correct hand gradients", counts, "passed", "false failures", wrong)
        counts, wrong = measure(bug_problems, run_bug, dtype, args.bugs, "bug")
        lines += section(f"{dtype}: planted bugs", counts, "caught", "missed", wrong)
        lines += [f"  ({time.perf_counter() - start:.0f} s)", ""]
        print("\n".join(lines), flush=True)
    atomic_write_text(args.out, "\n".join(lines) + "\n", force=True)


if __name__ == "__main__":
    main()

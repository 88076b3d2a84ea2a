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

from gradtwin.files import atomic_write_text  # noqa: E402
from test_gradcheck_measure import bug_problems, correct_problems, run_bug, run_correct  # noqa: E402


def measure(strategy: Any, run: Any, dtype: str, examples: int, key: str) -> tuple[Counter[tuple[str, str]], list[str]]:
    """Counter of (group, outcome) over `examples` drawn cases, and the failing cases."""
    counts: Counter[tuple[str, str]] = Counter()
    bad: list[str] = []

    @settings(max_examples=examples, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck), derandomize=True)  # fmt: skip
    @given(strategy)
    def prop(case: dict[str, Any]) -> None:
        outcome = run(case, dtype)
        label = {True: "pass", False: "fail", None: "n/a"}[outcome]
        counts[(str(case[key]), label)] += 1
        if outcome is False:
            bad.append(repr(case))

    prop()
    return counts, bad


def table(title: str, counts: Counter[tuple[str, str]], good: str) -> list[str]:
    groups = sorted({g for g, _ in counts})
    lines = [title, f"  {'case':<12}{'drawn':>8}{'n/a':>6}{good:>10}{'other':>8}"]
    for g in groups:
        ok, other, na = counts[(g, "pass")], counts[(g, "fail")], counts[(g, "n/a")]
        if good == "caught":
            ok, other = other, ok
        lines.append(f"  {g:<12}{ok + other + na:>8}{na:>6}{ok:>10}{other:>8}")
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
        counts, false_failures = measure(correct_problems, run_correct, dtype, args.correct, "model")
        total = sum(counts.values())
        lines += table(f"{dtype}: correct hand gradients, {total} cases (pass = no false failure)", counts, "pass")
        lines.append(f"  false failures: {len(false_failures)} of {total}")
        lines += [f"    {c}" for c in false_failures[:20]]
        # bug tests return True when the checker reports the bug
        counts, _ = measure(bug_problems, lambda c, d: None if (r := run_bug(c, d)) is None else not r,
                            dtype, args.bugs, "bug")  # fmt: skip
        applicable = sum(v for (g, o), v in counts.items() if o != "n/a")
        caught = sum(v for (g, o), v in counts.items() if o == "fail")
        lines += table(f"{dtype}: planted bugs, {sum(counts.values())} cases", counts, "caught")
        lines.append(f"  caught {caught} of {applicable} applicable ({100.0 * caught / max(applicable, 1):.2f}%)")
        lines.append(f"  ({time.perf_counter() - start:.0f} s)")
        lines.append("")
        print("\n".join(lines), flush=True)
    atomic_write_text(args.out, "\n".join(lines) + "\n", force=True)


if __name__ == "__main__":
    main()

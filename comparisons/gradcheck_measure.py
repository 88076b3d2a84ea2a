"""Measure the gradient checker: false failures on correct gradients, catch rate of planted bugs.

    .venv/bin/python comparisons/gradcheck_measure.py             # all of it: about 40 min on 2 cores
    options: --parts small,large,bounds  --dtypes float64,float32,float16,bfloat16
             --methods exhaustive,sampled  --correct 10000 --bugs 3000 (per dtype and method)
             --large-sizes 1e4,1e5,1e6  --large-dtypes float32,float64
             --large-seeds 10  --large-seeds-1e6 5  --out FILE

small   the hypothesis strategies and case functions of tests/test_gradcheck_measure.py, with
        many more examples, counting outcomes instead of stopping at the first failure, per
        dtype and method (the same derandomized draws for each). float16 hand gradients are the
        NumPy ones run in float16; bfloat16 ones their torch twins (gradcheck_cases.*_grad_torch).
large   a tanh network with cross-entropy and softmax regression at about 10^4, 10^5 and 10^6
        parameter elements (gradcheck_cases.LARGE_SHAPES), NumPy hand gradients, method 'auto'
        (sampled there), per seed: the correct gradient and each bug of gradcheck_cases.LARGE_BUGS
        (one element x2, one element + 1 % of max |g|, a row off by one, a 16 x 16 block zeroed,
        every sign, one parameter x2), at a place drawn from the seed, which also seeds the check.
bounds  per dtype, the K (summed terms) from which 2 gamma(K) >= 1: there the tolerance of the
        dtype's own comparisons exceeds the gradient and no wrong gradient can be told in it.

Applicable (the rule of tests/test_gradcheck_measure.py): a planted bug applies when it moves some
element by more than the tolerance of a check of the report that compares that element, as the
checker itself computed it in that run (recorded per element, not recomputed): the hand gradient
in the checked dtype vs autograd (2 gamma S) and vs float64 (gamma S + gamma_64 S); the hand code
run again in float64 vs autograd float64 (2 gamma_64 S, where the report has that row), vs finite
differences at the elements differenced (their bound as first computed from the loss, before the
kink probe re-estimates it at suspects, + gamma_64 S), and projected on the sampled method's random
direction vs that check's tolerance. Below all of them no check can tell the bug from rounding: n/a
(the checker may still fail it: 'n/a caught'). 'seen in dtype' counts the applicable bugs that the
dtype's own comparisons see. In float16 and bfloat16, a case the checker refuses (the loss
overflows the dtype) and one whose hand or autograd gradient in the dtype is not finite ('out of
range': an overflow; the checker fails it) are counted apart. '2g>=1': cases at a K where the
dtype's bound is meaningless (see 'bounds'). Writes comparisons/gradcheck_measure.txt.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import time
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

import torch  # noqa: E402
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402

import gradcheck_cases as cases  # noqa: E402
from gradtwin.cli.files import atomic_write_text  # noqa: E402
from gradtwin.cli.progress import progress_bar  # noqa: E402
from gradtwin.parity.rounding import ROUNDING_OPS, rounding_bound  # noqa: E402
from test_gradcheck_measure import Outcome, bug_problems, correct_problems, judge_bug, judge_correct, judge_large  # noqa: E402

DTYPES = ("float64", "float32", "float16", "bfloat16")
METHODS = ("exhaustive", "sampled")
PARTS = ("small", "large", "bounds")
SIZES = ("1e4", "1e5", "1e6")
SHOWN = 20  # wrong cases listed per section

Tally = Counter[tuple[str, str]]


def measure(strategy: Any, judge: Callable[[dict[str, Any], str, str], Outcome], dtype: str, method: str,
            examples: int, key: str) -> tuple[Tally, list[str], list[str]]:  # fmt: skip
    """Tally of (group, category) over `examples` drawn cases; the wrong ones; a few out of range."""
    tally: Tally = Counter()
    wrong: list[str] = []
    odd: list[str] = []

    @settings(max_examples=examples, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck), derandomize=True)  # fmt: skip
    @given(strategy)
    def prop(case: dict[str, Any]) -> None:
        bar.update(1)
        outcome = judge(case, dtype, method)
        count(tally, str(case[key]), outcome)
        if outcome.right is False:
            seen = f"seen by {outcome.why}, move/tol {outcome.ratio:.3g}" if outcome.why else f"failed {outcome.detail}"
            wrong.append(f"{case!r}: {seen}")
        elif outcome.why in ("out of range", "refused") and sum(outcome.why in o for o in odd) < 2:
            odd.append(f"e.g. {outcome.why}: {case!r}: {outcome.detail[:160]}")

    label = f"{dtype} {method} {'bugs' if key == 'bug' else 'correct'}"
    with warnings.catch_warnings(), progress_bar(examples, label, unit="case") as bar:
        warnings.simplefilter("ignore", RuntimeWarning)  # float16 overflow in NumPy: counted, not printed
        prop()
    return tally, wrong, odd


def count(tally: Tally, group: str, o: Outcome) -> None:
    tally[(group, "drawn")] += 1
    tally[(group, "2g>=1")] += not o.meaningful
    if o.right is None:
        tally[(group, o.why)] += 1
        tally[(group, "n/a caught")] += o.why == "n/a" and o.caught
        return
    tally[(group, "right" if o.right else "wrong")] += 1
    tally[(group, "applicable")] += 1
    tally[(group, "seen in dtype")] += "dtype" in o.why or "shape" in o.why


CORRECT_COLUMNS = ("drawn", "2g>=1", "refused", "out of range", "right", "wrong")
BUG_COLUMNS = ("drawn", "2g>=1", "refused", "out of range", "n/a", "n/a caught", "applicable", "seen in dtype",
               "right", "wrong")  # fmt: skip
TITLES = {"right": ("passed", "caught"), "wrong": ("false failures", "missed")}


def table(title: str, tally: Tally, bugs: bool, wrong: list[str], odd: list[str], seconds: float) -> list[str]:
    columns = BUG_COLUMNS if bugs else CORRECT_COLUMNS
    heads = [TITLES[c][bugs] if c in TITLES else c for c in columns]
    widths = [max(len(h), 6) + 2 for h in heads]
    head = "".join(h.rjust(w) for h, w in zip(heads, widths, strict=True))
    lines = [f"{title}  ({seconds:.0f} s)", f"  {'case':<16}{head}"]
    groups = sorted({g for g, _ in tally})
    for g in [*groups, "all"]:
        row = [sum(tally[(h, c)] for h in groups) if g == "all" else tally[(g, c)] for c in columns]
        lines.append("  " + f"{g:<16}" + "".join(str(v).rjust(w) for v, w in zip(row, widths, strict=True)))
    right = sum(tally[(g, "right")] for g in groups)
    applicable = right + sum(tally[(g, "wrong")] for g in groups)
    good, bad = TITLES["right"][bugs], TITLES["wrong"][bugs]
    lines.append(f"  {good}: {right} of {applicable} applicable; {bad}: {applicable - right}")
    lines += [f"    {TITLES['wrong'][bugs]}: {c}" for c in wrong[:SHOWN]]
    lines += [f"    {c}" for c in odd]
    return lines


def small(args: argparse.Namespace, out: list[str]) -> list[str]:
    summary = []
    for dtype in args.dtypes:
        for method in args.methods:
            for bugs, strategy, judge, n, key in ((False, correct_problems, judge_correct, args.correct, "model"),
                                                  (True, bug_problems, judge_bug, args.bugs, "bug")):  # fmt: skip
                start = time.perf_counter()
                tally, wrong, odd = measure(strategy, judge, dtype, method, n, key)
                seconds = time.perf_counter() - start
                what = "planted bugs" if bugs else "correct hand gradients"
                out += [*table(f"{dtype}, {method}: {what}", tally, bugs, wrong, odd, seconds), ""]
                emit(args, out)
                summary.append(summary_row(f"small {dtype} {method}", what, tally, seconds))
    return summary


def large(args: argparse.Namespace, out: list[str]) -> list[str]:
    summary = []
    for size in args.large_sizes:
        for model in cases.LARGE_MODELS:
            for dtype in args.large_dtypes:
                seeds = args.large_seeds_1e6 if size == "1e6" else args.large_seeds
                lines, rows = large_section(model, size, dtype, seeds)
                out += lines
                summary += rows
                emit(args, out)
    return summary


def large_section(model: str, size: str, dtype: str, seeds: int) -> tuple[list[str], list[str]]:
    """One model, size and dtype over `seeds` seeds: the correct gradient and every bug."""
    n, d, h, c = cases.LARGE_SHAPES[(model, size)]
    params = d * h + h + h * c + c if h else d * c + c
    tally: Tally = Counter()
    right: Tally = Counter()
    wrong: list[str] = []
    below: list[str] = []
    times: list[float] = []
    start = time.perf_counter()
    bar = progress_bar(seeds * (1 + len(cases.LARGE_BUGS)), f"large {model} {size} {dtype}", unit="check")
    for seed in range(seeds):
        for bug in (None, *cases.LARGE_BUGS):
            t0 = time.perf_counter()
            outcome, where = judge_large(model, size, dtype, seed, bug)
            bar.update(1)
            times.append(time.perf_counter() - t0)
            count(right if bug is None else tally, bug or "correct", outcome)
            what = f"{bug or 'correct'}, seed {seed}, {where or '-'}"
            if outcome.right is False:
                seen = f"seen by {outcome.why}, move/tol {outcome.ratio:.3g}" if outcome.why else "failed"
                wrong.append(f"{what}: {seen}: {outcome.detail}")
            elif outcome.why == "n/a":
                caught = "caught anyway" if outcome.caught else "passed"
                below.append(f"n/a: {what}: largest move/tol {outcome.ratio:.3g}, {caught}")
    bar.close()
    seconds = time.perf_counter() - start
    shape = f"{d}-{h}-{c}" if h else f"{d}-{c}"
    title = (
        f"large {model} {shape}, n={n} ({params:,} parameters), {dtype}, {seeds} seeds; "
        f"per check {sum(times) / len(times):.2f} s mean, {max(times):.2f} s max"
    )
    passed, drawn = right[("correct", "right")], right[("correct", "drawn")]
    lines = [
        *table(title, tally, True, wrong, below, seconds),
        f"  correct gradients: passed {passed} of {drawn}; false failures: {drawn - passed}",
        "",
    ]
    name = f"large {model} {size} {dtype}"
    return lines, [
        summary_row(name, "correct hand gradients", right, 0.0),
        summary_row(name, "planted bugs", tally, seconds),
    ]


def bounds(out: list[str]) -> None:
    """K from which 2 gamma(K) >= 1 (the checker's K: summed terms, before ROUNDING_OPS)."""
    out.append("K from which 2 gamma(K) >= 1 (the dtype's own comparisons then tell nothing), by outputs checked")
    outputs = (10, 1_000, 1_000_000)
    out.append("  " + f"{'dtype':<10}" + "".join(f"{f'{o:,} outputs':>18}" for o in outputs))
    for dtype in DTYPES:
        row = [first_meaningless(dtype, o) for o in outputs]
        out.append("  " + f"{dtype:<10}" + "".join(f"{f'{k:,}' if k < 10**7 else f'{k:.2e}':>18}" for k in row))
    out.append("")


def first_meaningless(dtype: str, outputs: int) -> int:
    def over(K: int) -> bool:
        return 2 * rounding_bound(dtype, K + ROUNDING_OPS, outputs=outputs).gamma >= 1.0

    lo, hi = 1, 2
    while not over(hi):
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if over(mid) else (mid, hi)
    return hi


def summary_row(section: str, what: str, tally: Tally, seconds: float) -> str:
    def total(c: str) -> int:
        return sum(v for (_, k), v in tally.items() if k == c)

    applicable = total("right") + total("wrong")
    took = f"{seconds:>9.0f}" if seconds else f"{'(above)':>9}"
    return f"  {section:<34}{what:<24}{total('drawn'):>8}{applicable:>12}{total('wrong'):>8}{took}"


def emit(args: argparse.Namespace, out: list[str]) -> None:
    print("\n".join(out[args.printed :]), flush=True)
    args.printed = len(out)
    atomic_write_text(args.out, "\n".join(out) + "\n", force=True)


def choices(allowed: tuple[str, ...], what: str) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        picked = [t.strip() for t in text.split(",") if t.strip()]
        bad = [t for t in picked if t not in allowed]
        if bad or not picked:
            raise argparse.ArgumentTypeError(f"{what} must be a comma list of {', '.join(allowed)}; got {text!r}")
        return picked

    return parse


def version() -> str:
    """The commit, and a digest of the checker's sources as they are now (they may be uncommitted)."""
    root = HERE.parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                              check=True).stdout.strip()  # fmt: skip
        dirty = subprocess.run(["git", "status", "--porcelain", "src"], cwd=root, capture_output=True, text=True,
                               check=True).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        head, dirty = "unknown", ""
    digest = hashlib.sha256()
    for f in sorted((root / "src" / "gradtwin" / "parity").glob("*.py")):
        digest.update(f.read_bytes())
    changes = " + uncommitted src changes" if dirty else ""
    return f"commit {head}{changes}; src/gradtwin/parity sha256 {digest.hexdigest()[:12]}"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--parts", type=choices(PARTS, "--parts"), default=list(PARTS))
    parser.add_argument("--dtypes", type=choices(DTYPES, "--dtypes"), default=list(DTYPES))
    parser.add_argument("--methods", type=choices(METHODS, "--methods"), default=list(METHODS))
    parser.add_argument("--correct", type=int, default=10_000, help="correct cases per dtype and method")
    parser.add_argument("--bugs", type=int, default=3_000, help="planted-bug cases per dtype and method")
    parser.add_argument("--large-sizes", type=choices(SIZES, "--large-sizes"), default=list(SIZES))
    parser.add_argument("--large-dtypes", type=choices(("float32", "float64"), "--large-dtypes"),
                        default=["float32", "float64"])  # fmt: skip
    parser.add_argument("--large-seeds", type=int, default=10, help="seeds per model, size and dtype")
    parser.add_argument("--large-seeds-1e6", type=int, default=5, help="the same at 1e6")
    parser.add_argument("--out", default=str(HERE / "gradcheck_measure.txt"))
    args = parser.parse_args()
    for flag in ("correct", "bugs", "large_seeds", "large_seeds_1e6"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')} must be at least 1; got {getattr(args, flag)}")
    args.printed = 0
    torch.set_num_threads(1)  # small tensors: threads only contend; and the machine is shared
    at_start = version()
    command = " ".join(["comparisons/gradcheck_measure.py", *sys.argv[1:]])
    out = ["gradtwin check_gradients, measured (comparisons/gradcheck_measure.py)", f"command: {command}",
           at_start, f"torch {torch.__version__}, 1 thread", ""]  # fmt: skip
    start = time.perf_counter()
    summary: list[str] = []
    if "bounds" in args.parts:
        bounds(out)
    if "small" in args.parts:
        summary += small(args, out)
    if "large" in args.parts:
        summary += large(args, out)
    out += ["summary (applicable: correct cases and bugs a check can see; wrong: false failures and misses)",
            f"  {'section':<34}{'cases':<24}{'drawn':>8}{'applicable':>12}{'wrong':>8}{'seconds':>9}",
            *summary, f"  total {time.perf_counter() - start:.0f} s", ""]  # fmt: skip
    if version() != at_start:
        out += [f"note: the run used the sources as imported at its start; on disk they are now {version()}", ""]
    emit(args, out)


if __name__ == "__main__":
    main()

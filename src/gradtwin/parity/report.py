"""The gradient checker's report: one row per parameter, its worst element, and the story of a mismatch."""

from __future__ import annotations

from dataclasses import dataclass, field

from gradtwin.parity.compare import JsonReport, ParamCheck, fixed_width
from gradtwin.steps.compare import StepsReport

SHOWN = 5  # worst elements listed per parameter that disagrees


@dataclass
class Element:
    """One element of a gradient: where, the two values compared, their error and its tolerance."""

    index: tuple[int, ...]
    a: float  # the two sides of the worst comparison, e.g. hand and autograd
    b: float
    err: float
    tol: float


@dataclass
class ParamReport:
    """One parameter: its worst element over every comparison and what explains a mismatch.

    Every number of the row belongs to `worst_index` in `comparison`: abs_err = |a - b| there
    and tol its tolerance there, so ok is False exactly when some abs_err > tol (or a shape
    is transposed). rel_err is abs_err over max |reference| of the whole tensor, the
    gradient's own scale, so that a near-zero element does not print 1e+08.
    """

    name: str
    shape: tuple[int, ...]
    ok: bool
    worst_index: tuple[int, ...]
    hand: float  # the hand-derived gradient there, in the checked dtype
    autograd: float  # autograd there, in the checked dtype
    finite_diff: float  # central differences in float64 there (nan where not differenced)
    abs_err: float
    rel_err: float
    tol: float
    comparison: str  # the comparison that holds the worst element
    diagnosis: str | None = None
    checks: list[ParamCheck] = field(default_factory=list)
    size: int = 0
    n_bad: int = 0  # elements that fail an elementwise comparison
    worst: list[Element] = field(default_factory=list)  # the SHOWN worst, when some disagree

    def where(self) -> str:
        if "direction" in self.comparison:
            return "random direction"
        return str(list(self.worst_index))


@dataclass
class GradientReport(JsonReport):
    """The whole check: one ParamReport per parameter, the forward value if given, and notes."""

    ok: bool
    dtype: str
    device: str
    params: list[ParamReport]
    loss: list[ParamCheck]
    diagnoses: list[str]
    notes: list[str]
    method: str = "exhaustive"
    directions: list[ParamCheck] = field(default_factory=list)  # the sampled method's projections of all
    steps: StepsReport | None = None  # the tapped intermediates, from the loss back (None: torch_loss taps none)

    def checks(self) -> list[ParamCheck]:
        """Every comparison made: the loss first, then each parameter's, then the projections of all."""
        return [*self.loss, *(c for p in self.params for c in p.checks), *self.directions]

    def table(self) -> str:
        """The report as a fixed-width table with the diagnoses below it."""
        header = ("param", "ok", "worst at", "hand", "autograd", "finite diff", "abs err", "rel err", "tolerance")
        rows = [
            (
                p.name,
                "yes" if p.ok else "NO",
                p.where(),
                f"{p.hand:.9g}",
                f"{p.autograd:.9g}",
                f"{p.finite_diff:.9g}" if p.finite_diff == p.finite_diff else "-",
                f"{p.abs_err:.3g}",
                f"{p.rel_err:.3g}",
                f"{p.tol:.3g}",
            )
            for p in self.params
        ]
        rows += [(f"loss ({c.comparison})", "yes" if c.ok else "NO", "-", f"{c.a:.9g}", f"{c.b:.9g}", "-",
                  f"{c.worst_err:.3g}", f"{c.max_rel_err:.3g}", f"{c.tol:.3g}") for c in self.loss]  # fmt: skip
        rows += [(f"all ({c.comparison.split(' float64')[0]}, along d)", "yes" if c.ok else "NO", "random direction",
                  f"{c.a:.9g}", "-", f"{c.b:.9g}", f"{c.worst_err:.3g}", f"{_relative(c):.3g}", f"{c.tol:.3g}")
                 for c in self.directions]  # fmt: skip
        lines = [f"gradient check, {self.dtype} on {self.device}: {'all agree' if self.ok else 'MISMATCH'}"]
        lines += fixed_width(header, rows)
        if self.steps is not None:
            lines += _steps_lines(self.steps)
        for p in self.params:
            if not p.ok:
                lines.append(f"{p.name}: worst in {p.comparison}; {p.diagnosis}")
                lines += _worst_lines(p)
        lines += self.diagnoses
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)

    __str__ = table


def _steps_lines(steps: StepsReport) -> list[str]:
    """The intermediates in graph order (from the loss back to the parameters), then the first wrong step."""
    header = ("step", "ok", "shape", "worst at", "hand", "autograd", "abs err", "rel err", "tolerance")
    lines = [f"steps from the loss back: {'all agree' if steps.ok else 'MISMATCH'}"]
    if steps.steps:
        lines += fixed_width(header, steps.rows())
    return lines + steps.explanations()


def _worst_lines(p: ParamReport) -> list[str]:
    """For a tensor that disagrees: how many elements, and the worst few (not thousands of rows)."""
    if p.size <= 1 or not p.worst:
        return []
    share = 100.0 * p.n_bad / p.size
    lines = [f"  {p.n_bad} of {p.size} elements of {p.name} disagree ({share:.3g} %); worst in {p.comparison}:"]
    lines += [f"    {list(e.index)}: {e.a:.9g} vs {e.b:.9g}, err {e.err:.3g}, tolerance {e.tol:.3g}" for e in p.worst]
    return lines


def _relative(c: ParamCheck) -> float:
    """|a - b| against the larger of the two: a projection near zero must not print 1e+296."""
    big = max(abs(c.a), abs(c.b))
    return c.worst_err / big if big > 0 else 0.0

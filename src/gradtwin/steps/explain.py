"""`explain`: a built-in model's hand backward pass, step by step, beside autograd's, and its first wrong step.

Every manual twin has `backward(params, X, Y) -> dict`: dL/d(name) of each named intermediate, from
the loss back, then of each parameter; its docstring's Chain:: block writes each step as a line
`dL/d<name> = ...`. The autograd twin taps the same intermediates (`gradtwin.steps.tap`), and the
parameters are tapped here, so that every step, parameters included, is held to the same rule
(`check_steps`: gamma * S, S from the Jacobian of each dL/dT, float64 on the cpu as the referee).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import torch

from gradtwin.autodiff import Tensor
from gradtwin.autodiff import graph as autodiff_graph
from gradtwin.devices import numpy_dtype, resolve_device, torch_dtype
from gradtwin.errors import UsageError
from gradtwin.models import MODELS, Model, get_model
from gradtwin.parity.compare import finite_or_none, fixed_width
from gradtwin.steps.compare import StepCheck, StepsReport, check_steps, parameter_sentence
from gradtwin.steps.tap import tap

ROWS = 32  # rows of the model's default data explained, drawn by the seed: enough to sum over, short to read
_LEAF = "param:"  # the parameters' keys inside the tapped loss, so that check_steps compares them as steps
_STEP = re.compile(r"dL/d([A-Za-z][A-Za-z0-9]*)(_[A-Za-z0-9{},]+)?\s*=\s*(.+)")
_NAMED = re.compile(r"dL/d([A-Za-z][A-Za-z0-9]*)")


@dataclass(frozen=True)
class GraphNode:
    """One node of the tape's graph: its op, shape and local derivative, and the step it is tapped as."""

    op: str
    shape: tuple[int, ...]
    deriv: str
    name: str | None  # the step's name where the twin taps the node (or the parameter it is)
    inputs: tuple[int, ...]  # the nodes it is computed from, by their position in the listing


@dataclass
class Explanation:
    """One model's backward pass at one seeded point: each step's check (`steps.steps`, from the loss back).

    parents: step -> the step its gradient is computed from, as its formula says (None: from the loss).
    first_wrong: the first step that disagrees, named with the step it comes from.
    """

    model: str
    data: str
    rows: int  # rows explained
    of: int  # rows in the data
    seed: int
    dtype: str
    device: str
    report: StepsReport
    parents: dict[str, str | None]
    first_wrong: str | None
    engine: str = "manual"  # the side held to autograd: the hand derivation, or gradtwin's own autodiff
    graph: list[GraphNode] = field(default_factory=list)  # the tape's recorded graph, backward order

    @property
    def ok(self) -> bool:
        return self.report.ok

    @property
    def steps(self) -> list[StepCheck]:
        return self.report.steps

    def header(self) -> str:
        side = "" if self.engine == "manual" else "; hand = gradtwin's own autodiff (tape)"
        return (
            f"{self.model} on {self.data}: {self.rows} of {self.of} rows drawn by seed {self.seed}, parameters "
            f"from seed {self.seed}; {self.dtype} on {self.device}; from the loss back to the parameters{side}"
        )

    def graph_table(self) -> str:
        """The tape's recorded graph in backward order: each node's op, shape, inputs, local derivative and step."""
        if not self.graph:
            return ""
        checked = {s.name: s for s in self.steps}
        rows = []
        for i, node in enumerate(self.graph):
            step = checked.get(node.name or "")
            verdict = "" if step is None else f"dL/d{node.name}: {'agrees' if step.ok else 'DIFFERS'}"
            inputs = ", ".join(f"#{j}" for j in node.inputs) or "-"
            rows.append((f"#{i}", node.op, str(node.shape), inputs, node.deriv or "-", verdict))
        head = ("node", "op", "shape", "from", "local derivative", "hand step of the same name")
        title = f"the tape's graph of {self.model}, from the loss back ({len(self.graph)} nodes):"
        return "\n".join([title, *fixed_width(head, rows)])

    def table(self) -> str:
        """The header, a row per step (formula, shape, norm and max |.| of both sides, error, tolerance, ok),
        the verdict."""
        head = ("step", "formula", "shape", "|hand|", "max|hand|", "|autograd|", "max|autograd|", "error", "tolerance",
                "ok")  # fmt: skip
        rows = [
            (
                f"dL/d{s.name}",
                (s.formula or "").split(" = ", 1)[-1],  # the step column names the left side
                str(tuple(s.shape)),
                f"{s.hand_norm:.6g}",
                f"{s.hand_max:.6g}",
                f"{s.autograd_norm:.6g}",
                f"{s.autograd_max:.6g}",
                f"{s.abs_err:.3g}",
                f"{s.tol:.3g}",
                "yes" if s.ok else "NO",
            )
            for s in self.steps
        ]
        lines = [self.header(), *fixed_width(head, rows)]
        lines.append(f"every step agrees ({len(self.steps)} steps)" if self.ok else str(self.first_wrong))
        lines += self.report.explanations()[1 if self.report.first_wrong else 0 :]  # the first: said above
        if self.graph:
            lines += ["", self.graph_table()]
        return "\n".join(lines)

    __str__ = table

    def to_dict(self) -> dict[str, Any]:
        steps = [{k: v for k, v in asdict(s).items() if k != "checks"} for s in self.steps]
        for s in steps:
            s["parent"] = self.parents.get(s["name"])
        out = {
            "model": self.model,
            "data": self.data,
            "rows": self.rows,
            "of": self.of,
            "seed": self.seed,
            "dtype": self.dtype,
            "device": self.device,
            "ok": self.ok,
            "first_wrong": self.first_wrong,
            "engine": self.engine,
            "steps": steps,
            "graph": [asdict(n) for n in self.graph],
            "notes": self.report.notes,
        }
        return finite_or_none(out)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False)


def chain_formulas(doc: str | None) -> dict[str, str]:
    """name -> the line `dL/d<name> = ...` of a docstring's Chain:: block, without its comment in (...).

    The block runs from `Chain::` to the next `Word::` heading or blank line; steps on one line are
    split at ';'.
    """
    text = doc or ""
    start = text.find("Chain::")
    if start < 0:
        return {}
    out: dict[str, str] = {}
    for line in text[start + len("Chain::") :].splitlines():
        if not line.strip() or re.match(r"\s*[A-Z][A-Za-z]*::", line):
            break
        for part in line.split(";"):
            found = _STEP.search(part.strip())
            if found:
                rhs = re.split(r"\s{2,}\(", found.group(3))[0].strip()
                out.setdefault(found.group(1), f"dL/d{found.group(1)}{found.group(2) or ''} = {rhs}")
    return out


def parents_of(order: list[str], formulas: Mapping[str, str]) -> dict[str, str | None]:
    """Each step's parent: the first earlier step its formula names (dL/dH = dL/dZ2 @ W2.T: Z2), else the
    previous intermediate (None for the first step: it comes from the loss)."""
    out: dict[str, str | None] = {}
    for i, name in enumerate(order):
        rhs = formulas.get(name, "").split("=", 1)[-1]
        named = [m for m in _NAMED.findall(rhs) if m in order[:i]]
        out[name] = named[0] if named else (order[i - 1] if i else None)
    return out


def explain(
    model: Model | str,
    seed: int = 0,
    dtype: str = "float64",
    device: str = "cpu",
    rows: int | None = ROWS,
    engine: str = "manual",
) -> Explanation:
    """Every step of `model`'s hand backward pass against autograd's, at seeded parameters and rows.

    The point: `model.init_params(data, seed)` on its default data (standardized), and `rows` of
    those data drawn without replacement by `seed` (None: all). The hand side runs in `dtype` on
    `device` (NumPy on the cpu, torch tensors without autograd elsewhere) and in float64 NumPy.
    engine="tape": the side held to autograd is the tape twin (gradtwin's own autodiff, NumPy on the
    cpu) instead, its dL/d(name) read from the nodes it taps; `graph` lists its recorded graph.
    """
    model = get_model(model) if isinstance(model, str) else model
    backward = getattr(model.manual, "backward", None)
    if backward is None:
        raise UsageError(f"explain needs a manual twin with backward(params, X, Y); model {model.name} has none")
    if engine not in ("manual", "tape"):
        raise UsageError(f"engine must be 'manual' or 'tape'; got {engine!r}")
    if engine == "tape" and model.tape is None:
        have = ", ".join(m.name for m in MODELS.values() if m.tape is not None)
        raise UsageError(f"explain --engine tape needs a model with a tape twin ({have}); got {model.name!r}")
    dev = resolve_device(device, dtype)
    if engine == "tape" and dev.type != "cpu":
        raise UsageError(f"the tape twin computes with NumPy on the cpu; got device {str(dev)!r}")
    data = model.default_data(True)
    params = {k: np.asarray(v, dtype=np.float64) for k, v in model.init_params(data, seed).items()}
    take = data.n if rows is None else min(int(rows), data.n)
    if take < 1:
        raise UsageError(f"rows must be a whole number >= 1; got {rows!r}")
    index = np.sort(np.random.default_rng(seed).choice(data.n, size=take, replace=False))
    X, Y = np.asarray(data.X)[index], np.asarray(data.Y)[index]
    hand64 = dict(backward(params, X, Y))
    nodes: list[GraphNode] = []
    if engine == "tape":
        hand64, nodes = _tape_steps(model, list(hand64), params, X, Y, "float64")
        hand = hand64 if dtype == "float64" else _tape_steps(model, list(hand64), params, X, Y, dtype)[0]
    else:
        hand = hand64 if dtype == "float64" and dev.type == "cpu" else _hand_in(backward, params, X, Y, dtype, dev)
    formulas = chain_formulas(backward.__doc__)
    report = check_steps(
        hand,
        hand64,
        _tapping(model.autograd.loss, [k for k in reversed(hand64) if k in params]),
        {_LEAF + k: v for k, v in params.items()},
        (X, Y),
        dtype=dtype,
        device=dev,
        formulas=formulas,
        samples=take,
    )
    graph = [s.name for s in report.steps]
    parents = parents_of(graph, formulas)
    wrong = next((s.name for s in report.steps if not s.ok), None)
    first = None if wrong is None else parameter_sentence(wrong, parents[wrong])
    report = replace(report, first_wrong=first, after={k: parents[k] for k in params if k in parents})
    return Explanation(
        model.name, data.name, take, data.n, seed, dtype, str(dev), report, parents, first, engine, nodes
    )


def _tape_steps(
    model: Model, order: list[str], params: Mapping[str, np.ndarray], X: np.ndarray, Y: np.ndarray, dtype: str
) -> tuple[dict[str, np.ndarray], list[GraphNode]]:
    """The tape twin's dL/d(name) of each step in `order` that it taps (and of each parameter), in `dtype`,
    and its recorded graph in backward order."""
    dt = numpy_dtype(dtype)
    leaves = {k: Tensor(np.asarray(v, dtype=dt), requires_grad=True, name=k) for k, v in params.items()}
    y = Y if np.issubdtype(Y.dtype, np.integer) else Y.astype(dt)
    loss = model.tape.loss(leaves, X.astype(dt), y)  # type: ignore[union-attr]
    nodes = autodiff_graph(loss)
    loss.backward()
    position = {id(n): i for i, n in enumerate(nodes)}
    listing = [
        GraphNode(n.op, n.shape, n.deriv, n.name, tuple(position[id(p)] for p in n.parents if id(p) in position))
        for n in nodes
    ]
    grads = {n.name: n.grad for n in nodes if n.name is not None and n.grad is not None}
    return {k: grads[k] for k in order if k in grads}, listing


def _hand_in(
    backward: Callable[..., Any], params: Mapping[str, np.ndarray], X: np.ndarray, Y: np.ndarray, dtype: str,
    device: torch.device,
) -> dict[str, Any]:  # fmt: skip
    """The hand backward in `dtype`: NumPy on the cpu, torch tensors (no autograd) elsewhere."""
    if device.type == "cpu":
        dt = numpy_dtype(dtype)
        y = Y if np.issubdtype(Y.dtype, np.integer) else Y.astype(dt)
        return dict(backward({k: v.astype(dt) for k, v in params.items()}, X.astype(dt), y))
    tdt = torch_dtype(dtype)

    def on(a: np.ndarray) -> torch.Tensor:
        kind = torch.int64 if np.issubdtype(a.dtype, np.integer) else tdt
        return torch.as_tensor(a).to(device=device, dtype=kind)

    with torch.no_grad():
        return dict(backward({k: on(v) for k, v in params.items()}, on(X), on(Y)))


def _tapping(loss: Callable[..., torch.Tensor], taps: list[str]) -> Callable[..., torch.Tensor]:
    """The autograd twin's loss with its parameters tapped too (first, so that they come last from the loss
    back, in `taps`' reverse order)."""

    def tapped(leaves: Mapping[str, torch.Tensor], X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
        p = {k.removeprefix(_LEAF): v for k, v in leaves.items()}
        for name in taps:
            p[name] = tap(name, p[name])  # a tap may return another tensor: use what it returns
        return loss(p, X, Y)

    return tapped

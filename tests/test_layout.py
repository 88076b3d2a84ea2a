"""The house: imports run one way through the layers, in no circle, and each twin holds only its derivation.

The import graph is read from the source (every `import` and `from ... import`, inside functions
too), so a lazy import cannot hide a dependency.
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

from gradtwin.models import MODELS

SRC = Path(__file__).resolve().parents[1] / "src" / "gradtwin"

# Lowest first. A module may import from its own layer and the layers below, never above.
LAYERS = [
    ("errors", "validate", "devices", "autodiff"),  # autodiff: gradtwin's own engine, below its twins as torch is
    ("manual", "autograd", "tape"),  # tape: the third twins, on gradtwin.autodiff
    ("data",),
    ("models", "model_file"),  # model_file: a Model from a user's file, beside the registry
    # steps: the step-by-step view, beside the checker that uses it; sampling: text drawn from a trained model
    ("training", "parity", "steps", "layers", "sampling"),
    ("estimators", "cli"),
    ("__init__", "__main__"),
]
APART = [("training", "parity"), ("training", "steps")]  # neither may import the other's insides
FAMILIES = sorted({m.family for m in MODELS.values()})
TWIN_NAMES = ("predict", "loss", "gradients")


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(SRC.rglob("*.py"))}


def _imports(source: str, modules: dict[str, Path]) -> set[str]:
    """The gradtwin modules `source` imports (a `from pkg import sub` names the submodule itself)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "gradtwin"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "gradtwin":
            subs = {f"{node.module}.{a.name}" for a in node.names} & set(modules)
            found |= subs or {node.module}
    return found


def _room(module: str) -> str:
    """The top-level room of a module: 'training' for gradtwin.training.loop, '__init__' for gradtwin."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


# gradtwin.steps.tap imports only torch and errors, and the autograd twins mark their intermediates with it
# (an identity outside `recording()`): it sits with the twins, below the rest of its room.
TWIN_LEVEL = {"gradtwin.steps.tap": 1}


# the layers' twins (gradtwin.layers.manual.*, gradtwin.layers.autograd.*) are twins like the models', and
# gradtwin.layers.inputs, the input checks both twins call, sits with them; their room's check.py, which
# holds them to each other, sits with the checker
LAYER_TWINS = ("gradtwin.layers.manual", "gradtwin.layers.autograd", "gradtwin.layers.inputs")


def _layer(module: str) -> int:
    if module in TWIN_LEVEL:
        return TWIN_LEVEL[module]
    if module.startswith(LAYER_TWINS):
        return 1
    room = _room(module)
    return next(i for i, rooms in enumerate(LAYERS) if room in rooms)


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(path.read_text(), modules) - {name} for name, path in modules.items()}


def test_every_module_sits_in_a_layer() -> None:
    rooms = {_room(m) for m in _modules()}
    known = {room for layer in LAYERS for room in layer}
    assert rooms <= known, f"modules outside every layer: {sorted(rooms - known)}"


def test_imports_never_point_up() -> None:
    upward = [
        f"{a} (layer {_layer(a)}) imports {b} (layer {_layer(b)})"
        for a, targets in _graph().items()
        for b in targets
        if _layer(b) > _layer(a)
    ]
    assert not upward, "\n".join(upward)


def test_training_and_parity_do_not_import_each_other() -> None:
    crossing = [
        f"{a} imports {b}"
        for a, targets in _graph().items()
        for b in targets
        for left, right in APART
        if {_room(a), _room(b)} == {left, right}
    ]
    assert not crossing, "\n".join(crossing)


def test_no_import_circle() -> None:
    graph = _graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)) is not None:
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)) is not None:
            pytest.fail("import circle: " + " -> ".join(cycle))


def test_the_checks_above_can_fail() -> None:
    """The helpers see an upward import, lazy imports and submodules named by `from pkg import sub`."""
    modules = _modules()
    assert _layer("gradtwin.manual.linear") < _layer("gradtwin.parity.rounding")
    assert _room("gradtwin") == "__init__" and _layer("gradtwin") == len(LAYERS) - 1
    lazy = "def f():\n    from gradtwin.parity.rounding import FLUSH\n"
    assert _imports(lazy, modules) == {"gradtwin.parity.rounding"}
    assert _imports("from gradtwin import validate, models\n", modules) == {"gradtwin.validate", "gradtwin.models"}
    assert _imports("import gradtwin.training.loop\n", modules) == {"gradtwin.training.loop"}


TAPED = sorted({m.family for m in MODELS.values() if m.tape is not None})


@pytest.mark.parametrize(("family", "other"), [(f, "autograd") for f in FAMILIES] + [(f, "tape") for f in TAPED])
def test_twins_define_the_same_names_in_the_same_order_with_the_same_signatures(family: str, other: str) -> None:
    """The autograd twin, and the tape twin where there is one, define the manual twin's names in its order."""
    import importlib

    manual = importlib.import_module(f"gradtwin.manual.{family}")
    autograd = importlib.import_module(f"gradtwin.{other}.{family}")
    for twin in (manual, autograd):
        missing = [n for n in TWIN_NAMES if not inspect.isfunction(getattr(twin, n, None))]
        assert not missing, f"{twin.__name__} lacks {missing}"
    shared = [  # private helpers (a leading _) are each twin's own business
        n
        for n, v in vars(autograd).items()
        if inspect.isfunction(v) and v.__module__ == autograd.__name__ and not n.startswith("_")
    ]
    in_manual = [n for n, v in vars(manual).items() if inspect.isfunction(v) and v.__module__ == manual.__name__]
    assert [n for n in in_manual if n in shared] == shared, f"{family}: the autograd twin's names, in manual's order"
    for name in shared:
        a = list(inspect.signature(getattr(manual, name)).parameters)
        b = list(inspect.signature(getattr(autograd, name)).parameters)
        assert a == b, f"{family}.{name}: manual takes {a}, autograd {b}"


@pytest.mark.parametrize(
    ("side", "family"), [(s, f) for s in ("manual", "autograd") for f in FAMILIES] + [("tape", f) for f in TAPED]
)
def test_a_twin_holds_only_its_derivation(side: str, family: str) -> None:
    """No rounding scales, tolerances, files or engines in a twin: it imports only its own side (the tape
    twins: their engine, gradtwin.autodiff)."""
    path = SRC / side / f"{family}.py"
    tree = ast.parse(path.read_text())
    imported = _imports(path.read_text(), _modules())
    own = (
        f"gradtwin.{side}",
        f"gradtwin.layers.{side}",
        "gradtwin.layers.inputs",
        "gradtwin.autodiff",
        "gradtwin.errors",
    )
    foreign = sorted(m for m in imported if not m.startswith(own) and m not in TWIN_LEVEL)
    assert not foreign, f"{side}/{family}.py imports {foreign}"
    names = [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))]
    bookkeeping = [n for n in names if any(word in n for word in ("scale", "rounding", "tolerance", "Fused"))]
    assert not bookkeeping, f"{side}/{family}.py defines {bookkeeping}"

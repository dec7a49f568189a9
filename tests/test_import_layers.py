"""The package's import graph: no cycles, and the layers import one way.

cli -> training / experiments -> model -> heads / weighting; data and evaluation sit beside the model
and never import it. Read from the source with ``ast`` (nothing is imported), so a violation is found
even on a code path no test runs.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mtl_hf"

MODEL_LAYER = (
    "mtl_hf.configuration_mtl",
    "mtl_hf.modeling_mtl",
    "mtl_hf.backbone",
    "mtl_hf.image_processing_mtl",
    "mtl_hf.masking",
    "mtl_hf.heads",
    "mtl_hf.weighting",
)
ABOVE_THE_MODEL = (
    "mtl_hf.cli",
    "mtl_hf.train",
    "mtl_hf.training",
    "mtl_hf.experiments",
    "mtl_hf.data",
    "mtl_hf.evaluation",
    "mtl_hf.explain",
    "mtl_hf.inference",
    "mtl_hf.hub",
    "mtl_hf.app",
    "mtl_hf.export",
)


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def within(name: str, prefixes: tuple[str, ...] | str) -> bool:
    prefixes = (prefixes,) if isinstance(prefixes, str) else prefixes
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _type_checking_only(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def imports_of(name: str) -> dict[str, bool]:
    """``{imported mtl_hf module: imported at module level}`` for module ``name`` (imports under
    ``if TYPE_CHECKING:`` left out; ``from pkg import sub`` counts as importing ``pkg.sub``)."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: dict[str, bool] = {}

    def add(target: str, top_level: bool) -> None:
        if within(target, "mtl_hf"):
            found[target] = found.get(target, False) or top_level

    def visit(node: ast.AST, top_level: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if _type_checking_only(child):
                continue
            inner = top_level and not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                for alias in child.names:
                    add(alias.name, inner)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")[: len(package.split(".")) - child.level + 1]
                    source = ".".join([*base, child.module] if child.module else base)
                else:
                    source = child.module or ""
                for alias in child.names:
                    sub = f"{source}.{alias.name}"
                    add(sub if sub in MODULES else source, inner)
            visit(child, inner)

    visit(ast.parse(path.read_text(encoding="utf-8")), True)
    found.pop(name, None)
    return found


GRAPH = {name: imports_of(name) for name in MODULES}


def cycles(module_level_only: bool = False) -> list[list[str]]:
    """Strongly connected groups of more than one module in the import graph (Tarjan): every import,
    or only those run when a module is imported."""
    edges = {
        n: [t for t, top in GRAPH[n].items() if t in GRAPH and (top or not module_level_only)] for n in GRAPH
    }
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(edges):
        if v not in index:
            connect(v)
    return groups


def test_the_graph_is_read() -> None:
    assert GRAPH["mtl_hf.modeling_mtl"]["mtl_hf.configuration_mtl"] is True
    assert "mtl_hf.heads" in GRAPH["mtl_hf.modeling_mtl"]
    assert GRAPH["mtl_hf.cli"].get("mtl_hf.errors") is False  # imported inside a function


def test_no_import_cycles() -> None:
    # not even through imports deferred into functions
    assert cycles() == []


def test_a_cycle_would_be_found(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(GRAPH, "mtl_hf.masking", {**GRAPH["mtl_hf.masking"], "mtl_hf.heads.mim": False})
    assert [m for m in cycles()[0] if m != "mtl_hf.heads.reconstruction"] == [
        "mtl_hf.heads.mim",
        "mtl_hf.masking",
    ]
    assert cycles(module_level_only=True) == []


def test_the_model_layer_never_imports_training_data_or_commands() -> None:
    wrong = {
        name: sorted(t for t in GRAPH[name] if within(t, ABOVE_THE_MODEL))
        for name in GRAPH
        if within(name, MODEL_LAYER)
    }
    assert {k: v for k, v in wrong.items() if v} == {}


@pytest.mark.parametrize("layer", ["mtl_hf.data", "mtl_hf.evaluation"])
def test_data_and_evaluation_never_import_the_model(layer: str) -> None:
    model = ("mtl_hf.modeling_mtl", "mtl_hf.configuration_mtl", "mtl_hf.backbone")
    wrong = {
        name: sorted(t for t in GRAPH[name] if within(t, model)) for name in GRAPH if within(name, layer)
    }
    assert {k: v for k, v in wrong.items() if v} == {}


def test_heads_and_weighters_never_import_each_other() -> None:
    for a, b in (("mtl_hf.heads", "mtl_hf.weighting"), ("mtl_hf.weighting", "mtl_hf.heads")):
        assert [n for n in GRAPH if within(n, a) and any(within(t, b) for t in GRAPH[n])] == []

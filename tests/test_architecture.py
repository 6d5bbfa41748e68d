"""The shape of the code: layers import only downwards, and functions stay short.

docs/architecture.md draws the layers; these tests keep the code true to the drawing. Every
import counts, the ones inside functions too.
"""

import ast
from collections import defaultdict
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "sparsemomentum"

# What each part of the package may import from the package (everything else is a bug).
ALLOWED = {
    "errors": set(),
    "atomic": set(),
    "inputs": set(),
    "core": {"errors"},
    "runs": {"errors", "atomic"},
    "models": {"errors", "backends", "core", "inputs"},
    "data": {"errors", "atomic", "inputs"},
    "algorithms": {"core", "errors"},
    "backends": {"core", "errors"},
    "analysis": {"core", "algorithms", "data", "runs", "errors", "atomic"},
    "export": {"models", "runs", "errors", "atomic"},
    "train": {"core", "algorithms", "backends", "models", "data", "runs", "analysis", "errors"},
    "integrations": {"core", "algorithms", "train", "atomic", "errors"},
}


def part_of(path: Path) -> str:
    """The subpackage (or top-level module) a source file belongs to."""
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def imported_parts(path: Path) -> set[str]:
    """The parts of the package ``path`` imports, at module level or inside functions."""
    parts = set()
    package = path.relative_to(PACKAGE).parent.parts
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the file's package
                base = list(package[: len(package) - node.level + 1])
                target = base + (node.module.split(".") if node.module else [])
                names = target[:1] or [alias.name for alias in node.names]
            elif node.module and node.module.startswith("sparsemomentum."):
                names = [node.module.split(".")[1]]
            else:
                continue
            parts.update(names)
        elif isinstance(node, ast.Import):
            parts.update(
                alias.name.split(".")[1]
                for alias in node.names
                if alias.name.startswith("sparsemomentum.")
            )
    return parts


def import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for path in PACKAGE.rglob("*.py"):
        part = part_of(path)
        graph[part] |= imported_parts(path) - {part}
    return graph


def test_each_layer_imports_only_the_layers_below_it():
    for part, imports in import_graph().items():
        if part in ALLOWED:
            assert imports <= ALLOWED[part], f"{part} imports {sorted(imports - ALLOWED[part])}"


def test_the_core_knows_no_kernels_methods_training_or_reports():
    assert import_graph()["core"] <= {"errors"}


def test_no_import_cycle_between_parts():
    graph = import_graph()
    finished: set[str] = set()

    def visit(part: str, path: list[str]) -> None:
        assert part not in path, f"import cycle: {' -> '.join(path + [part])}"
        if part in finished:
            return
        for imported in graph.get(part, ()):
            visit(imported, path + [part])
        finished.add(part)

    for part in list(graph):
        visit(part, [])


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: p.name)
def test_functions_fit_on_one_screen(path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = node.end_lineno - node.lineno + 1
            assert length < 80, f"{path.name}:{node.lineno} {node.name} has {length} lines"

"""The project's shape: no import cycle, motioncore free of Ray and MLflow, small modules."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("motioncore", "orchestrator", "search_spaces")


def _module(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports() -> dict[str, set[str]]:
    """Every project module -> the modules it imports anywhere (function-level imports too)."""
    files = {_module(p): p for pkg in PACKAGES for p in (REPO / pkg).glob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                found.add(node.module)
                found |= {f"{node.module}.{a.name}" for a in node.names}
        graph[name] = found
    return graph


def test_the_project_import_graph_has_no_cycle():
    graph = imports()
    edges = {m: {d for d in deps if d in graph and d != m} for m, deps in graph.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for d in sorted(edges[m]):
            assert state.get(d) != 1, "import cycle: " + " -> ".join([*path, m, d])
            if d not in state:
                visit(d, [*path, m])
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m, [])


def test_motioncore_imports_neither_ray_nor_mlflow_nor_optuna():
    for name, deps in imports().items():
        if name.startswith("motioncore"):
            bad = {d for d in deps if d.split(".")[0] in ("ray", "mlflow", "optuna",
                                                          "orchestrator", "search_spaces")}
            assert not bad, f"{name} imports {sorted(bad)}"


def test_the_geometry_is_imported_not_rewritten():
    """Only motion.py spells the class index; the model knows nothing of the objective."""
    for pkg in PACKAGES:
        for path in (REPO / pkg).glob("*.py"):
            if path.name != "motion.py":
                assert "* (2 * r + 1) + (dx" not in path.read_text(), path
    assert "motioncore.losses" not in imports()["motioncore.model"]


def test_no_module_is_over_350_lines():
    for pkg in PACKAGES:
        for path in (REPO / pkg).glob("*.py"):
            assert len(path.read_text().splitlines()) <= 350, path

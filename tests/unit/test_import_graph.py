"""The package's shape: imports run one way. No module imports another that imports it back, even
for type hints only (a lower layer that reads a higher one names what it reads in a Protocol)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).parents[2] / "src"


def _module_of(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import_graph() -> dict[str, set[str]]:
    modules = {_module_of(p): p for p in (SRC / "turnout").rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("turnout"):
                for alias in node.names:  # `from turnout.a import b` may name the module turnout.a.b
                    submodule = f"{node.module}.{alias.name}"
                    targets.add(submodule if submodule in modules else node.module)
            elif isinstance(node, ast.Import):
                targets.update(a.name for a in node.names if a.name.startswith("turnout"))
        # a package's __init__ only names the package: an edge to it is no dependency
        graph[name] = {t for t in targets if t in modules and t != name and modules[t].name != "__init__.py"}
    return graph


def test_the_import_graph_is_found() -> None:
    graph = _import_graph()
    assert "turnout.proxy.decisions" in graph["turnout.proxy.session"]
    assert "turnout.manager.settings" in graph["turnout.manager.proxysql"]


def test_no_import_circle() -> None:
    graph = _import_graph()
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        assert module not in path, f"import circle: {' -> '.join((*path[path.index(module):], module))}"
        if module in done:
            return
        for imported in sorted(graph[module]):
            visit(imported, (*path, module))
        done.add(module)

    for module in sorted(graph):
        visit(module, ())

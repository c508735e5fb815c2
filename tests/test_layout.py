"""The package's layers point one way: core/ imports nothing from analysis/ or the orchestration (run/),
analysis/ nothing from the orchestration, and no module imports itself through others (imports under
`if TYPE_CHECKING:` do not count; imports inside functions do)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "document_it"


def _module(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """The modules `path` imports, at any depth (functions too), outside `if TYPE_CHECKING:` blocks."""
    package = _module(path) if path.name == "__init__.py" else _module(path).rpartition(".")[0]
    found: set[str] = set()

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                visit(node.orelse)
                continue
            if isinstance(node, ast.ImportFrom):
                base = package.split(".")[:len(package.split(".")) - node.level + 1] if node.level else []
                target = ".".join([*base, node.module] if node.module else base)
                found.update(f"{target}.{alias.name}" for alias in node.names)
                found.add(target)
            elif isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.stmt):
                    visit([child])

    visit(ast.parse(path.read_text(encoding="utf-8")).body)
    return {name for name in found if name.startswith("document_it")}


def _layer(module: str) -> str:
    """The sub-package a module belongs to ("core", "analysis", "run"; a top-level module's own name)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _crossings(layer: str, forbidden: set[str]) -> list[str]:
    return sorted(f"{_module(path)} imports {name}" for path in (PACKAGE / layer).rglob("*.py")
                  for name in _imports(path) if _layer(name) in forbidden)


def _circles() -> list[list[str]]:
    """Import circles among the package's modules, as the modules each goes through: empty exactly when there
    is none (a depth-first walk reports one for every import back to a module still on its trail)."""
    modules = {_module(path): path for path in PACKAGE.rglob("*.py")}
    graph = {name: sorted(target for target in _imports(path) if target in modules and target != name)
             for name, path in modules.items()}
    found: set[tuple[str, ...]] = set()

    def walk(name: str, trail: list[str]) -> None:
        for target in graph[name]:
            if target in trail:
                circle = trail[trail.index(target):]
                start = circle.index(min(circle))
                found.add(tuple(circle[start:] + circle[:start]))
            elif target not in done:
                walk(target, [*trail, target])
        done.add(name)

    done: set[str] = set()
    for name in sorted(graph):
        if name not in done:
            walk(name, [name])
    return [list(circle) for circle in sorted(found)]


def test_no_module_imports_itself_through_others():
    assert _circles() == []


def test_core_imports_neither_the_analysis_nor_the_orchestration():
    assert _crossings("core", {"analysis", "run"}) == []


def test_the_analysis_does_not_import_the_orchestration():
    assert _crossings("analysis", {"run"}) == []


def test_the_check_sees_imports_inside_functions_and_skips_type_checking_blocks(tmp_path, monkeypatch):
    package = tmp_path / "document_it"
    (package / "core").mkdir(parents=True)
    (package / "core" / "lazy.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..analysis.gateway import Gateway\n"
        "def f():\n    from ..run import pipeline\n    return pipeline\n", encoding="utf-8")
    monkeypatch.setattr(__import__(__name__), "PACKAGE", package)
    assert _crossings("core", {"analysis", "run"}) == ["document_it.core.lazy imports document_it.run",
                                                       "document_it.core.lazy imports document_it.run.pipeline"]
    assert _circles() == []
    (package / "core" / "a.py").write_text("def f():\n    from . import b\n", encoding="utf-8")
    (package / "core" / "b.py").write_text("from .a import f\n", encoding="utf-8")
    assert _circles() == [["document_it.core.a", "document_it.core.b"]]

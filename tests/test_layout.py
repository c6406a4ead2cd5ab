"""How the code is laid out: no import cycles in the package (import-linter's layers, checked by `lint-imports` in
CI, only see packages); test modules import shared helpers (tests/helpers/) and conftest fixtures, never each other;
`python -m pytest` (the README's test command) prints its slowest tests."""

import ast
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def test_no_test_module_imports_another_test_module():
    test_modules = {".".join(p.relative_to(ROOT).with_suffix("").parts) for p in (ROOT / "tests").rglob("test_*.py")}
    conftests = {".".join(p.relative_to(ROOT).with_suffix("").parts) for p in (ROOT / "tests").rglob("conftest.py")}
    assert "tests.test_layout" in test_modules
    offenders = {}
    for path in sorted((ROOT / "tests").rglob("*.py")):
        bad = imported_modules(path) & (test_modules | conftests)
        if bad:
            offenders[str(path.relative_to(ROOT))] = sorted(bad)
    assert offenders == {}, "shared code belongs in tests/helpers/ or a conftest fixture"


def test_every_import_from_the_tests_package_is_a_helper():
    for path in sorted((ROOT / "tests").rglob("*.py")):
        for name in imported_modules(path):
            if name.startswith("tests.") and not name.startswith("tests.helpers"):
                raise AssertionError(f"{path.relative_to(ROOT)} imports {name}: only tests.helpers is shared")


def test_the_test_command_prints_its_slowest_tests():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert "--durations=" in config["addopts"]


def import_cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), i.e. the import cycles."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
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
                cycles.append(sorted(group))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return cycles


def test_import_cycles_are_found():
    assert import_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert import_cycles({"a": {"b"}, "b": set()}) == []


def test_the_package_has_no_import_cycle():
    """Every import statement counts, those inside functions included (grimp, import-linter's graph library)."""
    grimp = pytest.importorskip("grimp")
    graph = grimp.build_graph("thinktune")
    edges = {m: {i for i in graph.find_modules_directly_imported_by(m) if i.startswith("thinktune")}
             for m in graph.modules}
    assert len(edges) > 70
    assert import_cycles(edges) == []

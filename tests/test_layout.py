"""How the test suite is laid out: test modules import shared helpers (tests/helpers/) and conftest fixtures, never
each other; `python -m pytest` (the README's test command) prints its slowest tests."""

import ast
import tomllib
from pathlib import Path

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

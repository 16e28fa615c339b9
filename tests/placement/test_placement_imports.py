"""broker/placement imports only the standard library and itself (STYLE.md rule 1)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "broker" / "placement"
# Stdlib modules that would smuggle in a clock, randomness or I/O.
FORBIDDEN_STDLIB = {"time", "random", "datetime", "socket", "asyncio", "threading", "os"}


def imported_modules(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((0, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            found.append((node.level, node.module or ""))
    return found


def test_placement_imports_only_stdlib_and_itself():
    files = sorted(PACKAGE.glob("*.py"))
    assert len(files) >= 8
    bad = []
    for path in files:
        for level, module in imported_modules(path):
            top = module.split(".")[0]
            if level > 0 or module.startswith("broker.placement"):
                continue
            if top == "__future__":
                continue
            if top not in sys.stdlib_module_names or top in FORBIDDEN_STDLIB:
                bad.append(f"{path.name}: {module}")
    assert bad == []

"""A plain `pip install fedbroker` provides every module the CLI and the SDK import.

A module that arrives only with a development tool (platformdirs came with virtualenv) works on a
developer's machine and fails with ModuleNotFoundError on a user's.
"""

from __future__ import annotations

import ast
import importlib.metadata as metadata
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
CLIENT_CODE = [REPO / "broker" / "cli", REPO / "broker" / "sdk", REPO / "fedbroker"]
OURS = {"broker", "site_agents", "fedbroker"}


def installed_with_fedbroker() -> set[str]:
    """pyproject.toml's dependencies (no extras) and, through the installed metadata, theirs."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    todo = [Requirement(r) for r in project["dependencies"]]
    found: set[str] = set()
    while todo:
        requirement = todo.pop()
        name = canonicalize_name(requirement.name)
        if name in found:
            continue
        found.add(name)
        for text in metadata.requires(name) or []:
            nested = Requirement(text)
            if nested.marker is None or nested.marker.evaluate({"extra": ""}):
                todo.append(nested)
    return found


def imported_modules() -> dict[str, Path]:
    """Each top-level module the client code imports (absolute imports), with a file importing it."""
    modules: dict[str, Path] = {}
    for root in CLIENT_CODE:
        for path in sorted(root.rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    modules.setdefault(name.split(".")[0], path)
    return modules


def test_every_module_the_cli_and_sdk_import_comes_with_fedbroker() -> None:
    provided = installed_with_fedbroker()
    by_module = metadata.packages_distributions()
    missing = {}
    for module, path in imported_modules().items():
        if module in OURS or module in sys.stdlib_module_names:
            continue
        distributions = {canonicalize_name(d) for d in by_module.get(module, [])}
        if not distributions & provided:
            missing[module] = str(path.relative_to(REPO))
    assert missing == {}, f"imported, but not installed with fedbroker: {missing}"
    assert "platformdirs" in provided

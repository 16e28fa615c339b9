"""Turn pydantic validation errors into one line per field, named by its path.

Shared by the federation config, the agent config and the workload spec so
that every "bad input" message has the same shape:
``sites[1].gpu_prices_hkd_per_hour.H800: must be > 0``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError


class InvalidInput(ValueError):
    """Input that failed validation; ``problems`` holds one ``path: message`` each."""

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        self.source = source
        self.problems = list(problems)
        joined = "; ".join(self.problems)
        super().__init__(f"{source}: {joined}" if source else joined)


def field_path(loc: Sequence[int | str]) -> str:
    """('sites', 1, 'gpu_prices', 'H800') -> 'sites[1].gpu_prices.H800'."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path or "(root)"


def _num(value: Any) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _message(error: Any) -> str:
    ctx = error.get("ctx") or {}
    kind = error["type"]
    if kind == "greater_than":
        return f"must be > {_num(ctx['gt'])}"
    if kind == "greater_than_equal":
        return f"must be >= {_num(ctx['ge'])}"
    if kind == "less_than_equal":
        return f"must be <= {_num(ctx['le'])}"
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return "is not a known field"
    if kind in ("literal_error", "enum"):
        return f"must be one of {ctx.get('expected', '')}".rstrip()
    if kind == "value_error":
        return str(ctx.get("error", error["msg"]))
    message: str = error["msg"]
    return message[0].lower() + message[1:]


def describe(error: ValidationError) -> list[str]:
    """One 'path: message' line per problem, in pydantic's order."""
    return [f"{field_path(e['loc'])}: {_message(e)}" for e in error.errors()]


def read_yaml(path: Path) -> Any:
    """The YAML document in path; InvalidInput naming the file if unreadable or malformed."""
    try:
        return yaml.safe_load(path.read_text())
    except OSError as error:
        raise InvalidInput(str(path), [f"cannot read: {error.strerror}"]) from None
    except yaml.YAMLError as error:
        raise InvalidInput(str(path), [f"not valid YAML: {error}"]) from None

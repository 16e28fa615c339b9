"""Turn pydantic validation errors into one line per field, named by its path, in the user's words.

Shared by the federation config, the agent config and the workload spec so
that every "bad input" message has the same shape:
``sites[1].gpu_prices_hkd_per_hour.H800: must be > 0``. Library jargon (pydantic's
"valid dictionary or instance of ...", PyYAML's ``<unicode string>``, raw regular
expressions) never reaches the user.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

# A YAML file larger than this is not a config or a workload: refuse it before parsing.
MAX_YAML_BYTES = 1024 * 1024
# Deeper nesting is no config (and past ~1,000 levels PyYAML's composer overflows the stack).
MAX_YAML_DEPTH = 64
# Values, counted with every alias expanded: a "billion laughs" file of a few hundred bytes
# expands to 10^9 values; a real config or workload has hundreds.
MAX_YAML_VALUES = 100_000

# Patterns the models use, said in words (pydantic would print the regular expression).
PATTERN_WORDS = {
    r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$": (
        "must be lowercase letters, digits and '-', starting and ending with a letter or digit"
    ),
    r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$": (
        "must be lowercase letters, digits, '-' and '.', starting and ending with a letter or digit"
    ),
    r"^[0-9a-f]{64}$": "must be a SHA-256 digest: 64 lowercase hex digits (sha256sum of the token)",
    r"^https?://.+": "must be an http:// or https:// URL",
}


class InvalidInput(ValueError):
    """Input that failed validation; ``problems`` holds one ``path: message`` each."""

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        self.source = source
        self.problems = list(problems)
        joined = "; ".join(self.problems)
        super().__init__(f"{source}: {joined}" if source else joined)

    @property
    def field(self) -> str | None:
        """The field path of the first problem, when it names one."""
        head, sep, _ = self.problems[0].partition(": ") if self.problems else ("", "", "")
        return head if sep and head and " " not in head and head != "(root)" else None


def field_path(loc: Sequence[int | str]) -> str:
    """('sites', 1, 'gpu_prices', 'H800') -> 'sites[1].gpu_prices.H800'."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path or "(root)"


def did_you_mean(word: str, known: Iterable[str]) -> str:
    """' (did you mean 'x'?)' for the closest known word, or ''."""
    close = difflib.get_close_matches(word, list(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _num(value: Any) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


_TYPE_WORDS = {
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "bool_type": "must be true or false",
    "string_type": "must be text",
    "list_type": "must be a list",
    "dict_type": "must be a mapping (key: value lines)",
    "model_type": "must be a mapping (key: value lines)",
    "model_attributes_type": "must be a mapping (key: value lines)",
    "finite_number": "must be a finite number (no NaN or infinity)",
}


def _message(error: Any, model: type[BaseModel] | None) -> str:
    ctx = error.get("ctx") or {}
    kind = error["type"]
    if kind == "greater_than":
        return f"must be > {_num(ctx['gt'])}"
    if kind == "greater_than_equal":
        return f"must be >= {_num(ctx['ge'])}"
    if kind == "less_than_equal":
        return f"must be <= {_num(ctx['le'])}"
    if kind == "less_than":
        return f"must be < {_num(ctx['lt'])}"
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        loc = error["loc"]
        known = _fields_at(model, loc[:-1]) if model is not None else ()
        return "is not a known field" + did_you_mean(str(loc[-1]), known)
    if kind in ("literal_error", "enum"):
        return f"must be one of {ctx.get('expected', '')}".rstrip()
    if kind == "value_error":
        return str(ctx.get("error", error["msg"]))
    if kind == "string_pattern_mismatch":
        return PATTERN_WORDS.get(
            str(ctx.get("pattern")), f"does not have the expected form {ctx.get('pattern')}"
        )
    if kind == "string_too_long":
        return f"must be at most {ctx.get('max_length')} characters"
    if kind == "string_too_short":
        return (
            "must not be empty" if ctx.get("min_length") == 1 else f"needs {ctx.get('min_length')} characters"
        )
    if kind == "too_short":
        least = ctx.get("min_length")
        return f"needs at least {least} item{'' if least == 1 else 's'}"
    if kind == "too_long":
        return f"may have at most {ctx.get('max_length')} items"
    if kind in _TYPE_WORDS:
        return f"{_TYPE_WORDS[kind]} (got {_shown(error.get('input'))})"
    message: str = error["msg"]
    return message[0].lower() + message[1:]


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "nothing"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _fields_at(model: type[BaseModel] | None, loc: Sequence[int | str]) -> list[str]:
    """The field names of the sub-model(s) at `loc` (for did-you-mean); [] when unknown."""
    current: list[Any] = [model] if model is not None else []
    for part in loc:
        if isinstance(part, int):
            continue  # an index into a list: the list's item model is already current
        current = [
            found
            for m in current
            if part in getattr(m, "model_fields", {})
            for found in _models_in(m.model_fields[part].annotation)
        ]
    return sorted({name for m in current for name in getattr(m, "model_fields", {})})


def _models_in(annotation: Any) -> list[Any]:
    """The BaseModels inside list[M], M | None, Annotated[A | B, ...], dict[str, M]."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    if get_origin(annotation) is None:
        return []
    return [found for arg in get_args(annotation) for found in _models_in(arg)]


def describe(error: ValidationError, model: type[BaseModel] | None = None) -> list[str]:
    """One 'path: message' line per problem, in pydantic's order; `model` adds did-you-mean."""
    return [f"{field_path(e['loc'])}: {_message(e, model)}" for e in error.errors()]


def check_mapping(data: object, source: str, what: str) -> None:
    """An empty file or a list where a mapping belongs gets a message, not pydantic's jargon."""
    if data is None:
        raise InvalidInput(source, [f"is empty; expected {what}"])
    if not isinstance(data, dict):
        raise InvalidInput(source, [f"expected {what} as 'key: value' lines, got {_shown(data)}"])


def read_text(path: Path, max_bytes: int = MAX_YAML_BYTES) -> str:
    """A text file's content; InvalidInput naming the file if unreadable, too large or not text."""
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise InvalidInput(str(path), [f"is {_size(size)}; at most {_size(max_bytes)} is accepted"])
        raw = path.read_bytes()
    except OSError as error:
        raise InvalidInput(str(path), [f"cannot read: {error.strerror}"]) from None
    return decode_text(raw, str(path))


def decode_text(raw: bytes, source: str) -> str:
    if b"\x00" in raw:
        raise InvalidInput(source, ["is a binary file, not YAML text"])
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InvalidInput(source, [f"is not UTF-8 text (byte {error.start} cannot be decoded)"]) from None


class _TooComplex(yaml.YAMLError):
    """A document refused for its shape (depth, aliases), not its syntax."""


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader, composing no deeper than MAX_YAML_DEPTH."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        self._depth += 1
        if self._depth > MAX_YAML_DEPTH:
            raise _TooComplex(f"nested deeper than {MAX_YAML_DEPTH} levels")
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _expanded_values(node: yaml.Node, sizes: dict[int, int]) -> int:
    """How many values `node` holds once its aliases are expanded (each shared node is counted
    at each use, but measured once: linear in the document's size)."""
    known = sizes.get(id(node))
    if known is not None:
        if known < 0:
            raise _TooComplex("an alias refers to the value that contains it")
        return known
    sizes[id(node)] = -1  # in progress: meeting it again is a cycle
    total = 1
    if isinstance(node, yaml.SequenceNode):
        total += sum(_expanded_values(item, sizes) for item in node.value)
    elif isinstance(node, yaml.MappingNode):
        total += sum(_expanded_values(k, sizes) + _expanded_values(v, sizes) for k, v in node.value)
    sizes[id(node)] = total
    if total > MAX_YAML_VALUES:
        raise _TooComplex(f"its aliases expand to more than {MAX_YAML_VALUES:,} values (an alias bomb?)")
    return total


def _load(text: str) -> Any:
    loader = _BoundedLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _expanded_values(node, {})
        return loader.construct_document(node)
    finally:
        loader.dispose()  # type: ignore[no-untyped-call]


def parse_yaml(text: str, source: str) -> Any:
    """The YAML document in text; syntax errors say where, by line and column of `source`.
    Nesting and alias expansion are bounded (MAX_YAML_DEPTH, MAX_YAML_VALUES)."""
    try:
        return _load(text)
    except _TooComplex as error:
        raise InvalidInput(source, [f"not accepted: {error}"]) from None
    except RecursionError:
        raise InvalidInput(source, [f"not accepted: nested deeper than {MAX_YAML_DEPTH} levels"]) from None
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = " ".join(p for p in (error.context, error.problem) if p) or "syntax error"
        raise InvalidInput(source, [f"not valid YAML{where}: {problem}"]) from None
    except yaml.YAMLError as error:
        raise InvalidInput(source, [f"not valid YAML: {error}"]) from None


def read_yaml(path: Path, max_bytes: int = MAX_YAML_BYTES) -> Any:
    """The YAML document in path; InvalidInput naming the file if unreadable or malformed."""
    return parse_yaml(read_text(path, max_bytes), str(path))


def _size(count: int) -> str:
    for unit, scale in (("MB", 1024 * 1024), ("KB", 1024)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} bytes"

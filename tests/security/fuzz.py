"""Hypothesis strategies for the fuzz tests: any protobuf message by its descriptor (unknown
enum numbers, NaN and infinities, long and odd strings, nested Structs), raw bytes, and
YAML documents built from JSON-like values or mangled text."""

from __future__ import annotations

import os
from typing import Any

import yaml
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

# Examples per fuzz test: a short run by default (CI); FEDBROKER_FUZZ_EXAMPLES=7000 is the long
# run (over 100,000 cases across the tests).
EXAMPLES = int(os.environ.get("FEDBROKER_FUZZ_EXAMPLES", "25"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.function_scoped_fixture,
        HealthCheck.data_too_large,
    ],
)

texts = st.one_of(
    st.text(max_size=24),
    st.sampled_from(
        ["", "wl-", "cyberport", "H800", "lion-rock-ai", "x" * 300, "\x00", "../..", "%s%n", "😀"]
    ),
    st.builds(lambda n: "y" * n, st.integers(0, 70_000)),
)
numbers = st.one_of(st.floats(), st.integers(-(2**53), 2**53).map(float))
json_like = st.recursive(
    st.none() | st.booleans() | numbers | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=40,
)

_INTS = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}


def _scalar(field: FieldDescriptor) -> st.SearchStrategy[Any]:
    if field.type in _INTS:
        low, high = _INTS[field.type]
        return st.one_of(st.integers(-3, 20), st.integers(low, high))
    if field.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return st.floats(width=32) if field.type == FieldDescriptor.TYPE_FLOAT else st.floats()
    if field.type == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if field.type == FieldDescriptor.TYPE_ENUM:
        return st.integers(-2, 40)  # unknown numbers included: proto3 enums are open
    if field.type == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=32)
    return texts


@st.composite
def messages(draw: st.DrawFn, cls: type[Message], depth: int = 0) -> Message:
    """A message of `cls` with a random subset of its fields set to random values."""
    message = cls()
    descriptor: Descriptor = cls.DESCRIPTOR
    if descriptor.full_name == "google.protobuf.Struct":
        message.update(draw(st.dictionaries(st.text(max_size=8), json_like, max_size=4)))  # type: ignore[attr-defined]
        return message
    if descriptor.full_name == "google.protobuf.Timestamp":
        message.seconds = draw(st.integers(-62135596800, 253402300799))  # type: ignore[attr-defined]
        return message
    for field in descriptor.fields:
        if not draw(st.booleans()):
            continue
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            key_field, value_field = (
                field.message_type.fields_by_name["key"],
                field.message_type.fields_by_name["value"],
            )
            if value_field.message_type is not None:
                continue
            entries = draw(st.dictionaries(_scalar(key_field), _scalar(value_field), max_size=3))
            getattr(message, field.name).update(entries)
        elif field.message_type is not None:
            if depth > 4:
                continue
            sub_cls = type(getattr(cls(), field.name)) if not _repeated(field) else None
            if _repeated(field):
                container = getattr(message, field.name)
                for _ in range(draw(st.integers(0, 2))):
                    item = container.add()
                    item.CopyFrom(draw(messages(type(item), depth + 1)))
            else:
                getattr(message, field.name).CopyFrom(draw(messages(sub_cls, depth + 1)))  # type: ignore[arg-type]
        elif _repeated(field):
            getattr(message, field.name).extend(draw(st.lists(_scalar(field), max_size=3)))
        else:
            setattr(message, field.name, draw(_scalar(field)))
    return message


def _repeated(field: FieldDescriptor) -> bool:
    return bool(field.is_repeated)


def _dump(value: Any) -> str:
    try:
        return yaml.safe_dump(value)
    except yaml.YAMLError:
        return "{}"


yaml_documents = st.one_of(
    json_like.map(_dump),
    st.text(max_size=200),
    st.lists(
        st.sampled_from(
            [
                "a:",
                " ",
                "- ",
                "&x ",
                "*x",
                "[",
                "]",
                "{",
                "}",
                "!!python/object:os.system",
                "\n",
                "'",
                '"',
                "1e999",
                ".nan",
                "<<: *x",
                "\t",
                ":",
            ]
        ),
        max_size=40,
    ).map("".join),
)

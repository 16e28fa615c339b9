"""Workload states and the transitions between them; the one table that says what may follow what."""

from __future__ import annotations

from fedbroker.v1 import types_pb2

QUEUED = "QUEUED"
PLACED = "PLACED"
RUNNING = "RUNNING"
SUCCEEDED = "SUCCEEDED"
FAILED = "FAILED"
CANCELLED = "CANCELLED"

STATES = (QUEUED, PLACED, RUNNING, SUCCEEDED, FAILED, CANCELLED)
TERMINAL = frozenset({SUCCEEDED, FAILED, CANCELLED})
ACTIVE = frozenset({PLACED, RUNNING})  # holding GPUs at a site

# What may follow each state. A failed or lost attempt goes back to QUEUED
# (the next attempt); terminal states are final, so a late or repeated report
# can never resurrect a workload or charge it twice.
TRANSITIONS: dict[str, frozenset[str]] = {
    QUEUED: frozenset({PLACED, FAILED, CANCELLED}),
    PLACED: frozenset({RUNNING, SUCCEEDED, FAILED, CANCELLED, QUEUED}),
    RUNNING: frozenset({SUCCEEDED, FAILED, CANCELLED, QUEUED}),
    SUCCEEDED: frozenset(),
    FAILED: frozenset(),
    CANCELLED: frozenset(),
}


def can_follow(current: str, new: str) -> bool:
    return new in TRANSITIONS[current]


# The wire enum both ways, as dicts made once from it: protobuf's `Name` and `Value` are
# Python-level lookups at five times the cost, and these run for every workload in every
# answer and in every agent's report.
_NAMES: dict[int, str] = {
    v.number: v.name.removeprefix("WORKLOAD_STATE_") for v in types_pb2.WorkloadState.DESCRIPTOR.values
}
_NUMBERS: dict[str, types_pb2.WorkloadState.ValueType] = {
    name: types_pb2.WorkloadState.ValueType(number) for number, name in _NAMES.items()
}


def to_proto(state: str) -> types_pb2.WorkloadState.ValueType:
    """The wire value of a state; ValueError for a name the enum lacks."""
    number = _NUMBERS.get(state)
    if number is None:
        raise ValueError(f"no workload state {state!r}")
    return number


def from_proto(value: int) -> str:
    """A wire value's state (its enum name without the prefix); ValueError for one the enum lacks."""
    name = _NAMES.get(value)
    if name is None:
        raise ValueError(f"no workload state numbered {value}")
    return name

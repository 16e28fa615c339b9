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


def to_proto(state: str) -> types_pb2.WorkloadState.ValueType:
    return types_pb2.WorkloadState.Value(f"WORKLOAD_STATE_{state}")


def from_proto(value: int) -> str:
    name = types_pb2.WorkloadState.Name(value)  # type: ignore[arg-type]
    return name.removeprefix("WORKLOAD_STATE_")

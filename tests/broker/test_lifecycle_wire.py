"""Workload states on the wire: every state both ways, and a clear error for one the enum lacks."""

from __future__ import annotations

import pytest
from fedbroker.v1 import types_pb2

from broker import lifecycle


@pytest.mark.parametrize("state", [*lifecycle.STATES, "UNSPECIFIED"])
def test_each_state_is_its_enum_value_and_back(state: str) -> None:
    number = lifecycle.to_proto(state)
    assert types_pb2.WorkloadState.Name(number) == f"WORKLOAD_STATE_{state}"
    assert lifecycle.from_proto(number) == state


def test_every_enum_value_has_a_state() -> None:
    for value in types_pb2.WorkloadState.DESCRIPTOR.values:
        assert lifecycle.from_proto(value.number) == value.name.removeprefix("WORKLOAD_STATE_")


@pytest.mark.parametrize("value", [-1, 99])
def test_a_number_the_enum_lacks_is_a_value_error(value: int) -> None:
    with pytest.raises(ValueError, match=str(value)):
        lifecycle.from_proto(value)


def test_a_name_the_enum_lacks_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="PENDING"):
        lifecycle.to_proto("PENDING")

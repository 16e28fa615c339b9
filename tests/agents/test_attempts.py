"""The agent's attempt table and its reconnect backoff: pure, with an injected clock and randomness."""

from __future__ import annotations

import pytest

from site_agents.attempts import AttemptTable
from site_agents.backends.base import AttemptKey, AttemptStatus, State
from site_agents.backoff import Backoff

A1, A2 = AttemptKey("w", 1), AttemptKey("w", 2)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_ended_attempts_are_reported_for_the_retention_window_then_forgotten() -> None:
    clock = Clock()
    table = AttemptTable(retention_s=600, clock=clock)
    table.taken(A1)
    table.taken(A2)
    assert table.apply(AttemptStatus(A1, State.RUNNING, nodes=("n-0",)))
    assert table.apply(AttemptStatus(A1, State.SUCCEEDED, "exit code 0", 0))
    clock.now += 600
    assert [(s.key, s.state, s.nodes) for s in table.snapshot()] == [
        (A1, State.SUCCEEDED, ("n-0",)),  # the nodes it ran on are kept with its final state
        (A2, State.PLACED, ()),
    ]
    clock.now += 1
    assert [s.key for s in table.snapshot()] == [A2]  # running or waiting attempts never expire
    assert A1 not in table


def test_a_terminal_state_is_final_and_repeats_change_nothing() -> None:
    table = AttemptTable()
    assert table.apply(AttemptStatus(A1, State.RUNNING))
    assert not table.apply(AttemptStatus(A1, State.RUNNING))
    assert table.apply(AttemptStatus(A1, State.CANCELLED, "cancelled"))
    assert not table.apply(AttemptStatus(A1, State.RUNNING))
    assert not table.apply(AttemptStatus(A1, State.SUCCEEDED))
    assert table.get(A1) == AttemptStatus(A1, State.CANCELLED, "cancelled")


@pytest.mark.parametrize(
    ("rand", "expected"), [(1.0, [0.5, 1, 2, 4, 8, 8, 8]), (0.0, [0.25, 0.5, 1, 2, 4, 4, 4])]
)
def test_backoff_grows_to_its_cap_with_jitter_and_resets(rand: float, expected: list[float]) -> None:
    backoff = Backoff(initial_s=0.5, cap_s=8, rand=lambda: rand)
    assert [backoff.next_delay() for _ in expected] == expected
    backoff.reset()
    assert backoff.next_delay() == expected[0]


def test_backoff_survives_days_of_failures() -> None:
    backoff = Backoff(initial_s=0.5, cap_s=30, rand=lambda: 1.0)
    assert [backoff.next_delay() for _ in range(5000)][-1] == 30

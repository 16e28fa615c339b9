"""What the agent knows about each attempt it was given: the source of the `workloads` in its reports.

Terminal attempts stay listed for a retention window after they end, so that a
final state lost with a broken stream reaches the broker in the next snapshot
(the broker applies reported states idempotently). A terminal state is final:
a late change can never bring an attempt back.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from site_agents.backends.base import AttemptKey, AttemptStatus, State

DEFAULT_RETENTION_S = 600.0


@dataclass
class _Entry:
    status: AttemptStatus
    ended_at: float | None = None
    trace_id: str = ""  # the workload's trace (from its assignment), for the attempt's log lines


class AttemptTable:
    def __init__(
        self, retention_s: float = DEFAULT_RETENTION_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._retention_s = retention_s
        self._clock = clock
        self._entries: dict[AttemptKey, _Entry] = {}

    def __contains__(self, key: AttemptKey) -> bool:
        return key in self._entries

    def get(self, key: AttemptKey) -> AttemptStatus | None:
        entry = self._entries.get(key)
        return entry.status if entry else None

    def taken(self, key: AttemptKey, trace_id: str = "") -> None:
        """The agent accepted an assignment: PLACED until the backend says more."""
        self._entries.setdefault(key, _Entry(AttemptStatus(key, State.PLACED), trace_id=trace_id))

    def trace_id(self, key: AttemptKey) -> str:
        """The trace of the attempt's workload, if its assignment reached this agent ("" if not)."""
        entry = self._entries.get(key)
        return entry.trace_id if entry else ""

    def apply(self, status: AttemptStatus) -> bool:
        """Record a backend change; False when it changes nothing or would leave a terminal state."""
        entry = self._entries.get(status.key)
        if entry is None:
            entry = self._entries[status.key] = _Entry(status)
        elif entry.status.state.terminal or entry.status == status:
            return False
        else:
            # A final status may not repeat the nodes (a run that never started has none).
            nodes = status.nodes or entry.status.nodes
            entry.status = replace(status, nodes=nodes)
        if status.state.terminal:
            entry.ended_at = self._clock()
        return True

    def statuses(self) -> list[AttemptStatus]:
        """Every attempt known now, in no order; forgets nothing (unlike `snapshot`)."""
        return [entry.status for entry in self._entries.values()]

    def snapshot(self) -> list[AttemptStatus]:
        """Every attempt still worth reporting, oldest key first; forgets those past retention."""
        now = self._clock()
        expired = [
            key
            for key, entry in self._entries.items()
            if entry.ended_at is not None and now - entry.ended_at > self._retention_s
        ]
        for key in expired:
            del self._entries[key]
        return [self._entries[key].status for key in sorted(self._entries)]

"""In-process fan-out of workload events to Watch streams.

The events themselves are rows in the store (the source of truth a watcher
replays from); this only wakes the watchers up, so a slow watcher never holds
the scheduler back.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict

ALL_WORKLOADS = "*"  # the topic of every workload's events (no workload id has this form)
STOPPING = -1  # put in every queue when the broker stops (event seqs are positive)


class WatchHub:
    def __init__(self) -> None:
        self._subscribers: dict[str, set[asyncio.Queue[int]]] = defaultdict(set)
        self.closed = False

    def subscribe(self, workload_id: str) -> asyncio.Queue[int]:
        queue: asyncio.Queue[int] = asyncio.Queue()
        self._subscribers[workload_id].add(queue)
        if self.closed:
            queue.put_nowait(STOPPING)
        return queue

    def unsubscribe(self, workload_id: str, queue: asyncio.Queue[int]) -> None:
        subscribers = self._subscribers.get(workload_id)
        if subscribers is not None:
            subscribers.discard(queue)
            if not subscribers:
                del self._subscribers[workload_id]

    def wake_all(self) -> None:
        """Every watcher looks for new events in the store (a standby hears of none itself)."""
        for subscribers in self._subscribers.values():
            for queue in subscribers:
                queue.put_nowait(0)

    def close(self) -> None:
        """The broker is stopping: every watch stream ends now (with UNAVAILABLE, so clients
        reconnect), rather than being cancelled under gRPC at the server's stop."""
        self.closed = True
        for subscribers in self._subscribers.values():
            for queue in subscribers:
                queue.put_nowait(STOPPING)

    def publish(self, workload_id: str, event_seq: int) -> None:
        for queue in self._subscribers.get(workload_id, ()):
            queue.put_nowait(event_seq)
        for queue in self._subscribers.get(ALL_WORKLOADS, ()):  # `list -w`: every workload's events
            queue.put_nowait(event_seq)

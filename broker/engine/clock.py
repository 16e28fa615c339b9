"""Time for heartbeats and grace periods: monotonic, and blind to the broker's own stalls.

A site counts as gone when the broker has *listened* for a heartbeat TTL and heard
nothing. If the broker itself stalls (a long pause of the process, an overloaded
machine), heartbeats may be waiting unread in its sockets; counting the stall as
silence would declare live sites dead. So this clock advances in bounded steps: each
`tick` (the engine's timer, every second or so) adds the real time passed, but never
more than `max_step`. A 30 s stall therefore counts as `max_step`, and the sites get
the rest of their TTL to be heard once the broker is back.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class AttentiveClock:
    def __init__(self, max_step: float, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._max_step = max_step
        self._last = monotonic()
        self._base = 0.0

    def now(self) -> float:
        return self._base + min(self._monotonic() - self._last, self._max_step)

    def tick(self) -> float:
        """Take the time passed since the last tick into account; returns now()."""
        current = self._monotonic()
        self._base += min(current - self._last, self._max_step)
        self._last = current
        return self._base

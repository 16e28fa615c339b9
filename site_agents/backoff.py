"""Reconnect delays: capped exponential backoff with jitter, reset once the broker welcomes us.

A small class rather than tenacity: the agent's session can run for days and
then break, and the next delay should start small again. Tenacity counts
attempts per retried call and cannot be told "that one succeeded" from inside
it; here `reset()` on Welcome does exactly that. Jitter spreads the agents of
many sites so a restarted broker is not hit by all of them at once.
"""

from __future__ import annotations

import random
from collections.abc import Callable


class Backoff:
    def __init__(
        self,
        initial_s: float = 0.5,
        cap_s: float = 30.0,
        factor: float = 2.0,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self._initial_s = initial_s
        self._cap_s = cap_s
        self._factor = factor
        self._rand = rand
        self.failures = 0

    def next_delay(self) -> float:
        """The wait before the next try: between half and all of min(cap, initial x factor^failures)."""
        ceiling = min(self._cap_s, self._initial_s * self._factor**self.failures)
        self.failures = min(self.failures + 1, 64)  # the cap is reached long before; avoids float overflow
        return ceiling * (0.5 + 0.5 * self._rand())

    def reset(self) -> None:
        self.failures = 0

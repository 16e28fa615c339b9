"""Read event-loop-owned state from a metrics collector's thread, safely and rarely.

The Prometheus endpoint answers scrapes on its own thread and the OTLP reader exports on
another; the engine's memory changes on the event loop between awaits. Reading it from
those threads could see a dict resized mid-iteration, so the read runs *on* the loop
(between two engine steps) and the collector thread waits for it. One read serves every
callback of one collection (cached for `ttl_s`, short enough that the next scrape or export
reads afresh).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")
log = logging.getLogger("fedbroker.metrics")


class LoopReader(Generic[T]):
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        read: Callable[[], T],
        *,
        ttl_s: float = 0.05,
        timeout_s: float = 2.0,
    ) -> None:
        self._loop = loop
        self._read = read
        self._ttl_s = ttl_s
        self._timeout_s = timeout_s
        self._lock = threading.Lock()
        self._value: T | None = None
        self._read_at = float("-inf")

    def get(self) -> T | None:
        """The value, at most `ttl_s` old; None when the loop cannot answer (stopped, stuck)."""
        with self._lock:
            if time.monotonic() - self._read_at > self._ttl_s:
                self._value = self._read_now()
                self._read_at = time.monotonic()
            return self._value

    def _read_now(self) -> T | None:
        try:
            if _running_loop() is self._loop:
                return self._read()  # a collection from the loop itself (a flush at shutdown)
            future: concurrent.futures.Future[T] = concurrent.futures.Future()

            def run() -> None:
                if future.set_running_or_notify_cancel():
                    try:
                        future.set_result(self._read())
                    except BaseException as error:
                        future.set_exception(error)

            self._loop.call_soon_threadsafe(run)
            return future.result(self._timeout_s)
        except concurrent.futures.TimeoutError:
            future.cancel()
            log.warning("metrics: the event loop did not answer within %.1fs; skipped", self._timeout_s)
        except RuntimeError:
            pass  # the loop is closed: the process is stopping
        except Exception:
            log.exception("metrics: reading the broker's state failed")
        return None


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None

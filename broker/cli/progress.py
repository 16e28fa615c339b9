"""A status line for long waits: a spinner with what is being waited for, on a terminal only.

Written here rather than taken from a library: it is one redrawn line on stderr, and
click (already used) has no spinner. It shows only when both stdout and stderr are a terminal:
when either is not (CI, a pipe, a file) it prints nothing at all, so logs stay clean and a
piped stdout (`fedbroker watch ID | grep ...`) never lands on the spinner's line.
"""

from __future__ import annotations

import sys
import threading
import time
from types import TracebackType

import click

FRAMES = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"


def on_a_terminal() -> bool:
    """A person is watching: both streams go to a terminal."""
    return sys.stdout.isatty() and sys.stderr.isatty()


class StatusLine:
    def __init__(self, enabled: bool = True, interval: float = 0.1) -> None:
        self.enabled = enabled and on_a_terminal()
        self.interval = interval
        self._text = "connecting"
        self._started = time.monotonic()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, name="fedbroker status", daemon=True)

    def __enter__(self) -> StatusLine:
        if self.enabled:
            self._thread.start()
        return self

    def __exit__(self, *exc: tuple[type[BaseException], BaseException, TracebackType] | None) -> None:
        if self.enabled:
            self._stop.set()
            self._thread.join()
            self._clear()

    def show(self, text: str) -> None:
        """What is being waited for now."""
        with self._lock:
            self._text = text

    def echo(self, line: str) -> None:
        """A permanent line (stdout), printed above the status line."""
        with self._lock:
            self._clear()
            click.echo(line)

    def _clear(self) -> None:
        if self.enabled:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()

    def _spin(self) -> None:
        frame = 0
        while not self._stop.wait(self.interval):
            waited = int(time.monotonic() - self._started)
            with self._lock:
                sys.stderr.write(f"\r\033[K{FRAMES[frame % len(FRAMES)]} {self._text} ({waited}s)")
                sys.stderr.flush()
            frame += 1

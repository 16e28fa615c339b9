"""The event loop the broker and the agents run on: uvloop where it is installed.

uvloop is asyncio's loop rewritten in Cython over libuv: the same API, and less
CPU for each callback and socket wakeup. The broker's loop does little else but
gRPC calls and their callbacks, so that overhead is much of its cost per submit
(bench/e2e.py). Where uvloop is missing (Windows) the standard loop runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(main)` on the fastest loop available here."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency wherever it builds
        return asyncio.run(main)
    return uvloop.run(main)

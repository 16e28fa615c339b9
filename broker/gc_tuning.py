"""Keep the garbage collector's full passes off the hot paths of the broker and the agents."""

from __future__ import annotations

import gc


def tune_gc() -> None:
    """Freeze what exists now out of collection, and collect less often.

    The broker holds many long-lived objects (every unfinished workload, the core's
    indexes); a full collection walks them all and stalled a 2,000-workload heartbeat for
    ~50 ms (bench/heartbeat.py). A site's agent launching a thousand attempts at once spent
    as much in collections as in its own work. Neither makes many reference cycles."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)

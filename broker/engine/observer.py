"""What the engine tells observers after each committed cycle (metrics, state-change logs).

The engine calls `cycle_done` once per cycle whose commit succeeded, after publishing, with
the cycle's `Tx`: observers count and log in bulk from it instead of hooking each rule, so
the hot path pays one call per cycle. A cycle whose commit failed is not reported (nothing
in it happened).
"""

from __future__ import annotations

from typing import Protocol

from broker.engine.tx import Tx


class CycleObserver(Protocol):
    def cycle_done(self, tx: Tx, decide_s: float, persist_s: float) -> None: ...


class NoObserver:
    """The default: nothing to do."""

    def cycle_done(self, tx: Tx, decide_s: float, persist_s: float) -> None:
        return None


class Observers:
    """Several observers, called in order."""

    def __init__(self, *observers: CycleObserver) -> None:
        self._observers = observers

    def cycle_done(self, tx: Tx, decide_s: float, persist_s: float) -> None:
        for observer in self._observers:
            observer.cycle_done(tx, decide_s, persist_s)

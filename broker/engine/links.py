"""Each site's link to the broker: its agent's session and when it was last heard from.

What the site *has* (nodes, datasets, health) lives in the placement core and nowhere
else; this is only the connection: which agent speaks for the site, the order of its
reports, and the time bookkeeping that decides when the site counts as gone.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from broker.engine.commands import Inventory
from broker.engine.records import ToAgent


@dataclass(eq=False)
class AgentSession:
    """One Connect stream. Its outbox is drained by the stream; None ends it."""

    site: str
    agent_id: str
    outbox: asyncio.Queue[ToAgent | None] = field(default_factory=asyncio.Queue)
    # Log relays waiting on this stream, by request id (broker/api/logs.py): the agent's
    # chunks go straight to them, outside the engine; None tells them the stream ended.
    log_readers: dict[str, asyncio.Queue[Any]] = field(default_factory=dict)

    def close(self) -> None:
        self.outbox.put_nowait(None)
        self.end_log_readers()

    def end_log_readers(self) -> None:
        """The stream is gone: its log relays stop waiting (and say so)."""
        for reader in self.log_readers.values():
            reader.put_nowait(None)


@dataclass
class SiteLink:
    name: str
    heard_at: float  # attentive-clock time of the last message (or of the broker's start)
    heard: bool = False  # anything heard since this broker started
    session: AgentSession | None = None
    agent_id: str = ""
    report_seq: int = 0  # per session: an agent restarted (or another) starts its own sequence
    # Set on (re)connect: the first report after it is a full account of what the agent
    # runs, so attempts missing from it were lost with the agent.
    awaiting_first_report: bool = False
    unhealthy_since: float | None = None  # when its work started to count as stranded
    # Wall time of its last report (since this broker started, or as stored before it): a lost
    # attempt is billed until then (broker/engine/money.py), not through the requeue grace.
    reported_wall: float | None = None
    # The `reported_wall` last stored (table site_heard): a restarted broker reads it back.
    heard_stored: float | None = None
    # The last snapshot applied, and whether it left nothing to act on: a heartbeat that
    # repeats it (the same object, see commands.Inventory) then costs nothing.
    last_inventory: Inventory | None = None
    settled: bool = False
    # (nodes, datasets, running) as last stored: a snapshot is written only when it changes
    stored: tuple[object, ...] | None = None

    def send(self, message: ToAgent) -> bool:
        if self.session is None:
            return False  # re-sent on reconnect if it is an unacknowledged assignment
        self.session.outbox.put_nowait(message)
        return True

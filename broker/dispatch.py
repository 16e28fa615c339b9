"""Connected agents and what is sent to them.

Each connected agent has one session with an outbox that its Connect stream
drains. Sending to a site without a session is not an error: the broker
re-sends unacknowledged assignments when the agent connects again.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from fedbroker.v1 import agent_service_pb2


@dataclass(eq=False)
class AgentSession:
    site: str
    agent_id: str
    outbox: asyncio.Queue[agent_service_pb2.BrokerMessage | None] = field(default_factory=asyncio.Queue)

    def close(self) -> None:
        self.outbox.put_nowait(None)  # tells the stream to end


class Dispatcher:
    def __init__(self) -> None:
        self._sessions: dict[str, AgentSession] = {}

    def open(self, site: str, agent_id: str) -> AgentSession:
        """A new session for site; an older one (a stale stream) is closed."""
        old = self._sessions.get(site)
        if old is not None:
            old.close()
        session = AgentSession(site, agent_id)
        self._sessions[site] = session
        return session

    def close(self, session: AgentSession) -> bool:
        """Forget session if it is still the site's current one; True if it was."""
        if self._sessions.get(session.site) is session:
            del self._sessions[session.site]
            return True
        return False

    def connected(self, site: str) -> bool:
        return site in self._sessions

    def current(self, site: str) -> AgentSession | None:
        return self._sessions.get(site)

    def close_all(self) -> None:
        for session in self._sessions.values():
            session.close()
        self._sessions.clear()

    def send(self, site: str, message: agent_service_pb2.BrokerMessage) -> bool:
        session = self._sessions.get(site)
        if session is None:
            return False
        session.outbox.put_nowait(message)
        return True

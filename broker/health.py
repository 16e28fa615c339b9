"""The gRPC health service tells the truth: SERVING only while the database answers and this
broker is the active one.

A probe (``SELECT 1`` on its own connection, on a worker thread) runs every `interval_s`;
a probe that raises or takes longer than `timeout_s` counts as unreachable. A slow commit
does not: the probe does not wait for the writer. The role (`broker.role`) changes the
status at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from grpc_health.v1 import health, health_pb2
from sqlalchemy import text

from broker.role import BrokerRole
from broker.store import Store

log = logging.getLogger("fedbroker.health")
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class HealthMonitor:
    def __init__(
        self,
        servicer: health.aio.HealthServicer,
        store: Store,
        role: BrokerRole,
        services: Sequence[str],
        writers: Sequence[str] = (),
        *,
        interval_s: float = 5.0,
        timeout_s: float = 10.0,
    ) -> None:
        self._servicer = servicer
        self._store = store
        self._role = role
        self._services = ("", *services)
        self._writers = frozenset(writers)  # served by the active broker only
        self._interval_s = interval_s
        self._timeout_s = timeout_s
        self._changed = asyncio.Event()
        self.db_reachable: bool | None = None  # None: not probed yet
        self._status: tuple[int, int] | None = None  # (reads, writes)
        role.on_change(lambda _: self._changed.set())

    async def check(self) -> None:
        """Probe once and publish the status."""
        self._changed.clear()
        self.db_reachable = await self._probe()
        await self._publish()

    async def run(self) -> None:
        """Probe and publish every `interval_s`, and at once when the role changes, until cancelled."""
        while True:
            await self.check()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), self._interval_s)

    async def _probe(self) -> bool:
        def select_one() -> None:
            with self._store.engine.connect() as conn:
                conn.execute(text("SELECT 1"))

        try:
            await asyncio.wait_for(asyncio.to_thread(select_one), self._timeout_s)
        except Exception as error:
            if self.db_reachable is not False:
                log.error(
                    "database unreachable: %s", (str(error).splitlines() or [type(error).__name__])[0][:300]
                )
            return False
        if self.db_reachable is False:
            log.warning("database reachable again")
        return True

    async def _publish(self) -> None:
        # A standby answers reads from the database: it serves all but the writers' services
        # (a readiness probe on fedbroker.v1.WorkloadService sends writes to the active one).
        reads = SERVING if self.db_reachable else NOT_SERVING
        writes = SERVING if self.db_reachable and self._role.active else NOT_SERVING
        if (reads, writes) == self._status:
            return
        if self._status is not None:
            log.warning(
                "health: %s (database %s, role %s)",
                health_pb2.HealthCheckResponse.ServingStatus.Name(writes),
                "reachable" if self.db_reachable else "unreachable",
                self._role.current,
            )
        self._status = (reads, writes)
        for name in self._services:
            await self._servicer.set(name, writes if name in self._writers else reads)

"""Idempotent submit in the engine, on SQLite and PostgreSQL: repeats answered from memory, from
the database once ended or after a restart, and by the unique index when memory has let go."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from sqlalchemy import func, select

from broker.engine.requests import RecentRequests
from broker.errors import InvalidArgument, Unavailable
from broker.store.tables import LedgerRow, WorkloadRow
from tests.store.engine_harness import OTHER, TENANT, Harness, spec, subsidised_federation

Scenario = Callable[[Harness], Awaitable[None]]
W = WorkloadRow.__table__  # type: ignore[attr-defined]
L = LedgerRow.__table__  # type: ignore[attr-defined]


def run(db_url: str, scenario: Scenario) -> None:
    async def main() -> None:
        harness = await Harness.start(subsidised_federation(), db_url)
        try:
            await scenario(harness)
        finally:
            await harness.stop()

    asyncio.run(main())


def stored(h: Harness, request_id: str) -> list[str]:
    with h.engine.store.engine.connect() as conn:
        return list(conn.execute(select(W.c.id).where(W.c.request_id == request_id)).scalars())


def reservations(h: Harness, workload_id: str) -> int:
    with h.engine.store.engine.connect() as conn:
        query = select(func.count()).where(L.c.workload_id == workload_id, L.c.kind == "reserve")
        return int(conn.execute(query).scalar_one())


def test_repeats_get_the_first_workload(db_url: str) -> None:
    async def scenario(h: Harness) -> None:
        await h.connect()
        first, _ = await h.engine.submit(TENANT, spec(), b"", "r-1")
        assert first.state == "PLACED" and first.request_id == "r-1"
        again, repeat = await h.engine.submit(TENANT, spec(), b"", "r-1")
        assert again.id == first.id and repeat["repeat"]
        other, _ = await h.engine.submit(OTHER, spec(), b"", "r-1")  # per tenant
        assert other.id != first.id
        assert sorted(stored(h, "r-1")) == sorted([first.id, other.id])
        assert reservations(h, first.id) == 1
        with pytest.raises(InvalidArgument, match="another spec"):
            await h.engine.submit(TENANT, spec(max_attempts=3), b"", "r-1")
        # No request id: no promise, a new workload each time (as before).
        a, _ = await h.engine.submit(TENANT, spec(), b"")
        b, _ = await h.engine.submit(TENANT, spec(), b"")
        assert a.id != b.id

        await h.update(first.id, 1, "RUNNING")
        await h.update(first.id, 1, "SUCCEEDED")
        assert first.id not in h.engine.state.live
        ended, _ = await h.engine.submit(TENANT, spec(), b"", "r-1")  # from the database now
        assert (ended.id, ended.state) == (first.id, "SUCCEEDED")
        assert reservations(h, first.id) == 1

    run(db_url, scenario)


def test_a_restart_rebuilds_the_map_and_memory_is_bounded(db_url: str) -> None:
    async def scenario(h: Harness) -> None:
        await h.connect()
        first, _ = await h.engine.submit(TENANT, spec(), b"", "r-restart")
        await h.engine._rebuild(fresh=True)  # what a start or a takeover does
        assert h.engine.state.requests.get(TENANT, "r-restart") == first.id
        again, _ = await h.engine.submit(TENANT, spec(), b"", "r-restart")
        assert again.id == first.id

        # Memory lets go of the oldest ids; the unique index still refuses a second workload,
        # and the retry that follows the failed cycle is answered with the first one.
        h.engine.state.requests = RecentRequests(limit=2)
        old, _ = await h.engine.submit(TENANT, spec(), b"", "r-old")
        for n in range(3):
            await h.engine.submit(TENANT, spec(), b"", f"r-new-{n}")
        assert h.engine.state.requests.get(TENANT, "r-old") is None
        with pytest.raises(Unavailable):  # the cycle's commit failed on the unique index
            await h.engine.submit(TENANT, spec(), b"", "r-old")
        retried, _ = await h.engine.submit(TENANT, spec(), b"", "r-old")
        assert retried.id == old.id
        assert stored(h, "r-old") == [old.id]
        assert reservations(h, old.id) <= 1  # queued behind the first (the site is full) or placed once

    run(db_url, scenario)


def test_recent_requests_keep_the_newest() -> None:
    recent = RecentRequests(limit=3)
    recent.load([("t", f"r{n}", f"w{n}") for n in range(5)])
    assert len(recent) == 3
    assert [recent.get("t", f"r{n}") for n in range(5)] == [None, None, "w2", "w3", "w4"]

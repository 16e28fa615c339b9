"""A commit that fails at each step leaves memory, store and agents agreeing (SQLite and PostgreSQL).

The failure is real: a database trigger aborts the statement, so the whole transaction
rolls back, exactly as a constraint violation or a lost connection would. Afterwards the
engine must have published nothing of that cycle and rebuilt its memory from the store.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from decimal import Decimal

import pytest
from sqlalchemy import create_engine, select, text

from broker.engine import commands as c
from broker.errors import Unavailable
from broker.lifecycle import ACTIVE, QUEUED
from broker.store import LedgerRow
from tests.store.engine_harness import TENANT, Harness, federation, subsidised_federation

Scenario = Callable[[Harness], Awaitable[None]]


class Trigger:
    """An aborting trigger on `table` for `event` rows matching `when` (SQL on NEW)."""

    def __init__(self, db_url: str, table: str, event: str, when: str) -> None:
        self.url = db_url.replace("postgresql://", "postgresql+psycopg://", 1)
        self.table, self.event, self.when = table, event, when

    def _run(self, *statements: str) -> None:
        engine = create_engine(self.url)
        with engine.begin() as conn:
            for statement in statements:
                conn.execute(text(statement))
        engine.dispose()

    def __enter__(self) -> Trigger:
        if self.url.startswith("sqlite"):
            self._run(
                f"CREATE TRIGGER boom BEFORE {self.event} ON {self.table} WHEN {self.when} "
                "BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
            )
        else:
            self._run(
                "CREATE FUNCTION boom() RETURNS trigger AS $$ BEGIN "
                "RAISE EXCEPTION 'injected failure'; END $$ LANGUAGE plpgsql",
                f"CREATE TRIGGER boom BEFORE {self.event} ON {self.table} FOR EACH ROW "
                f"WHEN ({self.when}) EXECUTE FUNCTION boom()",
            )
        return self

    def __exit__(self, *exc: object) -> None:
        if self.url.startswith("sqlite"):
            self._run("DROP TRIGGER boom")
        else:
            self._run(f"DROP TRIGGER boom ON {self.table}", "DROP FUNCTION boom()")


async def assert_agree(h: Harness) -> None:
    """Memory (live workloads, the core's queue and reservations) matches the store exactly."""
    stored = {r.id: r for r in await h.engine.list_workloads(None, [], 0)}
    unfinished = {i: r for i, r in stored.items() if r.state in (QUEUED, *ACTIVE)}
    state = h.engine.state
    assert {i: (w.state, w.site, w.attempt) for i, w in state.live.items()} == {
        i: (r.state, r.site, r.attempt) for i, r in unfinished.items()
    }
    assert set(state.core.queued_ids()) == {i for i, r in unfinished.items() if r.state == QUEUED}
    held = {i for i, r in unfinished.items() if r.state in ACTIVE}
    assert {i for i in held if state.core.explain(i) is not None} == held


def run(db_url: str, scenario: Scenario, subsidised: bool = False) -> None:
    async def main() -> None:
        h = await Harness.start(subsidised_federation() if subsidised else federation(), db_url)
        try:
            await scenario(h)
        finally:
            await h.stop()

    asyncio.run(main())


def test_a_failed_submit_is_not_acknowledged_and_leaves_nothing(db_url: str) -> None:
    async def scenario(h: Harness) -> None:
        await h.connect()
        h.sent()
        with Trigger(db_url, "workloads", "INSERT", "NEW.name = 'poison'"):
            results = await asyncio.gather(
                h.submit(name="poison"), h.submit(name="ok"), return_exceptions=True
            )
            assert isinstance(results[0], Unavailable)  # in one cycle with it, "ok" may share its fate
        assert h.sent() == []  # no assignment for anything that was not stored
        await assert_agree(h)
        stored = {r.name for r in await h.engine.list_workloads(None, [], 0)}
        assert "poison" not in stored
        # The failed submit's GPUs are free again: two more 8-GPU workloads fit the 16-GPU site.
        survivors = len(stored)
        records = [await h.submit(name=f"after{i}") for i in range(2 - survivors)]
        assert all(r.state == "PLACED" for r in records)
        await assert_agree(h)

    run(db_url, scenario)


def test_a_failed_queue_pass_places_nothing_and_places_once_later(db_url: str) -> None:
    async def scenario(h: Harness) -> None:
        await h.connect()
        first, second = await h.submit(name="a"), await h.submit(name="b")
        waiting = await h.submit(name="waiting")
        assert waiting.state == QUEUED
        h.sent()
        with Trigger(db_url, "workloads", "UPDATE", "NEW.state = 'PLACED' AND OLD.state = 'QUEUED'"):
            with pytest.raises(Unavailable):  # frees 8 GPUs: the pass places 'waiting', and fails
                await h.update(first.id, 1, "SUCCEEDED")
            assert h.sent() == []
            await assert_agree(h)
            assert (await h.get(waiting.id)).state == QUEUED
            assert (await h.get(first.id)).state == "PLACED"  # its update went down with the cycle
        # The agent's next snapshot says it again; now it sticks, and 'waiting' is placed once.
        await h.report(attempts=((first.id, 1, "SUCCEEDED"), (second.id, 1, "RUNNING")))
        assert (await h.get(first.id)).state == "SUCCEEDED"
        assert h.assignments() == [(waiting.id, 1)]
        await assert_agree(h)

    run(db_url, scenario)


def test_a_failed_report_is_applied_by_the_next_one(db_url: str) -> None:
    async def scenario(h: Harness) -> None:
        await h.connect(count=2)
        with Trigger(db_url, "sites", "INSERT", "1 = 1"):
            with pytest.raises(Unavailable):  # a changed snapshot must be stored: the commit fails
                await h.report(count=4)
            await assert_agree(h)
            assert h.engine.state.core.site_usage("cyberport").gpus_total == 16
        await h.report(count=4)
        assert h.engine.state.core.site_usage("cyberport").gpus_total == 32

    run(db_url, scenario)


def test_a_failed_cancel_sends_no_cancel_and_keeps_the_reservation(db_url: str) -> None:
    async def scenario(h: Harness) -> None:
        await h.connect()
        record = await h.submit()
        h.sent()
        with Trigger(db_url, "workloads", "UPDATE", "NEW.state = 'CANCELLED'"):
            with pytest.raises(Unavailable):
                await h.engine.call(c.Cancel(record.id, f"tenant {TENANT}", TENANT))
            assert h.sent() == []
            assert (await h.get(record.id)).state == "PLACED"
            assert h.engine.state.core.site_usage("cyberport").gpus_reserved == 8
            await assert_agree(h)
        await h.engine.call(c.Cancel(record.id, f"tenant {TENANT}", TENANT))
        assert h.cancels() == [(record.id, 1)]

    run(db_url, scenario)


def test_a_failed_settlement_is_settled_once_when_the_end_is_reported_again(db_url: str) -> None:
    async def scenario(h: Harness) -> None:
        await h.connect()
        record = await h.submit(subsidy="required", estimated_hours=2)
        await h.update(record.id, 1, "RUNNING")
        h.clock.wall_now += 3600
        with Trigger(db_url, "ledger", "INSERT", "NEW.kind = 'settle'"):
            with pytest.raises(Unavailable):
                await h.update(record.id, 1, "SUCCEEDED")
            assert (await h.engine.usage(None))[0] == []
            assert (await h.get(record.id)).state == "RUNNING"
            assert h.engine.state.money.book.open[record.id].program_hkd == Decimal("448")
            await assert_agree(h)
        await h.report(allocated=8, attempts=((record.id, 1, "SUCCEEDED"),))
        await h.report(attempts=((record.id, 1, "SUCCEEDED"),))  # and again: no second settlement
        assert await ledger_kinds(h) == ["reserve", "settle"]
        rows, budgets = await h.engine.usage(None)
        assert len(rows) == 1 and rows[0]["program_hkd"] == Decimal("224.00")  # 8 x 1 h x 40 x 0.7
        assert budgets[0]["reserved_hkd"] == 0

    run(db_url, scenario, subsidised=True)


def test_a_failed_reservation_places_nothing_and_holds_nothing(db_url: str) -> None:
    async def scenario(h: Harness) -> None:
        await h.connect()
        h.sent()
        with Trigger(db_url, "ledger", "INSERT", "NEW.kind = 'reserve'"):
            with pytest.raises(Unavailable):
                await h.submit(subsidy="required", estimated_hours=2)
            assert h.sent() == []
            assert await ledger_kinds(h) == []
            assert h.engine.state.money.book.open == {}
            assert h.engine.state.core.budget_left(TENANT) == 1000.0
            await assert_agree(h)
        record = await h.submit(subsidy="required", estimated_hours=2)
        assert record.state == "PLACED" and await ledger_kinds(h) == ["reserve"]
        assert h.engine.state.core.budget_left(TENANT) == 552.0

    run(db_url, scenario, subsidised=True)


def test_a_failed_release_keeps_the_reservation_until_the_cancel_is_stored(db_url: str) -> None:
    async def scenario(h: Harness) -> None:
        await h.connect()
        record = await h.submit(subsidy="required", estimated_hours=2)
        with Trigger(db_url, "ledger", "INSERT", "NEW.kind = 'release'"):
            with pytest.raises(Unavailable):
                await h.engine.call(c.Cancel(record.id, f"tenant {TENANT}", TENANT))
            assert (await h.get(record.id)).state == "PLACED"
            assert h.engine.state.money.book.open[record.id].program_hkd == Decimal("448")
            assert (await h.engine.usage(None))[1][0]["reserved_hkd"] == Decimal("448")
            await assert_agree(h)
        await h.engine.call(c.Cancel(record.id, f"tenant {TENANT}", TENANT))
        assert await ledger_kinds(h) == ["reserve", "release"]
        assert (await h.engine.usage(None))[1][0]["left_hkd"] == Decimal("1000.0")

    run(db_url, scenario, subsidised=True)


async def ledger_kinds(h: Harness) -> list[str]:
    table = LedgerRow.__table__  # type: ignore[attr-defined]
    query = select(table.c.kind).order_by(table.c.seq)
    return await h.engine.read(lambda conn: [k for (k,) in conn.execute(query)])

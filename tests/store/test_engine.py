"""The engine's lifecycle rules on a real database (SQLite and PostgreSQL), driven as API and agents would.

No gRPC here: commands go straight to the engine (tests/store/engine_harness.py), so each
rule is checked on both databases in milliseconds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from decimal import Decimal

import pytest

from broker.config import FederationConfig
from broker.engine import commands as c
from broker.engine.records import Assign
from broker.errors import FailedPrecondition, InvalidArgument, NotFound
from tests.store.engine_harness import (
    OTHER,
    TENANT,
    Harness,
    federation,
    spec,
    subsidised_federation,
)

Scenario = Callable[[Harness], Awaitable[None]]


def run(db_url: str, scenario: Scenario, config: FederationConfig | None = None) -> None:
    async def main() -> None:
        harness = await Harness.start(config or federation(), db_url)
        try:
            await scenario(harness)
        finally:
            await harness.stop()

    asyncio.run(main())


def test_lifecycle_from_submit_to_succeeded(db_url: str) -> None:
    async def scenario(h: Harness) -> None:
        await h.connect()
        record, explanation = await h.engine.submit(TENANT, spec(), b"")
        assert (record.state, record.site, record.attempt) == ("PLACED", "cyberport", 1)
        assert explanation["chosen"] == "cyberport"
        assign = next(m for m in h.sent() if isinstance(m, Assign))
        assert (assign.workload_id, assign.attempt, assign.tenant) == (record.id, 1, TENANT)
        assert assign.trace_context["traceparent"].split("-")[1] == record.trace_id

        await h.ack(record.id, 1)
        await h.update(record.id, 1, "RUNNING")
        assert h.engine.state.core.site_usage("cyberport").gpus_reserved == 8
        await h.report(allocated=8, attempts=((record.id, 1, "RUNNING"),))
        usage = h.engine.state.core.site_usage("cyberport")
        assert (usage.gpus_reserved, usage.gpus_allocated, usage.gpus_free) == (0, 8, 8)
        await h.update(record.id, 1, "SUCCEEDED", message="exit code 0")
        assert (await h.get(record.id)).state == "SUCCEEDED"
        assert record.id not in h.engine.state.live  # ended: only in the database now
        events = await h.engine.events_after(record.id, 0)
        assert [e.state for e in events] == ["PLACED", "RUNNING", "SUCCEEDED"]
        # A late, repeated report never resurrects a finished workload; it is told to stop.
        h.sent()
        await h.report(attempts=((record.id, 1, "RUNNING"),))
        assert (await h.get(record.id)).state == "SUCCEEDED"
        assert h.cancels() == [(record.id, 1)]

    run(db_url, scenario)


def test_no_overcommit_and_queue_drains_in_order(db_url: str) -> None:
    async def scenario(h: Harness) -> None:
        await h.connect()  # 16 GPUs; sandy-ridge has not reported
        records = [await h.submit(name=f"w{i}") for i in range(4)]
        assert [r.state for r in records] == ["PLACED", "PLACED", "QUEUED", "QUEUED"]
        waiting = await h.engine.explain(records[2].id, TENANT)
        assert waiting["chosen"] is None and waiting["summary"].startswith("waiting")
        await h.update(records[0].id, 1, "SUCCEEDED")
        assert (await h.get(records[2].id)).state == "PLACED"
        assert (await h.get(records[3].id)).state == "QUEUED"

    run(db_url, scenario)


def test_concurrent_submits_never_overcommit(db_url: str) -> None:
    async def scenario(h: Harness) -> None:
        await h.connect()  # 16 GPUs
        records = await asyncio.gather(*(h.submit(name=f"w{i}") for i in range(20)))
        assert sorted(r.state for r in records).count("PLACED") == 2
        assert h.engine.cycles < 20  # submits that arrived together shared cycles (and commits)

    run(db_url, scenario)


def test_refused_and_invalid_submissions_store_nothing(db_url: str) -> None:
    async def scenario(h: Harness) -> None:
        await h.connect()
        with pytest.raises(FailedPrecondition, match="can never fit any site"):
            await h.submit(resources={"gpus_per_replica": 8, "gpu_model": "B200"})
        with pytest.raises(InvalidArgument, match=r"datasets\[0\]: unknown dataset 'nope'"):
            await h.submit(datasets=["nope"])
        assert await h.engine.list_workloads(None, [], 0) == []
        explanation = h.engine.evaluate(TENANT, spec())
        assert explanation["chosen"] == "cyberport"
        assert await h.engine.list_workloads(None, [], 0) == []

    run(db_url, scenario)


def test_tenants_see_only_their_own(db_url: str) -> None:
    async def scenario(h: Harness) -> None:
        record = await h.submit()
        with pytest.raises(NotFound):
            await h.engine.get(record.id, OTHER)
        with pytest.raises(FailedPrecondition):
            await h.engine.call(c.Cancel(record.id, f"tenant {OTHER}", OTHER))
        assert await h.engine.list_workloads(OTHER, [], 0) == []
        assert [r.id for r in await h.engine.list_workloads(None, [], 0)] == [record.id]
        assert (await h.get(record.id)).state == "QUEUED"

    run(db_url, scenario)


def test_failed_attempt_is_retried_until_max_attempts(db_url: str) -> None:
    async def scenario(h: Harness) -> None:
        await h.connect()
        record = await h.submit(max_attempts=2)
        await h.update(record.id, 1, "FAILED", message="exit code 3")
        again = await h.get(record.id)
        assert (again.state, again.attempt) == ("PLACED", 2)
        # A report still showing attempt 1 is fenced: the agent is told to cancel it.
        h.sent()
        await h.report(attempts=((record.id, 1, "RUNNING"),))
        assert h.cancels() == [(record.id, 1)]
        await h.update(record.id, 2, "FAILED", message="exit code 3")
        final = await h.get(record.id)
        assert final.state == "FAILED" and "no attempts left (2)" in final.message
        assert h.engine.state.core.site_usage("cyberport").gpus_reserved == 0

    run(db_url, scenario)


def test_cancel_running_tells_the_agent(db_url: str) -> None:
    async def scenario(h: Harness) -> None:
        await h.connect()
        record = await h.submit()
        h.sent()
        cancelled = await h.engine.call(c.Cancel(record.id, f"tenant {TENANT}", TENANT))
        assert cancelled.state == "CANCELLED"
        assert h.cancels() == [(record.id, 1)]
        assert (await h.get(record.id)).state == "CANCELLED"
        with pytest.raises(FailedPrecondition, match="already ended"):
            await h.engine.call(c.Cancel(record.id, "operator sre", None))
        assert h.engine.state.core.site_usage("cyberport").gpus_reserved == 0

    run(db_url, scenario)


def test_dead_site_requeues_untaken_now_and_running_after_grace(db_url: str) -> None:
    async def scenario(h: Harness) -> None:
        await h.connect()
        running = await h.submit(name="running")
        untaken = await h.submit(name="untaken")
        await h.update(running.id, 1, "RUNNING")
        await h.advance(11)  # past the 10 s TTL
        assert (await h.get(untaken.id)).state == "QUEUED"
        assert (await h.get(running.id)).state == "RUNNING"
        await h.advance(30)  # past the 30 s grace
        lost = await h.get(running.id)
        assert lost.state == "QUEUED" and "unavailable" in lost.message
        # The agent returns with the stale attempt: it is fenced, and the work is placed anew.
        await h.connect(attempts=((running.id, 1, "RUNNING"),))
        assert (running.id, 1) in h.cancels()
        assert (await h.get(running.id)).attempt == 2

    run(db_url, scenario)


def test_a_stalled_broker_does_not_declare_live_sites_dead(db_url: str) -> None:
    async def scenario(h: Harness) -> None:
        await h.connect()
        record = await h.submit()
        await h.update(record.id, 1, "RUNNING")
        # The broker stalls for 60 s (no ticks, nothing read), longer than TTL and grace.
        h.clock.mono_now += 60
        h.clock.wall_now += 60
        h.engine.clock.tick()
        await h.settle()
        assert h.engine.state.core.healthy("cyberport")
        assert (await h.get(record.id)).state == "RUNNING"

    run(db_url, scenario)


def test_restart_keeps_every_workload(db_url: str) -> None:
    async def first(h: Harness) -> None:
        await h.connect()
        await h.submit(name="placed")
        await h.submit(name="q0")
        await h.submit(name="q1")
        await h.submit(name="q2")

    async def second(h: Harness) -> None:
        rows = {r.name: r for r in await h.engine.list_workloads(None, [], 0)}
        assert {n: r.state for n, r in rows.items()} == {
            "placed": "PLACED",
            "q0": "PLACED",
            "q1": "QUEUED",
            "q2": "QUEUED",
        }
        # The placed attempts' reservations are restored: nothing is placed on top of them.
        await h.connect()
        assert (await h.get(rows["q1"].id)).state == "QUEUED"
        # The untaken assignments are re-sent when the agent reconnects.
        assert {w for w, _ in h.assignments()} == {rows["placed"].id, rows["q0"].id}

    run(db_url, first)
    run(db_url, second)


def test_a_second_live_agent_for_a_site_is_refused(db_url: str) -> None:
    async def scenario(h: Harness) -> None:
        await h.connect()
        with pytest.raises(FailedPrecondition, match="already has a live agent 'cyberport-agent'"):
            await h.engine.call(c.Hello("cyberport", "other"))
        # The same agent reconnecting (its old stream not yet noticed as broken) replaces its session.
        old = h.sessions["cyberport"]
        await h.connect()
        assert h.sessions["cyberport"] is not old
        drained = [old.outbox.get_nowait() for _ in range(old.outbox.qsize())]
        assert drained[-1] is None  # the old stream is told to end
        assert h.engine.links["cyberport"].session is h.sessions["cyberport"]

    run(db_url, scenario)


def test_a_cancel_missed_while_the_agent_was_away_is_sent_when_it_reports(db_url: str) -> None:
    async def scenario(h: Harness) -> None:
        await h.connect()
        record = await h.submit()
        await h.update(record.id, 1, "RUNNING")
        h.engine.post(c.Gone(h.sessions["cyberport"]))
        await h.engine.call(c.Cancel(record.id, "operator sre", None))  # no agent connected
        await h.connect(attempts=((record.id, 1, "RUNNING"),))
        assert h.cancels() == [(record.id, 1)]
        assert (await h.get(record.id)).state == "CANCELLED"

    run(db_url, scenario)


def test_after_a_restart_sites_get_one_ttl_before_their_work_is_requeued(db_url: str) -> None:
    async def first(h: Harness) -> None:
        await h.connect()
        await h.submit(max_attempts=1)

    async def second(h: Harness) -> None:
        [record] = await h.engine.list_workloads(None, [], 0)
        await h.advance(9)
        assert (await h.get(record.id)).state == "PLACED"  # still within the TTL since start
        await h.advance(3)  # now the site counts as unavailable: the untaken attempt is stranded
        assert (await h.get(record.id)).state == "FAILED"

    run(db_url, first)
    run(db_url, second)


def test_reservation_holds_until_the_site_reports_the_workload_running(db_url: str) -> None:
    async def scenario(h: Harness) -> None:
        await h.connect()
        record = await h.submit()
        # Pods pending: the agent knows the attempt, but its GPUs are not allocated yet.
        await h.report(attempts=((record.id, 1, "PLACED"),))
        assert h.engine.state.core.site_usage("cyberport").gpus_reserved == 8
        assert (await h.get(record.id)).acked  # listed in a report: taken
        await h.report(allocated=8, attempts=((record.id, 1, "RUNNING"),))
        usage = h.engine.state.core.site_usage("cyberport")
        assert (usage.gpus_reserved, usage.gpus_allocated) == (0, 8)

    run(db_url, scenario)


def test_after_a_restart_running_work_is_counted_once(db_url: str) -> None:
    async def first(h: Harness) -> None:
        await h.connect()
        record = await h.submit()
        await h.report(allocated=8, attempts=((record.id, 1, "RUNNING"),))

    async def second(h: Harness) -> None:
        usage = h.engine.state.core.site_usage("cyberport")
        assert (usage.gpus_allocated, usage.gpus_reserved) == (8, 0)

    run(db_url, first)
    run(db_url, second)


async def run_for(h: Harness, workload_id: str, attempt: int, hours: float, end: str = "SUCCEEDED") -> None:
    await h.update(workload_id, attempt, "RUNNING")
    h.clock.wall_now += hours * 3600
    await h.update(workload_id, attempt, end)


def test_subsidy_is_charged_from_the_real_run_once_and_survives_a_restart(db_url: str) -> None:
    async def first(h: Harness) -> None:
        await h.connect()
        # 8 H800 x 2 h estimated x HK$40 = 640; the program's 70% (448) is reserved at placement.
        record = await h.submit(subsidy="required", estimated_hours=2)
        assert record.site == "cyberport"
        _, budgets = await h.engine.usage(None)
        assert budgets == [
            {
                "tenant": TENANT,
                "program": "aiss",
                "budget_hkd": Decimal("1000.0"),
                "spent_hkd": 0,
                "reserved_hkd": Decimal("448"),
                "left_hkd": Decimal("552"),
                "month": "1970-01",
                "cap_hkd": None,
                "cap_used_hkd": Decimal("192"),
            }
        ]
        await run_for(h, record.id, 1, hours=1.5)  # ran 1.5 h: 480, of which the program pays 336
        await h.report(attempts=((record.id, 1, "SUCCEEDED"),))  # repeated: no new charge
        rows, budgets = await h.engine.usage(TENANT)
        assert rows == [
            {
                "tenant": TENANT,
                "program": "aiss",
                "site": "cyberport",
                "gpu_hours": Decimal("12"),
                "total_hkd": Decimal("480.00"),
                "program_hkd": Decimal("336.00"),
                "tenant_hkd": Decimal("144.00"),
            }
        ]
        assert budgets[0]["spent_hkd"] == Decimal("336.00")
        assert budgets[0]["left_hkd"] == Decimal("664.00")
        assert await h.engine.usage(OTHER) == ([], [])

    async def second(h: Harness) -> None:
        assert (await h.engine.usage(None))[1][0]["left_hkd"] == Decimal("664.00")  # spent stays spent

    run(db_url, first, subsidised_federation())
    run(db_url, second, subsidised_federation())


def test_budget_is_never_reused_by_work_placed_after_it_was_spent(db_url: str) -> None:
    async def scenario(h: Harness) -> None:
        await h.connect()
        # Each needs 8 x 2 h x 40 x 0.7 = 448 of the 1000: two fit the budget, a third does not.
        for i in range(2):
            record = await h.submit(name=f"s{i}", subsidy="required", estimated_hours=2)
            await run_for(h, record.id, 1, hours=2)
        with pytest.raises(FailedPrecondition, match="subsidy budget"):
            await h.submit(name="third", subsidy="required", estimated_hours=2)
        assert (await h.engine.usage(None))[1][0]["spent_hkd"] == Decimal("896.00")

    run(db_url, scenario, subsidised_federation())


def test_a_failed_attempt_is_charged_for_the_time_it_ran(db_url: str) -> None:
    async def scenario(h: Harness) -> None:
        await h.connect()
        record = await h.submit(max_attempts=2)
        await run_for(h, record.id, 1, hours=0.5, end="FAILED")
        await run_for(h, record.id, 2, hours=1.0)
        rows, _ = await h.engine.usage(None)
        assert rows[0]["gpu_hours"] == Decimal("12")  # both attempts used the GPUs
        assert rows[0]["total_hkd"] == Decimal("456.00")  # 8 x 1.5 h x HK$38

    run(db_url, scenario)


def test_running_work_a_restarted_agent_no_longer_knows_is_requeued(db_url: str) -> None:
    async def scenario(h: Harness) -> None:
        await h.connect()
        record = await h.submit(max_attempts=2)
        await h.ack(record.id, 1)
        await h.update(record.id, 1, "RUNNING")
        await h.connect()  # a restarted agent says Hello again; its first report lists nothing
        again = await h.get(record.id)
        assert (again.state, again.attempt) == ("PLACED", 2)
        messages = [e.message for e in await h.engine.events_after(record.id, 0) if e.state == "QUEUED"]
        assert messages == ["attempt 1 lost by the cyberport agent; queued for attempt 2"]
        # A later report that still lacks attempt 2 is not a loss: it was only just sent.
        await h.report()
        assert (await h.get(record.id)).attempt == 2

    run(db_url, scenario)


def test_pause_queues_everything_until_resumed_and_survives_a_restart(db_url: str) -> None:
    async def first(h: Harness) -> None:
        await h.connect()
        assert await h.engine.call(c.SetPaused(True, "operator sre")) is True
        record = await h.submit()
        assert record.state == "QUEUED"
        explanation = await h.engine.explain(record.id, None)
        assert "placement is paused by an operator" in explanation["summary"]
        # A workload that can never fit is still refused while paused.
        with pytest.raises(FailedPrecondition):
            await h.submit(resources={"gpus_per_replica": 8, "gpu_model": "B200"})

    async def second(h: Harness) -> None:
        await h.connect()
        [record] = await h.engine.list_workloads(None, [], 0)
        assert (await h.get(record.id)).state == "QUEUED"  # still paused after the restart
        await h.engine.call(c.SetPaused(False, "operator sre"))
        assert (await h.get(record.id)).state == "PLACED"

    run(db_url, first)
    run(db_url, second)


def test_an_unchanged_heartbeat_reads_and_writes_nothing(db_url: str) -> None:
    async def scenario(h: Harness) -> None:
        await h.connect()
        record = await h.submit()
        session = h.sessions["cyberport"]
        content = c.Inventory((), (), (c.AttemptReport(record.id, 1, "RUNNING"),))
        h.engine.post(c.Report(session, 100, content))  # a change: applied and stored once
        await h.settle()
        cycles = h.engine.cycles
        commits_before = h.engine.writer.commits
        for seq in range(101, 111):
            h.engine.post(c.Report(session, seq, content))  # the same content object: a heartbeat
        await h.settle()
        assert h.engine.writer.commits == commits_before  # nothing written for ten heartbeats
        assert h.engine.cycles > cycles

    run(db_url, scenario)

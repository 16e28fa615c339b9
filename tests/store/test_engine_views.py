"""What the engine tells users about workloads now: an unreachable site, GPUs of lost
attempts, past-tense explanations, queue positions, lookups by prefix or name, filters.

Driven through the real engine on SQLite and PostgreSQL (tests/store/engine_harness.py).
"""

from __future__ import annotations

import pytest

from broker.engine import commands as c
from broker.errors import InvalidArgument, NotFound
from broker.store.lookups import Filter
from tests.store.engine_harness import OTHER, TENANT, Harness
from tests.store.test_engine import run


def test_a_silent_site_shows_unreachable_since_its_last_word_and_when_work_is_requeued(db_url: str) -> None:
    async def scenario(h: Harness) -> None:
        await h.connect()
        record = await h.submit()
        await h.update(record.id, 1, "RUNNING")
        last_heard = h.clock.wall_now
        assert h.engine.live_status([await h.get(record.id)]) == {}
        await h.advance(12)  # past the 10 s TTL: unhealthy, the 30 s grace starts
        now = await h.get(record.id)
        assert now.state == "RUNNING"
        status = h.engine.live_status([now])[record.id]
        assert status.site_unreachable_since == pytest.approx(last_heard, abs=0.01)
        swept_at = last_heard + 10 + h.engine.tick_interval  # the first health check past the TTL
        assert status.requeue_at == pytest.approx(swept_at + 30, abs=h.engine.tick_interval + 0.01)
        summary = (await h.engine.explain(record.id, TENANT))["summary"]
        assert summary.startswith("placed on cyberport") and "site cyberport unreachable since " in summary
        assert "requeued at " in summary and "unless it returns" in summary
        # The site comes back: nothing is said any more.
        await h.report(allocated=8, attempts=((record.id, 1, "RUNNING"),))
        assert h.engine.live_status([await h.get(record.id)]) == {}

    run(db_url, scenario)


def test_after_a_requeue_sites_do_not_count_the_lost_attempts_gpus(db_url: str) -> None:
    async def scenario(h: Harness) -> None:
        await h.connect()
        record = await h.submit()
        await h.update(record.id, 1, "RUNNING")
        await h.report(allocated=8, attempts=((record.id, 1, "RUNNING"),))
        assert h.engine.state.core.site_usage("cyberport").gpus_allocated == 8
        await h.advance(45)  # TTL, then the grace: requeued
        assert (await h.get(record.id)).state == "QUEUED"
        usage = h.engine.state.core.site_usage("cyberport")
        assert (usage.gpus_allocated, usage.gpus_reserved) == (0, 0)
        # The agent returns still running the stale attempt: its report is the truth again.
        await h.connect(allocated=8, attempts=((record.id, 1, "RUNNING"),))
        assert h.engine.state.core.site_usage("cyberport").gpus_allocated == 8

    run(db_url, scenario)


def test_the_stored_snapshot_after_a_requeue_survives_a_restart(db_url: str) -> None:
    async def first(h: Harness) -> None:
        await h.connect()
        record = await h.submit(max_attempts=1)
        await h.update(record.id, 1, "RUNNING")
        await h.report(allocated=8, attempts=((record.id, 1, "RUNNING"),))
        await h.advance(45)
        assert (await h.get(record.id)).state == "FAILED"

    async def second(h: Harness) -> None:
        usage = h.engine.state.core.site_usage("cyberport")
        assert (usage.gpus_total, usage.gpus_allocated, usage.gpus_reserved) == (16, 0, 0)

    run(db_url, first)
    run(db_url, second)


def test_right_after_a_restart_running_gpus_count_once_until_and_after_the_agent_reports(
    db_url: str,
) -> None:
    async def first(h: Harness) -> None:
        await h.connect()
        record = await h.submit()
        await h.ack(record.id, 1)
        await h.update(record.id, 1, "RUNNING")  # the restart comes before the next report

    async def second(h: Harness) -> None:
        [record] = await h.engine.list_workloads(None, [], 0)
        usage = h.engine.state.core.site_usage("cyberport")
        assert usage.gpus_allocated + usage.gpus_reserved == 8
        await h.connect(allocated=8, attempts=((record.id, 1, "RUNNING"),))
        usage = h.engine.state.core.site_usage("cyberport")
        assert (usage.gpus_allocated, usage.gpus_reserved) == (8, 0)

    run(db_url, first)
    run(db_url, second)


def test_a_finished_workloads_explanation_is_in_the_past_tense(db_url: str) -> None:
    async def scenario(h: Harness) -> None:
        queued = await h.submit(name="waits")  # no site has reported: it waits
        assert (await h.engine.explain(queued.id, TENANT))["summary"].startswith("waiting")
        await h.engine.call(c.Cancel(queued.id, f"tenant {TENANT}", TENANT))
        summary = (await h.engine.explain(queued.id, TENANT))["summary"]
        assert summary.startswith(f"finished: CANCELLED while queued: cancelled by tenant {TENANT}")
        assert "(it was waiting" in summary

        await h.connect()
        done = await h.submit(name="done")
        await h.update(done.id, 1, "RUNNING")
        await h.update(done.id, 1, "SUCCEEDED", message="exit code 0")
        summary = (await h.engine.explain(done.id, TENANT))["summary"]
        assert summary == "finished: SUCCEEDED on cyberport after 1 attempt: exit code 0"

    run(db_url, scenario)


def test_queued_workloads_have_a_position_and_a_reason_now(db_url: str) -> None:
    async def scenario(h: Harness) -> None:
        await h.connect()
        records = [await h.submit(name=f"w{i}") for i in range(4)]  # 16 GPUs: two fit
        live = h.engine.live_status([await h.get(r.id) for r in records])
        assert [live[r.id].queue_position for r in records[2:]] == [1, 2]
        assert all(live[r.id].waiting_for.startswith("waiting") for r in records[2:])  # type: ignore[union-attr]
        assert records[0].id not in live

    run(db_url, scenario)


def test_a_workload_is_found_by_id_prefix_or_name(db_url: str) -> None:
    async def scenario(h: Harness) -> None:
        first = await h.submit(name="train")
        latest = await h.submit(name="train")
        theirs = await h.submit(tenant=OTHER, name="train")
        assert (await h.engine.get(first.id[:-1], TENANT)).id == first.id  # a unique prefix
        assert (await h.engine.get(first.id, TENANT)).id == first.id
        assert (await h.engine.get("train", TENANT)).id == latest.id  # the latest with that name
        assert (await h.engine.get("train", OTHER)).id == theirs.id
        with pytest.raises(InvalidArgument, match="matches more than one workload"):
            await h.engine.get("train", None)  # an operator: one per tenant
        with pytest.raises(InvalidArgument, match="matches more than one workload"):
            await h.engine.get("wl-", TENANT)
        with pytest.raises(NotFound):
            await h.engine.get(theirs.id[:10], TENANT)  # another tenant's: absent, not ambiguous
        with pytest.raises(NotFound, match=r"no workload 'x{64}'$"):
            await h.engine.get("x" * 10_000, TENANT)  # never echoed unbounded

    run(db_url, scenario)


def test_lists_filter_and_events_follow_from_the_lists_point(db_url: str) -> None:
    async def scenario(h: Harness) -> None:
        await h.connect()
        placed = await h.submit(name="a")
        await h.submit(
            name="b", sites=["sandy-ridge"], backend="kubernetes", ray=None, kubernetes={"image": "i"}
        )
        theirs = await h.submit(tenant=OTHER, name="a")
        mine, seq = await h.engine.find_workloads(Filter(tenant=TENANT, name="a"))
        assert [r.id for r in mine] == [placed.id]
        on_site, _ = await h.engine.find_workloads(Filter(site="cyberport"))
        assert {r.id for r in on_site} == {placed.id, theirs.id}
        queued, _ = await h.engine.find_workloads(Filter(states=("QUEUED",)))
        assert [r.name for r in queued] == ["b"]
        later, _ = await h.engine.find_workloads(Filter(since=h.clock.wall_now + 1))
        assert later == []
        await h.update(placed.id, 1, "RUNNING")
        mine_after = await h.engine.events_since(TENANT, seq)
        assert [(e.workload_id, e.state) for e in mine_after] == [(placed.id, "RUNNING")]
        assert await h.engine.events_since(OTHER, seq) == []

    run(db_url, scenario)

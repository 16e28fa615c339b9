"""Preemption carried out by the engine, on SQLite and PostgreSQL: the core picks the
victim; the engine cancels its attempt at the site (fenced by attempt number), requeues it
without using an attempt, says why in its events and explanation, and the preemptor is
placed once the site reports the victim's GPUs free."""

from __future__ import annotations

from broker.config import FederationConfig
from tests.store.engine_harness import TENANT, Harness, federation
from tests.store.test_engine import run


def preempting() -> FederationConfig:
    return federation(priority_classes=[{"name": "urgent", "priority": 10, "preempt": True}])


def test_a_running_victim_is_cancelled_at_its_site_and_requeued_without_using_an_attempt(db_url: str) -> None:
    async def scenario(h: Harness) -> None:
        await h.connect(count=1)  # one 8-GPU node at cyberport; sandy-ridge offers no ray
        low = await h.submit(name="batch", max_attempts=2)
        await h.ack(low.id, 1)
        await h.update(low.id, 1, "RUNNING")
        await h.report(count=1, allocated=8, attempts=((low.id, 1, "RUNNING"),))
        h.clock.wall_now += 1800  # it runs half an hour (the site keeps reporting)
        await h.report(count=1, allocated=8, attempts=((low.id, 1, "RUNNING"),))
        h.sent()

        urgent = await h.submit(name="urgent", priority=10)
        victim = await h.get(low.id)
        reason = (
            f"preempted at cyberport by {urgent.id} (priority 10 over 0): requeued without using an attempt"
        )
        assert (victim.state, victim.site, victim.attempt, victim.preemptions) == ("QUEUED", None, 1, 1)
        assert victim.message == f"attempt 1 {reason}"
        assert h.cancels() == [(low.id, 1)]  # the normal fencing path: its attempt, by number
        events = await h.engine.events_after(low.id, 0)
        assert (events[-1].state, events[-1].reason, events[-1].message) == (
            "QUEUED",
            "preempted",
            victim.message,
        )
        explained = await h.engine.explain(low.id, TENANT)
        assert reason in explained["summary"] and explained["chosen"] is None
        # The preemptor waits for the site to show the GPUs free, holding them meanwhile.
        assert (await h.get(urgent.id)).state == "QUEUED"

        # The agent stops the old attempt; a late word of it changes nothing.
        await h.update(low.id, 1, "CANCELLED", message="cancelled by the broker")
        await h.report(count=1, allocated=0)
        placed = await h.get(urgent.id)
        assert (placed.state, placed.site, placed.attempt) == ("PLACED", "cyberport", 1)
        assert h.assignments() == [(urgent.id, 1)]
        assert (await h.get(low.id)).state == "QUEUED"

        # The urgent work ends; the victim runs again as attempt 2, and may still fail once
        # and retry: the preemption used none of its 2 attempts.
        await h.update(urgent.id, 1, "SUCCEEDED")
        again = await h.get(low.id)
        assert (again.state, again.attempt) == ("PLACED", 2)
        await h.update(low.id, 2, "FAILED", message="exit code 1", reason="exit")
        retried = await h.get(low.id)
        assert (retried.state, retried.attempt) == ("PLACED", 3)
        assert "queued for attempt 3" in (await h.engine.events_after(low.id, 0))[-2].message

    run(db_url, scenario, preempting())


def test_without_a_preempting_class_higher_priority_only_waits(db_url: str) -> None:
    async def scenario(h: Harness) -> None:
        await h.connect(count=1)
        low = await h.submit(name="batch")
        h.sent()
        urgent = await h.submit(name="urgent", priority=10)
        assert (await h.get(low.id)).state == "PLACED"
        assert (await h.get(urgent.id)).state == "QUEUED"
        assert h.cancels() == []

    run(db_url, scenario)

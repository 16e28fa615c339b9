"""Why an attempt ended decides what it costs the workload (broker/engine/infra.py), on SQLite and PostgreSQL.

The infrastructure's failures (no_capacity, lost; image_pull and launch_error the first
`doubt_free` times) requeue without using an attempt, after a backoff stored on the
workload, up to a limit; the workload's own (exit, oom) use one and requeue at once.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import text

from broker.config import FederationConfig, InfraRetry
from broker.engine import commands as c
from broker.engine.infra import Verdict, backoff_s, judge
from broker.store import Store, schema
from broker.store.db import open_engine
from tests.store.engine_harness import TENANT, Harness, federation
from tests.store.test_engine import run

POLICY = InfraRetry(backoff_s=5, backoff_max_s=300, limit=10, doubt_free=2)


@pytest.mark.parametrize(
    ("reason", "infra", "doubt", "verdict"),
    [
        ("exit", 0, 0, Verdict(counted=True)),
        ("oom", 0, 0, Verdict(counted=True)),
        ("", 0, 0, Verdict(counted=True)),
        ("something-new", 0, 0, Verdict(counted=True)),  # unknown: the workload's own
        ("no_capacity", 0, 0, Verdict(counted=False, delay_s=5)),
        ("lost", 3, 0, Verdict(counted=False, delay_s=40)),
        ("no_capacity", 9, 0, Verdict(counted=False, delay_s=300)),  # 5 x 2^9 capped
        ("lost", 10, 0, Verdict(counted=False, gave_up=True)),
        ("image_pull", 0, 0, Verdict(counted=False, delay_s=5, doubtful=True)),
        ("launch_error", 1, 1, Verdict(counted=False, delay_s=10, doubtful=True)),
        ("image_pull", 2, 2, Verdict(counted=True)),  # the benefit of the doubt is spent
        ("image_pull", 10, 1, Verdict(counted=False, gave_up=True)),
    ],
)
def test_judge(reason: str, infra: int, doubt: int, verdict: Verdict) -> None:
    assert judge(reason, infra, doubt, POLICY) == verdict


def test_backoff_doubles_and_is_bounded() -> None:
    assert [backoff_s(n, POLICY) for n in (1, 2, 3, 7, 8, 100)] == [5, 10, 20, 300, 300, 300]


def quick(**retry: float) -> FederationConfig:
    return federation(infra_retry={"backoff_s": 1, "backoff_max_s": 4, "limit": 3, "doubt_free": 1, **retry})


def test_no_capacity_requeues_without_using_an_attempt_after_a_backoff(db_url: str) -> None:
    async def scenario(h: Harness) -> None:
        await h.connect()
        record = await h.submit(max_attempts=2)
        await h.update(record.id, 1, "FAILED", message="no room: needs 1x8 H800", reason="no_capacity")
        waiting = await h.get(record.id)
        assert (waiting.state, waiting.site, waiting.reason, waiting.infra_requeues) == (
            "QUEUED",
            None,
            "no_capacity",
            1,
        )
        assert waiting.retry_at == h.clock.wall_now + 5
        assert h.engine.state.core.site_usage("cyberport").gpus_reserved == 0  # holds nothing meanwhile
        explained = await h.engine.explain(record.id, TENANT)
        assert explained["summary"].startswith("backing off 5s before attempt 2")
        assert "no_capacity" in explained["summary"] and explained["chosen"] is None
        h.sent()
        await h.advance(4)
        assert (await h.get(record.id)).state == "QUEUED"
        assert h.assignments() == []
        await h.advance(1)
        placed = await h.get(record.id)
        assert (placed.state, placed.attempt, placed.retry_at) == ("PLACED", 2, None)
        assert h.assignments() == [(record.id, 2)]
        # Attempts 2 and 3 fail by the workload's own doing: both count, and max_attempts=2 allows both.
        await h.update(record.id, 2, "FAILED", message="exit code 1", reason="exit")
        assert (await h.get(record.id)).attempt == 3
        await h.update(record.id, 3, "FAILED", message="exit code 1", reason="exit")
        final = await h.get(record.id)
        assert final.state == "FAILED" and "no attempts left (2)" in final.message
        events = await h.engine.events_after(record.id, 0)
        assert [(e.state, e.attempt, e.reason) for e in events] == [
            ("PLACED", 1, ""),
            ("QUEUED", 1, "no_capacity"),
            ("PLACED", 2, ""),
            ("QUEUED", 2, "exit"),
            ("PLACED", 3, ""),
            ("FAILED", 3, "exit"),
        ]
        assert "the infrastructure's failure, no attempt used (1 of 10 such requeues)" in events[1].message

    run(db_url, scenario)


def test_an_endless_infrastructure_loop_ends_failed_with_growing_backoffs(db_url: str) -> None:
    async def scenario(h: Harness) -> None:
        await h.connect()
        record = await h.submit(max_attempts=1)
        waits = []
        for attempt in (1, 2, 3):
            await h.update(record.id, attempt, "FAILED", message="the Ray job is gone", reason="lost")
            retry_at = (await h.get(record.id)).retry_at
            assert retry_at is not None
            waits.append(retry_at - h.clock.wall_now)
            await h.advance(waits[-1])
            await h.report()  # a heartbeat: the site stays healthy while the clock runs
            assert (await h.get(record.id)).attempt == attempt + 1
        assert waits == [1, 2, 4]
        await h.update(record.id, 4, "FAILED", message="the Ray job is gone", reason="lost")
        final = await h.get(record.id)
        assert final.state == "FAILED" and final.reason == "lost"
        assert "gave up after 3 requeues for the infrastructure's failures" in final.message
        assert record.id not in h.engine.state.backing_off

    run(db_url, scenario, quick())


def test_image_pull_gets_the_benefit_of_the_doubt_once_then_uses_attempts(db_url: str) -> None:
    async def scenario(h: Harness) -> None:
        await h.connect()
        record = await h.submit(max_attempts=1)
        await h.update(record.id, 1, "FAILED", message="ImagePullBackOff: x", reason="image_pull")
        assert (await h.get(record.id)).state == "QUEUED"
        await h.advance(1)
        assert (await h.get(record.id)).attempt == 2
        # The same again: a misspelt image fails every time. Now it uses the one attempt there is.
        await h.update(record.id, 2, "FAILED", message="ImagePullBackOff: x", reason="image_pull")
        final = await h.get(record.id)
        assert final.state == "FAILED" and "no attempts left (1)" in final.message
        assert "(image_pull)" in final.message

    run(db_url, scenario, quick())


def test_a_backoff_survives_a_broker_restart(db_url: str) -> None:
    async def first(h: Harness) -> None:
        await h.connect()
        record = await h.submit()
        await h.update(record.id, 1, "FAILED", message="unschedulable", reason="no_capacity")

    async def second(h: Harness) -> None:
        await h.connect()
        [record] = await h.engine.list_workloads(None, [], 0)
        assert record.retry_at == h.clock.wall_now + 5  # each run's clock starts at the same time
        assert record.id in h.engine.state.backing_off
        await h.advance(4)
        assert (await h.get(record.id)).state == "QUEUED"
        await h.advance(1)
        placed = await h.get(record.id)
        assert (placed.state, placed.attempt, placed.infra_requeues) == ("PLACED", 2, 1)

    run(db_url, first)
    run(db_url, second)


def test_cancelled_while_backing_off_is_never_placed(db_url: str) -> None:
    async def scenario(h: Harness) -> None:
        await h.connect()
        record = await h.submit()
        await h.update(record.id, 1, "FAILED", reason="no_capacity")
        await h.engine.call(c.Cancel(record.id, "operator sre", None))
        h.sent()
        await h.advance(6)
        assert (await h.get(record.id)).state == "CANCELLED"
        assert h.assignments() == []

    run(db_url, scenario)


def test_success_records_its_reason(db_url: str) -> None:
    async def scenario(h: Harness) -> None:
        await h.connect()
        record = await h.submit()
        await h.update(record.id, 1, "SUCCEEDED", message="exit code 0", reason="exit")
        assert (await h.get(record.id)).reason == "exit"
        assert [e.reason for e in await h.engine.events_after(record.id, 0)] == ["", "exit"]

    run(db_url, scenario)


def test_an_older_database_gains_the_new_columns(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/old.db"
    engine = open_engine(url)
    with engine.begin() as conn:  # what a database made before reasons (and Alembic) existed looks like
        command.upgrade(schema.alembic_config(conn), schema.BASELINE)
        for column in ("reason", "infra_requeues", "doubt_requeues", "retry_at"):
            conn.execute(text(f"ALTER TABLE workloads DROP COLUMN {column}"))
        conn.execute(text("ALTER TABLE workload_events DROP COLUMN reason"))
        conn.execute(text("DROP TABLE alembic_version"))  # adopted (broker/store/schema.py)
    engine.dispose()
    store = Store(url)
    with store.engine.connect() as conn:
        columns = {row[1] for row in conn.execute(text("PRAGMA table_info(workloads)"))}
    store.close()
    assert {"reason", "infra_requeues", "doubt_requeues", "retry_at"} <= columns

"""The broker's metrics in-process: the real engine and rules on a real SQLite database,
read through the OpenTelemetry SDK (an in-memory reader, collecting from another thread as
the Prometheus endpoint and the OTLP exporter do)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from broker.engine.engine import Engine
from broker.observability.broker_metrics import BrokerMetrics
from broker.observability.failure_reasons import AGENT_REASONS, failure_reason
from broker.observability.snapshot import BrokerSnapshot, take
from broker.role import STANDBY, BrokerRole
from broker.store import Store
from site_agents.backends.base import Reason
from tests.store.engine_harness import TENANT, Harness, subsidised_federation

Points = dict[str, list[tuple[dict[str, Any], Any]]]


class Metered:
    def __init__(self, harness: Harness, role: BrokerRole) -> None:
        self.h = harness
        self.reader = InMemoryMetricReader()
        provider = MeterProvider(metric_readers=[self.reader])
        self.metrics = BrokerMetrics.for_engine(
            provider.get_meter("test"), harness.engine, role, lambda: True
        )
        harness.engine.observer = self.metrics

    async def collect(self) -> Points:
        """Collect on a worker thread, so the observable callbacks hop to the engine's loop."""
        data = await asyncio.to_thread(self.reader.get_metrics_data)
        points: Points = {}
        assert data is not None
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    for point in metric.data.data_points:
                        figure = point.value if hasattr(point, "value") else point
                        points.setdefault(metric.name, []).append((dict(point.attributes or {}), figure))
        return points


def total(points: Points, name: str, **labels: Any) -> float:
    return sum(v for attrs, v in points.get(name, []) if labels.items() <= attrs.items())


def run(
    tmp_path: Path, scenario: Callable[[Metered], Awaitable[None]], role: BrokerRole | None = None
) -> None:
    async def main() -> None:
        harness = await Harness.start(subsidised_federation(), f"sqlite:///{tmp_path / 'broker.db'}")
        try:
            await scenario(Metered(harness, role or BrokerRole()))
        finally:
            await harness.stop()

    asyncio.run(main())


def test_gauges_agree_with_the_sites_and_the_ledger(tmp_path: Path) -> None:
    async def scenario(m: Metered) -> None:
        h = m.h
        await h.connect(count=3, allocated=2)
        placed = await h.submit()  # 8 GPUs reserved on cyberport
        running = await h.submit(name="runs")
        await h.update(running.id, 1, "RUNNING")
        h.clock.wall_now += 1800
        await h.update(running.id, 1, "SUCCEEDED")  # charged: the program pays its share
        points = await m.collect()
        [site] = [s for s in h.engine.sites() if s.name == "cyberport"]
        labels = {"fedbroker.site": "cyberport", "fedbroker.gpu.model": "H800"}
        assert total(points, "fedbroker.site.gpu.limit", **labels) == site.usage.gpus_total == 24
        for state in ("allocated", "reserved", "free"):
            scraped = total(points, "fedbroker.site.gpu.usage", **labels, **{"fedbroker.gpu.state": state})
            assert scraped == getattr(site.usage, f"gpus_{state}"), state
        assert total(points, "fedbroker.site.gpu.usage", **{"fedbroker.gpu.state": "reserved"}) == 8
        assert total(points, "fedbroker.site.healthy", **{"fedbroker.site": "cyberport"}) == 1
        assert total(points, "fedbroker.site.healthy", **{"fedbroker.site": "sandy-ridge"}) == 0
        assert total(points, "fedbroker.workload.count", **{"fedbroker.workload.state": "PLACED"}) == 1

        rows, budgets = await h.engine.usage(None)
        [budget] = budgets
        money = {"fedbroker.tenant": TENANT, "fedbroker.subsidy.program": "aiss"}
        assert budget["spent_hkd"] > 0
        assert total(points, "fedbroker.subsidy.spent", **money) == budget["spent_hkd"]
        assert total(points, "fedbroker.subsidy.reserved", **money) == budget["reserved_hkd"] > 0
        assert total(points, "fedbroker.subsidy.left", **money) == budget["left_hkd"]
        assert budget["spent_hkd"] == sum(r["program_hkd"] for r in rows if r["tenant"] == TENANT)
        assert placed.state == "PLACED"
        assert total(points, "fedbroker.broker.role", **{"fedbroker.role": "active"}) == 1

    run(tmp_path, scenario)


def test_each_cycle_counts_what_happened(tmp_path: Path) -> None:
    async def scenario(m: Metered) -> None:
        h = m.h
        await h.connect()
        first = await h.submit()
        second = await h.submit(name="second")
        third = await h.submit(name="waits", priority=5)  # no room left: queued
        assert third.state == "QUEUED"
        points = await m.collect()
        assert total(points, "fedbroker.workload.submits", **{"fedbroker.tenant": TENANT}) == 3
        assert total(points, "fedbroker.workload.dispatches", **{"fedbroker.site": "cyberport"}) == 2
        assert (
            total(points, "fedbroker.queue.length", **{"fedbroker.tenant": TENANT, "fedbroker.priority": 5})
            == 1
        )
        assert (
            total(points, "fedbroker.placement.decisions", **{"fedbroker.placement.outcome": "queued"}) == 1
        )
        assert "fedbroker.workload.time_to_placed" not in points  # both were placed when submitted
        h.clock.wall_now += 60
        await asyncio.sleep(0.1)  # past the snapshot's cache (one read serves one collection)
        assert total(await m.collect(), "fedbroker.queue.oldest.age", **{"fedbroker.tenant": TENANT}) == 60

        # The agent says the first failed for exiting; a restarted agent forgot the second.
        await h.ack(second.id, 1)
        await h.update(second.id, 1, "RUNNING")
        await h.update(first.id, 1, "FAILED", message="exit code 3", reason="exit")
        await h.connect()  # Hello again: its first report lists nothing, so attempt 1 of `second` is lost
        points = await m.collect()

        def failures(reason: str) -> float:
            return total(points, "fedbroker.attempt.failures", **{"fedbroker.failure.reason": reason})

        assert failures("exit") == 1 and failures("forgotten_by_agent") == 1
        # The queued one (priority 5) took the GPUs the failed attempt freed, after its 60 s wait.
        assert (await h.get(third.id)).state == "PLACED"
        [placed_hist] = [v for _, v in points["fedbroker.workload.time_to_placed"]]
        assert (placed_hist.count, placed_hist.sum) == (1, 60)
        assert total(points, "fedbroker.workload.requeues", **{"fedbroker.failure.reason": "exit"}) == 1
        assert total(points, "fedbroker.workload.transitions", **{"fedbroker.workload.state": "RUNNING"}) == 1
        [running_hist] = [v for _, v in points["fedbroker.workload.time_to_running"]]
        assert running_hist.count == 1
        commits = [
            v for attrs, v in points["db.client.operation.duration"] if attrs["db.system.name"] == "sqlite"
        ]
        assert commits and commits[0].count >= 5

    run(tmp_path, scenario)


def test_a_silent_site_is_counted_as_site_unavailable(tmp_path: Path) -> None:
    async def scenario(m: Metered) -> None:
        h = m.h
        await h.connect()
        record = await h.submit()
        await h.advance(11)  # past the TTL: the untaken assignment is requeued
        points = await m.collect()
        assert (
            total(points, "fedbroker.workload.requeues", **{"fedbroker.failure.reason": "site_unavailable"})
            == 1
        )
        # From the event's reason, which the engine records with it (and the workload shows).
        [requeued] = [
            e for e in await h.engine.events_after(record.id, 0) if e.attempt == 1 and e.state == "QUEUED"
        ]
        assert requeued.reason == "site_unavailable"
        assert (await h.get(record.id)).reason == "site_unavailable"
        assert total(points, "fedbroker.site.healthy", **{"fedbroker.site": "cyberport"}) == 0
        assert total(points, "fedbroker.site.heartbeat.age", **{"fedbroker.site": "cyberport"}) >= 10

    run(tmp_path, scenario)


def test_an_attempt_a_restarted_agent_forgot_is_counted_by_its_reason(tmp_path: Path) -> None:
    async def scenario(m: Metered) -> None:
        h = m.h
        await h.connect()
        record = await h.submit(max_attempts=1)
        await h.ack(record.id, 1)
        await h.update(record.id, 1, "RUNNING")
        await h.connect()  # a restarted agent: its first report lists nothing
        [failed] = [e for e in await h.engine.events_after(record.id, 0) if e.state == "FAILED"]
        assert (failed.reason, failed.message) == (
            "forgotten_by_agent",
            "attempt 1 lost by the cyberport agent; no attempts left (1)",
        )
        assert (await h.get(record.id)).reason == "forgotten_by_agent"
        points = await m.collect()
        reason = {"fedbroker.failure.reason": "forgotten_by_agent"}
        assert total(points, "fedbroker.attempt.failures", **reason) == 1
        assert total(points, "fedbroker.workload.requeues", **reason) == 0  # none left: it failed
        assert total(points, "fedbroker.attempt.failures", **{"fedbroker.failure.reason": "lost"}) == 0

    run(tmp_path, scenario)


def test_the_role_gauge_follows_the_role(tmp_path: Path) -> None:
    role = BrokerRole()

    async def scenario(m: Metered) -> None:
        role.set(STANDBY)
        points = await m.collect()
        assert total(points, "fedbroker.broker.role", **{"fedbroker.role": "standby"}) == 1
        assert total(points, "fedbroker.broker.role", **{"fedbroker.role": "active"}) == 0

    run(tmp_path, scenario, role)


def test_failure_reasons_are_bounded() -> None:
    assert set(AGENT_REASONS) == {r.value for r in Reason} - {"", "cancelled"}
    assert failure_reason("oom", "attempt 1 failed (oom): killed") == "oom"
    assert failure_reason("a reason no agent of ours says", "x") == "other"
    assert failure_reason("preempted", "preempted by wl-1 (priority 10)") == "preempted"
    # The broker's own reasons are read from the field, never from the words.
    assert failure_reason("site_unavailable", "whatever it says") == "site_unavailable"
    assert failure_reason("forgotten_by_agent") == "forgotten_by_agent"
    assert failure_reason("", "site cyberport unavailable for 31s; queued for attempt 2") == "unspecified"
    assert failure_reason("", "quarantined at recovery: bad spec") == "quarantined"
    assert failure_reason("", "attempt 2 failed: exit code 1; no attempts left (2)") == "unspecified"


def test_a_broker_without_state_reports_an_empty_snapshot(tmp_path: Path) -> None:
    """Before recovery (or on a standby that holds no state) the gauges say nothing, not an error."""
    engine = Engine(subsidised_federation(), Store(f"sqlite:///{tmp_path / 'broker.db'}"))
    try:
        assert take(engine) == BrokerSnapshot()
    finally:
        engine.store.close()


def test_fair_shares_are_gauged_per_tenant(tmp_path: Path) -> None:
    async def scenario(m: Metered) -> None:
        h = m.h
        await h.connect(count=4)  # 32 H800 GPUs at cyberport
        await h.submit()  # 8 of them to lion-rock-ai: a quarter of the federation
        points = await m.collect()
        shares = h.engine.state.core.fair_shares()
        assert shares == {TENANT: 0.25}
        assert total(points, "fedbroker.tenant.fair_share", **{"fedbroker.tenant": TENANT}) == 0.25
        assert total(points, "fedbroker.placement.preemptions") == 0

    run(tmp_path, scenario)

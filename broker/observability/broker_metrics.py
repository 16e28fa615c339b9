"""The broker's metrics (OpenTelemetry instruments; names and units per the semantic conventions).

Two kinds, both off the per-submit path:
- *observable* instruments (GPUs, queue, health, heartbeat age, subsidy, the core's
  counters, the role) are read at scrape/export time from one `BrokerSnapshot` taken on
  the event loop (`loop_reads`);
- *counters and histograms* of what happened (submits, dispatches, requeues, failures,
  latencies, commit time) are added once per committed cycle from its `Tx`, one
  `add` per label set, not one per message.
Labels are bounded: sites, GPU models, tenants, priorities and programs come from the
configuration and the agents' inventories; reasons and states are fixed sets. No
workload id is ever a label.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Iterable

from opentelemetry.metrics import CallbackOptions, Histogram, Meter, Observation

from broker.engine.engine import Engine
from broker.engine.records import LiveWorkload
from broker.engine.tx import Tx
from broker.lifecycle import FAILED, PLACED, QUEUED, RUNNING, STATES
from broker.observability.failure_reasons import REASONS, failure_reason
from broker.observability.loop_reads import LoopReader
from broker.observability.snapshot import BrokerSnapshot, take
from broker.role import ROLES, BrokerRole

SITE = "fedbroker.site"
GPU_MODEL = "fedbroker.gpu.model"
GPU_STATE = "fedbroker.gpu.state"
TENANT = "fedbroker.tenant"
PRIORITY = "fedbroker.priority"
PROGRAM = "fedbroker.subsidy.program"
STATE = "fedbroker.workload.state"
REASON = "fedbroker.failure.reason"
OUTCOME = "fedbroker.placement.outcome"
FILTER = "fedbroker.placement.filter"
PASS = "fedbroker.placement.pass"
STEP = "fedbroker.cycle.step"
ROLE = "fedbroker.role"

# Seconds: a cycle step is sub-millisecond to a second; a workload waits seconds to hours.
CYCLE_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
WAIT_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 14400)

Snapshot = Callable[[], BrokerSnapshot | None]


class BrokerMetrics:
    def __init__(
        self,
        meter: Meter,
        engine: Engine,
        role: BrokerRole,
        snapshot: Snapshot,
        db_reachable: Callable[[], bool | None] = lambda: None,
    ) -> None:
        self._engine = engine
        self._snapshot = snapshot
        self._role = role
        self._db_reachable = db_reachable
        self._observables(meter)
        self._counters(meter)
        self._db_attributes = {
            "db.system.name": engine.store.engine.dialect.name,  # "sqlite", "postgresql"
            "db.operation.name": "COMMIT",
        }

    @classmethod
    def for_engine(
        cls, meter: Meter, engine: Engine, role: BrokerRole, db_reachable: Callable[[], bool | None]
    ) -> BrokerMetrics:
        """Observable metrics read on the engine's running loop (call from that loop)."""
        reader = LoopReader(asyncio.get_running_loop(), lambda: take(engine))
        return cls(meter, engine, role, reader.get, db_reachable)

    # ------------------------------------------------------------------ read at scrape time

    def _observables(self, meter: Meter) -> None:
        gauge, counter = meter.create_observable_gauge, meter.create_observable_counter
        gauge("fedbroker.site.gpu.limit", [self._gpu_limit], "{gpu}", "GPUs allocatable per site and model")
        gauge(
            "fedbroker.site.gpu.usage",
            [self._gpu_usage],
            "{gpu}",
            "GPUs per site and model: allocated (reported by the agent), reserved (placed, not yet "
            "reported running), free",
        )
        gauge("fedbroker.site.healthy", [self._healthy], "1", "1 while the site's agent heartbeats in time")
        gauge(
            "fedbroker.site.heartbeat.age",
            [self._heartbeat_age],
            "s",
            "Seconds since the site's agent was last heard (absent until heard)",
        )
        gauge(
            "fedbroker.queue.length", [self._queue], "{workload}", "Queued workloads by tenant and priority"
        )
        gauge(
            "fedbroker.queue.oldest.age",
            [self._oldest_queued],
            "s",
            "Seconds since the submit of each tenant's longest-waiting queued workload (absent: none queued)",
        )
        gauge("fedbroker.workload.count", [self._workloads], "{workload}", "Unfinished workloads by state")
        gauge("fedbroker.subsidy.reserved", [self._subsidy_reserved], "{HKD}", "HK$ held by placed workloads")
        gauge(
            "fedbroker.subsidy.left", [self._subsidy_left], "{HKD}", "HK$ of subsidy budget still placeable"
        )
        counter("fedbroker.subsidy.spent", [self._subsidy_spent], "{HKD}", "HK$ paid by subsidy programs")
        counter(
            "fedbroker.placement.decisions",
            [self._decisions],
            "{decision}",
            "Placement decisions by outcome (placed, queued, refused)",
        )
        counter(
            "fedbroker.placement.rejections",
            [self._rejections],
            "{rejection}",
            "Sites rejected by each placement filter",
        )
        counter("fedbroker.placement.passes", [self._passes], "{pass}", "Queue passes: run or skipped")
        gauge(
            "fedbroker.tenant.fair_share",
            [self._fair_shares],
            "1",
            "Each tenant's fair share: recent and current use of the federation's dominant resource / weight",
        )
        counter(
            "fedbroker.placement.preemptions",
            [self._preemptions],
            "{workload}",
            "Placed workloads taken back for higher-priority work",
        )
        gauge("fedbroker.placement.paused", [self._paused], "1", "1 while an operator has paused placement")
        counter("fedbroker.cycles", [self._cycles], "{cycle}", "Scheduling cycles run")
        gauge("fedbroker.broker.role", [self._role_gauge], "1", "1 for the broker's current role")
        gauge("fedbroker.db.reachable", [self._db], "1", "1 while the health probe reaches the database")

    def _read(self) -> BrokerSnapshot | None:
        return self._snapshot()

    def _gpu_limit(self, _: CallbackOptions) -> Iterable[Observation]:
        if (s := self._read()) is not None:
            for (site, model), usage in s.gpus.items():
                yield Observation(usage.gpus_total, {SITE: site, GPU_MODEL: model})

    def _gpu_usage(self, _: CallbackOptions) -> Iterable[Observation]:
        if (s := self._read()) is not None:
            for (site, model), usage in s.gpus.items():
                for state, value in (
                    ("allocated", usage.gpus_allocated),
                    ("reserved", usage.gpus_reserved),
                    ("free", usage.gpus_free),
                ):
                    yield Observation(value, {SITE: site, GPU_MODEL: model, GPU_STATE: state})

    def _healthy(self, _: CallbackOptions) -> Iterable[Observation]:
        if (s := self._read()) is not None:
            for site, health in s.sites.items():
                yield Observation(int(health.healthy), {SITE: site})

    def _heartbeat_age(self, _: CallbackOptions) -> Iterable[Observation]:
        if (s := self._read()) is not None:
            for site, health in s.sites.items():
                if health.heartbeat_age_s is not None:
                    yield Observation(health.heartbeat_age_s, {SITE: site})

    def _queue(self, _: CallbackOptions) -> Iterable[Observation]:
        if (s := self._read()) is not None:
            # Every tenant has a series (its default priority's, 0 when empty), so the metric is there
            # before anything queues; other priorities appear while they have work.
            queued = {(t.name, 0): 0 for t in self._engine.config.tenants} | s.queued
            for (tenant, priority), count in queued.items():
                yield Observation(count, {TENANT: tenant, PRIORITY: priority})

    def _oldest_queued(self, _: CallbackOptions) -> Iterable[Observation]:
        if (s := self._read()) is not None:
            for tenant, age in s.oldest_queued_s.items():
                yield Observation(age, {TENANT: tenant})

    def _workloads(self, _: CallbackOptions) -> Iterable[Observation]:
        if (s := self._read()) is not None:
            for state in (QUEUED, PLACED, RUNNING):
                yield Observation(s.workloads.get(state, 0), {STATE: state})

    def _subsidy_reserved(self, _: CallbackOptions) -> Iterable[Observation]:
        if (s := self._read()) is not None:
            for tenant, money in s.subsidy.items():
                yield Observation(money.reserved_hkd, {PROGRAM: money.program, TENANT: tenant})

    def _subsidy_left(self, _: CallbackOptions) -> Iterable[Observation]:
        if (s := self._read()) is not None:
            for tenant, money in s.subsidy.items():
                yield Observation(money.left_hkd, {PROGRAM: money.program, TENANT: tenant})

    def _subsidy_spent(self, _: CallbackOptions) -> Iterable[Observation]:
        if (s := self._read()) is not None:
            for tenant, money in s.subsidy.items():
                yield Observation(money.spent_hkd, {PROGRAM: money.program, TENANT: tenant})

    def _decisions(self, _: CallbackOptions) -> Iterable[Observation]:
        if (s := self._read()) is not None:
            for outcome in ("placed", "queued", "refused"):
                yield Observation(s.decisions.get(outcome, 0), {OUTCOME: outcome})

    def _rejections(self, _: CallbackOptions) -> Iterable[Observation]:
        if (s := self._read()) is not None:
            for name, count in s.rejections.items():
                yield Observation(count, {FILTER: name})

    def _passes(self, _: CallbackOptions) -> Iterable[Observation]:
        if (s := self._read()) is not None:
            for kind, count in s.passes.items():
                yield Observation(count, {PASS: kind})

    def _fair_shares(self, _: CallbackOptions) -> Iterable[Observation]:
        if (s := self._read()) is not None:
            for tenant, share in s.fair_shares.items():
                yield Observation(share, {TENANT: tenant})

    def _preemptions(self, _: CallbackOptions) -> Iterable[Observation]:
        if (s := self._read()) is not None:
            yield Observation(s.preempted)

    def _paused(self, _: CallbackOptions) -> Iterable[Observation]:
        if (s := self._read()) is not None:
            yield Observation(int(s.paused))

    def _cycles(self, _: CallbackOptions) -> Iterable[Observation]:
        if (s := self._read()) is not None:
            yield Observation(s.cycles)

    def _role_gauge(self, _: CallbackOptions) -> Iterable[Observation]:
        current = self._role.current  # a plain attribute read: no loop hop needed
        for role in ROLES:
            yield Observation(int(role == current), {ROLE: role})

    def _db(self, _: CallbackOptions) -> Iterable[Observation]:
        reachable = self._db_reachable()
        if reachable is not None:
            yield Observation(int(reachable))

    # ------------------------------------------------------------------ added once per cycle

    def _counters(self, meter: Meter) -> None:
        self._submits = meter.create_counter("fedbroker.workload.submits", "{workload}", "Workloads accepted")
        self._dispatches = meter.create_counter(
            "fedbroker.workload.dispatches", "{attempt}", "Attempts placed on a site (assignments sent)"
        )
        self._requeues = meter.create_counter(
            "fedbroker.workload.requeues", "{attempt}", "Attempts that ended and sent their workload back"
        )
        self._failures = meter.create_counter(
            "fedbroker.attempt.failures", "{attempt}", "Attempts that failed or were lost, by reason"
        )
        self._transitions = meter.create_counter(
            "fedbroker.workload.transitions", "{transition}", "Workload state changes, by the new state"
        )
        # Per workload, so kept to what is worth its cost (~10 us a record in the SDK): the
        # wait of workloads that queued (one placed when submitted waited no more than its
        # submit's cycle, which `fedbroker.cycle.duration` shows), and the time to RUNNING.
        self._time_to_placed = meter.create_histogram(
            "fedbroker.workload.time_to_placed",
            "s",
            "Submit to the first placement, of workloads that waited in the queue",
            explicit_bucket_boundaries_advisory=WAIT_BUCKETS_S,
        )
        self._time_to_running = meter.create_histogram(
            "fedbroker.workload.time_to_running",
            "s",
            "Submit to the first attempt reported RUNNING",
            explicit_bucket_boundaries_advisory=WAIT_BUCKETS_S,
        )
        self._cycle_duration = meter.create_histogram(
            "fedbroker.cycle.duration",
            "s",
            "Scheduling cycle steps: decide (rules and placement); commits: db.client.operation.duration",
            explicit_bucket_boundaries_advisory=CYCLE_BUCKETS_S,
        )
        self._db_duration = meter.create_histogram(
            "db.client.operation.duration",
            "s",
            "One cycle's transaction on the writer thread (statements and commit)",
            explicit_bucket_boundaries_advisory=CYCLE_BUCKETS_S,
        )
        # Zeros for the known label values: rate() and alerts work before the first event.
        for tenant in self._engine.config.tenants:
            self._submits.add(0, {TENANT: tenant.name})
        for site in self._engine.config.sites:
            self._dispatches.add(0, {SITE: site.name})
        for reason in REASONS:
            self._requeues.add(0, {REASON: reason})
            self._failures.add(0, {REASON: reason})
        for state in STATES:
            self._transitions.add(0, {STATE: state})

    def cycle_done(self, tx: Tx, decide_s: float, persist_s: float) -> None:
        self._cycle_duration.record(decide_s, {STEP: "decide"})
        if persist_s:  # one record a cycle each: the commit's own time says what persist waited for
            self._db_duration.record(self._engine.writer.last_commit_s, self._db_attributes)
        if tx.new:
            for tenant, count in Counter(w.tenant for w in tx.new.values()).items():
                self._submits.add(count, {TENANT: tenant})
        if not tx.events:
            return
        states: Counter[str] = Counter()
        dispatches: Counter[str] = Counter()
        requeues: Counter[str] = Counter()
        failures: Counter[str] = Counter()
        for event in tx.events:
            state = event.state
            states[state] += 1
            if state == PLACED:
                dispatches[event.site or ""] += 1
                if event.attempt == 1 and event.workload_id not in tx.new:  # it waited in the queue
                    self._since_submit(self._time_to_placed, tx, event.workload_id, event.at)
            elif state == RUNNING:
                if event.attempt == 1:
                    self._since_submit(self._time_to_running, tx, event.workload_id, event.at)
            elif state == QUEUED:
                if event.attempt >= 1:  # a first QUEUED has attempt 0; later ones follow an attempt
                    reason = failure_reason(event.reason, event.message)
                    requeues[reason] += 1
                    failures[reason] += 1
            elif state == FAILED:
                failures[failure_reason(event.reason, event.message)] += 1
        for state, count in states.items():
            self._transitions.add(count, {STATE: state})
        for site, count in dispatches.items():
            self._dispatches.add(count, {SITE: site})
        for reason, count in requeues.items():
            self._requeues.add(count, {REASON: reason})
        for reason, count in failures.items():
            self._failures.add(count, {REASON: reason})

    @staticmethod
    def _since_submit(histogram: Histogram, tx: Tx, workload_id: str, at: float) -> None:
        workload: LiveWorkload | None = tx.new.get(workload_id) or tx.touched.get(workload_id)
        if workload is not None:
            histogram.record(max(0.0, at - workload.created_at))

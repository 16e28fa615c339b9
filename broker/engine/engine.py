"""The engine: one task runs scheduling cycles over the commands the API hands it.

One cycle, in steps (each a span):
  1. drain: take every command that arrived since the last cycle;
  2. decide: apply each to the in-memory state (`BrokerState`), then one queue pass;
     the rows to store and the effects to carry out collect in a `Tx`;
  3. persist: commit the Tx's rows in one transaction on the writer thread (group commit:
     everything that arrived while the last commit was in flight goes in together);
  4. apply: forget the workloads that ended;
  5. publish: assignments and cancels to agents, wake-ups to watchers, answers to callers.
A caller is answered only after the commit that stored its effect; an agent gets an
assignment only after the commit that made it. If a commit fails, nothing decided in
that cycle is published: its callers get UNAVAILABLE, and the state is rebuilt from the
database (`recovery.rebuild`), so memory and store agree again.

Reads (Get, List, Watch's events, Usage) run on worker threads against committed state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from opentelemetry import trace
from sqlalchemy.engine import Connection

from broker import ledger, telemetry
from broker.config import FederationConfig
from broker.engine import commands as c
from broker.engine import liveview
from broker.engine.clock import AttentiveClock
from broker.engine.links import AgentSession, SiteLink
from broker.engine.liveview import one_match
from broker.engine.observer import CycleObserver, NoObserver
from broker.engine.records import Event, WorkloadRecord
from broker.engine.recovery import rebuild
from broker.engine.state import BrokerState
from broker.engine.tx import Tx
from broker.errors import BrokerError, InvalidArgument, NotFound, Unavailable
from broker.lifecycle import QUEUED
from broker.placement import Node, PlacementError, SiteUsage
from broker.spec import WorkloadSpec
from broker.store import Store, lookups, reads
from broker.store.writer import StoreWriter
from broker.watch import WatchHub

log = logging.getLogger("fedbroker.engine")
T = TypeVar("T")

LIST_LIMIT_DEFAULT = 1000


@dataclass(frozen=True, slots=True)
class SiteStatus:
    """One site for SiteService: its link and what the core knows of it."""

    name: str
    backends: tuple[str, ...]
    healthy: bool
    heartbeat_age_s: float | None  # None: not heard from since this broker started
    usage: SiteUsage
    nodes: tuple[Node, ...]
    datasets: tuple[str, ...]


class Engine:
    def __init__(
        self,
        config: FederationConfig,
        store: Store,
        *,
        broker_id: str | None = None,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.store = store
        self.broker_id = broker_id or f"broker-{uuid.uuid4().hex[:8]}"
        self.wall = wall
        self.tick_interval = min(1.0, config.heartbeat_ttl_s / 3)
        self.clock = AttentiveClock(max_step=2 * self.tick_interval, monotonic=monotonic)
        self.writer = StoreWriter(store)
        self.hub = WatchHub()
        self.links = {s.name: SiteLink(s.name, heard_at=self.clock.now()) for s in config.sites}
        self._inbox: list[tuple[c.Command, asyncio.Future[Any] | None]] = []
        self._wakeup = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._state: BrokerState | None = None
        self.cycles = 0
        self.observer: CycleObserver = NoObserver()  # metrics and logs of each committed cycle

    @property
    def state(self) -> BrokerState:
        assert self._state is not None, "Engine.start() first"
        return self._state

    # ------------------------------------------------------------------ lifecycle

    async def start(self, *, tick: bool = True) -> None:
        """Recover from the database, then run cycles (and, unless told not to, the health timer)."""
        await self._rebuild()
        self._tasks.append(asyncio.create_task(self._run(), name="fedbroker engine"))
        if tick:
            self._tasks.append(asyncio.create_task(self._tick_forever(), name="fedbroker ticker"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        for link in self.links.values():
            if link.session is not None:
                link.session.close()  # ends the agent streams, so a server's grace is not waited out
        self.writer.close()

    # ------------------------------------------------------------------ commands

    async def call(self, command: c.Command) -> Any:
        """Hand a command to the engine and wait for its answer (after its commit)."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._inbox.append((command, future))
        self._wakeup.set()
        return await future

    def post(self, command: c.Command) -> None:
        """Hand a command to the engine; no answer (agents' reports, updates, acks)."""
        self._inbox.append((command, None))
        self._wakeup.set()

    async def submit(self, tenant: str, spec: WorkloadSpec, spec_wire: bytes) -> tuple[WorkloadRecord, dict]:
        result: tuple[WorkloadRecord, dict] = await self.call(c.Submit(tenant, spec, spec_wire))
        return result

    def evaluate(self, tenant: str, spec: WorkloadSpec) -> dict[str, Any]:
        """A dry run on the live state: the decision a submit would get now."""
        return self.state.evaluate(tenant, spec)

    def heard(self, session: AgentSession) -> None:
        """Called on every message's arrival, before it waits for a cycle."""
        self.state.heard(session)

    # ------------------------------------------------------------------ reads

    async def read(self, query: Callable[[Connection], T]) -> T:
        def run() -> T:
            with self.store.engine.connect() as conn:
                return query(conn)

        return await asyncio.to_thread(run)

    async def get(self, workload_id: str, tenant: str | None) -> WorkloadRecord:
        """A workload as stored; another tenant's is reported as absent, so ids leak nothing.
        `workload_id` may also be a unique id prefix or a name (the latest with that name)."""
        record = await self.read(lambda conn: reads.workload(conn, workload_id))
        if record is None or (tenant is not None and record.tenant != tenant):
            matches = await self.read(lambda conn: lookups.resolve(conn, workload_id, tenant))
            return one_match(workload_id[:64], matches)  # bounded echo of what the caller sent
        return record

    async def find_workloads(self, wanted: lookups.Filter) -> tuple[list[WorkloadRecord], int]:
        """Filtered, newest first, with the latest event's seq (to follow from without a gap)."""
        return await self.read(lambda conn: lookups.workloads(conn, wanted))

    async def events_since(self, tenant: str | None, after_seq: int) -> list[Event]:
        return await self.read(lambda conn: lookups.events_since(conn, tenant, after_seq))

    def live_status(self, records: list[WorkloadRecord]) -> dict[str, liveview.LiveStatus]:
        """Queue positions and unreachable sites, from memory (on the event loop)."""
        clocks = liveview.Clocks(self.clock.now(), self.wall())
        return liveview.statuses(self.state.core, self.links, self.config, clocks, records)

    async def list_workloads(self, tenant: str | None, states: list[str], limit: int) -> list[WorkloadRecord]:
        return await self.read(
            lambda conn: reads.workloads(conn, tenant, states, limit or LIST_LIMIT_DEFAULT)
        )

    async def events_after(self, workload_id: str, after_seq: int) -> list[Event]:
        return await self.read(lambda conn: reads.events_after(conn, workload_id, after_seq))

    async def explain(self, workload_id: str, tenant: str | None) -> dict[str, Any]:
        record = await self.get(workload_id, tenant)
        if record.state == QUEUED:
            live = self.state.core.explain(record.id)
            if live is not None:
                return {**live.to_dict(), "attempt": record.attempt}
        decision = await self.read(lambda conn: reads.latest_decision(conn, record.id))
        if decision is None:
            raise NotFound(f"no decision recorded for workload {record.id}")
        return liveview.explained_now(decision, record, self.live_status([record]).get(record.id))

    async def usage(self, tenant: str | None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Settled charges by (tenant, program, site), and each visible tenant's budget."""
        rows, spent = await self.read(
            lambda conn: (ledger.usage_rows(conn, tenant), ledger.spent_by_tenant(conn))
        )
        return rows, ledger.budgets(self.config, spent, self.state.core.budget_left, tenant)

    def sites(self) -> list[SiteStatus]:
        now = self.clock.now()
        core = self.state.core
        out = []
        for site in sorted(self.config.sites, key=lambda s: s.name):
            link = self.links[site.name]
            nodes, datasets = core.site_inventory(site.name)
            out.append(
                SiteStatus(
                    name=site.name,
                    backends=tuple(site.backends),
                    healthy=core.healthy(site.name),
                    heartbeat_age_s=max(0.0, now - link.heard_at) if link.heard else None,
                    usage=core.site_usage(site.name),
                    nodes=nodes,
                    datasets=tuple(sorted(datasets)),
                )
            )
        return out

    # ------------------------------------------------------------------ the cycle

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            batch, self._inbox = self._inbox, []
            if batch:
                await self.cycle(batch)

    async def cycle(self, batch: list[tuple[c.Command, asyncio.Future[Any] | None]]) -> None:
        """One scheduling cycle over `batch` (step 1, drain, is the caller's)."""
        self.cycles += 1
        started = time.perf_counter()
        tracer = telemetry.tracer()
        root = trace.set_span_in_context(
            trace.INVALID_SPAN
        )  # a cycle is not part of any one workload's trace
        state = self.state
        tx = Tx()
        # 2. decide
        with tracer.start_as_current_span("fedbroker.cycle.decide", context=root) as span:
            span.set_attribute("fedbroker.commands", len(batch))
            try:
                for command, future in batch:
                    try:
                        result = self._decide(state, tx, command)
                    except (BrokerError, PlacementError) as error:
                        # A refusal: the rules raise before changing anything.
                        if future is not None and not future.done():
                            future.set_exception(_as_broker_error(error))
                    else:
                        tx.reply(future, result)
                state.schedule(tx)
            except Exception:
                log.exception("a scheduling cycle failed; rebuilding the broker's state from the store")
                await self._recover(
                    batch, Unavailable("the broker hit an internal error and recovered; retry")
                )
                return
        decided = time.perf_counter()
        # 3. persist
        rows = tx.rows()
        if rows:
            with tracer.start_as_current_span("fedbroker.cycle.persist", context=root) as span:
                span.set_attribute("fedbroker.rows", len(rows))
                try:
                    await self.writer.commit(rows)
                except Exception as error:
                    log.error("commit failed, nothing of this cycle is kept: %s", _short(error))
                    span.set_status(trace.Status(trace.StatusCode.ERROR, _short(error)))
                    await self._recover(
                        batch, Unavailable(f"the broker could not store this now: {_short(error)}")
                    )
                    return
        persist_s = time.perf_counter() - decided if rows else 0.0
        # 4. apply
        state.forget(tx.ended)
        # 5. publish
        with tracer.start_as_current_span("fedbroker.cycle.publish", context=root) as span:
            span.set_attribute("fedbroker.messages", len(tx.messages))
            for site, message in tx.messages:
                self.links[site].send(message)
            for event in tx.events:
                self.hub.publish(event.workload_id, event.seq)
            for future, value in tx.replies:
                if not future.done():
                    future.set_result(value)
        self.observer.cycle_done(tx, decided - started, persist_s)

    @staticmethod
    def _decide(state: BrokerState, tx: Tx, command: c.Command) -> Any:
        match command:
            case c.Report():
                return state.report(tx, command)
            case c.Update():
                return state.update(tx, command)
            case c.Ack():
                return state.ack(tx, command)
            case c.Submit():
                return state.submit(tx, command)
            case c.Cancel():
                return state.cancel(tx, command)
            case c.Hello():
                return state.hello(tx, command)
            case c.Gone():
                return state.gone(command)
            case c.Tick():
                return state.sweep(tx)
            case c.SetPaused():
                return state.set_paused(tx, command)
        raise TypeError(f"unknown command {command!r}")

    async def _recover(
        self, batch: list[tuple[c.Command, asyncio.Future[Any] | None]], error: BrokerError
    ) -> None:
        """Rebuild memory from the store, then tell the cycle's callers: whoever retries at once
        meets the rebuilt state. If the database stays away, callers hear after a second and
        the rebuild goes on retrying."""
        rebuilt = asyncio.create_task(self._rebuild())
        await asyncio.wait({rebuilt}, timeout=1.0)
        self._fail(batch, error)
        await rebuilt

    @staticmethod
    def _fail(batch: list[tuple[c.Command, asyncio.Future[Any] | None]], error: BrokerError) -> None:
        for _, future in batch:
            if future is not None and not future.done():
                future.set_exception(error)

    async def _rebuild(self) -> None:
        """Memory from the database alone (at start, and after a failed commit); retries while it is down."""
        healthy = (
            frozenset()
            if self._state is None
            else frozenset(n for n in self.links if self._state.core.healthy(n))
        )
        delay = 0.2
        while True:
            try:
                stored, spent = await self.read(
                    lambda conn: (reads.for_recovery(conn), ledger.spent_by_tenant(conn))
                )
                state, tx = rebuild(
                    stored,
                    spent,
                    self.config,
                    self.links,
                    broker_id=self.broker_id,
                    wall=self.wall,
                    clock=self.clock,
                    healthy=healthy,
                )
                rows = tx.rows()
                if rows:
                    await self.writer.commit(rows)
            except Exception as error:
                if self._state is None:
                    raise  # at start: the caller reports it
                log.error("cannot rebuild from the store (retrying in %.1fs): %s", delay, _short(error))
                await asyncio.sleep(delay)
                delay = min(5.0, delay * 2)
                continue
            if self._state is not None:
                state.core.metrics = self._state.core.metrics  # the counters outlive a rebuild
            self._state = state
            return

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(self.tick_interval)
            self.clock.tick()
            self.post(c.Tick())


def _as_broker_error(error: Exception) -> BrokerError:
    """The core's refusal of a malformed request reaches the caller as INVALID_ARGUMENT."""
    return error if isinstance(error, BrokerError) else InvalidArgument(str(error))


def _short(error: Exception) -> str:
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return text[:300]

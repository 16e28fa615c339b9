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

With a lease (`broker.store.lease`, as `fedbroker serve` runs it), the engine schedules
only while it holds the lease: it starts on standby, takes over when the lease is free
(rebuilding from the database, as at a start), renews it, and steps down when it loses it.
Every commit is fenced by the lease, so a broker that lost it cannot write. On standby,
commands are refused (UNAVAILABLE, naming the active broker) and reads still answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from opentelemetry import trace
from sqlalchemy.engine import Connection

from broker import ledger, telemetry
from broker.config import FederationConfig, load_federation
from broker.engine import commands as c
from broker.engine import liveview
from broker.engine import reload as reloading
from broker.engine.clock import AttentiveClock
from broker.engine.links import AgentSession, SiteLink
from broker.engine.liveview import one_match
from broker.engine.observer import CycleObserver, NoObserver
from broker.engine.records import Event, WorkloadRecord
from broker.engine.recovery import rebuild
from broker.engine.requests import MAX_REMEMBERED, Repeat, check_same_spec, repeat_explanation
from broker.engine.state import BrokerState
from broker.engine.tx import Rows, Tx
from broker.errors import BrokerError, InvalidArgument, NotFound, Standby, Unavailable
from broker.lifecycle import QUEUED
from broker.placement import Node, PlacementError, SiteUsage
from broker.role import ACTIVE, STANDBY, BrokerRole
from broker.spec import WorkloadSpec
from broker.store import Store, lookups, reads
from broker.store.lease import Lease, LeaseLost
from broker.store.writer import StoreWriter
from broker.validation import InvalidInput
from broker.watch import WatchHub

log = logging.getLogger("fedbroker.engine")
T = TypeVar("T")

LIST_LIMIT_DEFAULT = 1000
_NO_TRACE = trace.set_span_in_context(trace.INVALID_SPAN)  # a cycle is no one workload's
STANDBY_VIEW_S = 2.0  # how stale a standby's sites, explanations and budgets may be
TAKEOVER_S = 5.0  # a standby's rebuild after taking the lease, with room to spare


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
        lease: Lease | None = None,
        role: BrokerRole | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.broker_id = broker_id or f"broker-{uuid.uuid4().hex[:8]}"
        self.wall = wall
        self.tick_interval = min(1.0, config.heartbeat_ttl_s / 3)
        self.clock = AttentiveClock(max_step=2 * self.tick_interval, monotonic=monotonic)
        self.lease = lease
        self.role = role or BrokerRole(ACTIVE if lease is None else STANDBY)
        self.role.set(ACTIVE if lease is None else STANDBY)
        self.writer = StoreWriter(store, fence=lease.fence if lease is not None else None)
        self.hub = WatchHub()
        self.links = self._new_links()
        self._inbox: list[tuple[c.Command, asyncio.Future[Any] | None]] = []
        self._wakeup = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._term: list[asyncio.Task[None]] = []  # the cycle and tick tasks while active
        self._fenced = asyncio.Event()  # a commit found the lease gone
        self._standby_note = f"broker {self.broker_id} is on standby"  # who is active, as last read
        self._holder_lease_ends: float | None = None  # monotonic: a live holder's lease, as last read
        self._state: BrokerState | None = None
        self.cycles = 0
        self._queue_positions = liveview.QueuePositions()  # for Get and List, off the queue's walk
        self.observer: CycleObserver = NoObserver()  # metrics and logs of each committed cycle
        self.config_path: Path | None = None  # the federation file a reload reads again
        self.config_listeners: list[Callable[[FederationConfig], None]] = []  # told of a reload

    @property
    def state(self) -> BrokerState:
        assert self._state is not None, "Engine.start() first"
        return self._state

    @property
    def active(self) -> bool:
        """Scheduling now (else on standby, or stepping down: commands are refused)."""
        return bool(self._term) and self.role.active

    @property
    def epoch(self) -> int:
        """The lease's epoch this broker schedules under (0: no lease)."""
        return self.lease.epoch if self.lease is not None else 0

    def _new_links(self) -> dict[str, SiteLink]:
        # Every site counts as heard now: after a start or a takeover, agents get one TTL to connect.
        return {s.name: SiteLink(s.name, heard_at=self.clock.now()) for s in self.config.sites}

    # ------------------------------------------------------------------ lifecycle

    async def start(self, *, tick: bool = True) -> None:
        """Recover from the database, then run cycles (and, unless told not to, the health timer).
        With a lease: check the database answers, then contend for the lease in the background."""
        if self.lease is not None:
            await asyncio.to_thread(self.lease.holder)  # an unreachable database fails the start
            await self._refresh_view()
            self._tasks.append(asyncio.create_task(self._lead(self.lease, tick), name="fedbroker lease"))
            return
        await self._rebuild()
        self._begin_term(tick)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        await self._end_term(Unavailable("the broker is stopping"))
        if self.lease is not None and self.lease.epoch:
            with contextlib.suppress(Exception):  # a dead database: the lease simply expires
                await asyncio.to_thread(self.lease.release)
        self.writer.close()

    def _begin_term(self, tick: bool) -> None:
        self._fenced.clear()
        self._term.append(asyncio.create_task(self._run(), name="fedbroker engine"))
        if tick:
            self._term.append(asyncio.create_task(self._tick_forever(), name="fedbroker ticker"))

    async def _end_term(self, error: BrokerError) -> None:
        """Stop scheduling: no more cycles, callers told, agent streams ended (they reconnect)."""
        for task in self._term:
            task.cancel()
        for task in self._term:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._term.clear()
        batch, self._inbox = self._inbox, []
        self._fail(batch, error)
        for link in self.links.values():
            if link.session is not None:
                link.session.close()  # ends the agent streams, so a server's grace is not waited out

    # ------------------------------------------------------------------ the lease

    async def _lead(self, lease: Lease, tick: bool) -> None:
        """Contend for the lease; schedule while holding it; step down when it is lost."""
        poll_s = _poll_s(lease)
        waiting_logged = False
        viewed_at = time.monotonic()
        while True:
            try:
                epoch = await asyncio.to_thread(lease.try_acquire)
            except Exception as error:
                log.error("cannot reach the database to contend for the lease: %s", _short(error))
                epoch = None
            if epoch is None:
                with contextlib.suppress(Exception):  # kept: refusals quote it without a query each
                    self._standby_note, self._holder_lease_ends = await asyncio.to_thread(self._read_holder)
                if not waiting_logged:
                    log.warning("%s", self._standby_note)
                    waiting_logged = True
                if time.monotonic() - viewed_at >= STANDBY_VIEW_S:
                    await self._refresh_view()
                    viewed_at = time.monotonic()
                self.hub.wake_all()  # watchers on a standby read new events from the database
                await asyncio.sleep(poll_s)
                continue
            waiting_logged = False
            log.warning("broker %s is the active scheduler now (epoch %d)", self.broker_id, epoch)
            self.links = self._new_links()
            try:
                await self._rebuild(fresh=True)
            except Exception as error:
                log.error("cannot rebuild from the database after taking the lease: %s", _short(error))
                await asyncio.to_thread(lease.release)
                continue
            self._begin_term(tick)
            self.role.set(ACTIVE)
            reason = await self._hold(lease)
            log.error("broker %s steps down to standby: %s", self.broker_id, reason)
            self.role.set(STANDBY)
            await self._end_term(Unavailable(f"broker {self.broker_id} lost the scheduler lease; retry"))
            lease.epoch = 0
            await self._refresh_view()
            viewed_at = time.monotonic()

    async def _refresh_view(self) -> None:
        """On standby: a read-only state rebuilt from the database, for sites, explain and usage."""
        try:
            stored, book = await self.read(lambda conn: (reads.for_recovery(conn), ledger.Book.load(conn)))
        except Exception as error:
            log.error("cannot read the database for the standby's view: %s", _short(error))
            return
        links = self._new_links()
        view, _ = rebuild(
            stored, book, self.config, links, broker_id=self.broker_id, wall=self.wall, clock=self.clock
        )
        if self._state is not None:
            view.core.metrics = self._state.core.metrics
        self.links, self._state = links, view

    async def _hold(self, lease: Lease) -> str:
        """Renew every ttl/3 until the lease is lost; returns why."""
        renewed_at = time.monotonic()
        while True:
            fenced = asyncio.create_task(self._fenced.wait())
            await asyncio.wait({fenced}, timeout=lease.ttl_s / 3)
            fenced.cancel()
            if self._fenced.is_set():
                return "a commit found the lease taken or expired"
            try:
                await asyncio.to_thread(lease.renew)
                renewed_at = time.monotonic()
            except LeaseLost as error:
                return str(error)
            except Exception as error:
                # The database is away: hold on until the lease would have run out, then stop,
                # since a standby may take it from then on.
                if time.monotonic() - renewed_at >= lease.ttl_s:
                    return f"could not renew the lease for {lease.ttl_s:g}s: {_short(error)}"
                log.error("cannot renew the lease (retrying): %s", _short(error))

    def _read_holder(self) -> tuple[str, float | None]:
        """Who is active, in words, and (monotonic) when a live holder's lease ends (None: no
        live holder)."""
        holder = self.lease.holder() if self.lease is not None else None
        if holder is None or not holder.broker_id:
            return f"broker {self.broker_id} is on standby; no broker holds the scheduler lease yet", None
        if holder.expires_in_s < 0:
            return (
                f"broker {self.broker_id} is on standby; the lease of {holder.broker_id} ran out"
                f" {-holder.expires_in_s:.1f}s ago: a standby takes over in moments"
            ), None
        where = f" at {holder.address}" if holder.address else ""
        return (
            f"broker {self.broker_id} is on standby; the active broker is {holder.broker_id}{where}"
            f" (epoch {holder.epoch})"
        ), time.monotonic() + holder.expires_in_s

    def _standby(self) -> Standby:
        """The refusal of a command on standby. With a live holder, it says how long a retry
        here can help: until its lease could have run out, this broker seen it at its next poll
        and taken over, with TAKEOVER_S for the rebuild (a holder that lives renews it, and this
        never takes over)."""
        ends, within = self._holder_lease_ends, None
        if ends is not None and self.lease is not None:
            within = max(0.0, ends - time.monotonic()) + _poll_s(self.lease) + TAKEOVER_S
        return Standby(self._standby_note, within)

    def _refuse_on_standby(self) -> None:
        if not self.active:
            raise self._standby()

    # ------------------------------------------------------------------ commands

    async def call(self, command: c.Command) -> Any:
        """Hand a command to the engine and wait for its answer (after its commit)."""
        if not self.active:
            raise self._standby()
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._inbox.append((command, future))
        self._wakeup.set()
        return await future

    def post(self, command: c.Command) -> None:
        """Hand a command to the engine; no answer (agents' reports, updates, acks)."""
        if not self.active:
            return  # a standby has no agent streams; a stepping-down one drops what is left
        self._inbox.append((command, None))
        self._wakeup.set()

    async def submit(
        self, tenant: str, spec: WorkloadSpec, spec_wire: bytes, request_id: str | None = None
    ) -> tuple[WorkloadRecord, dict]:
        """The new workload and its decision; with a `request_id` already used by this tenant,
        the workload that submit made (its explanation says it is a repeat: engine/requests.py)."""
        result: tuple[WorkloadRecord, dict] | Repeat = await self.call(
            c.Submit(tenant, spec, spec_wire, request_id)
        )
        if not isinstance(result, Repeat):
            return result
        assert request_id is not None
        wid = result.workload_id
        record = await self.read(lambda conn: reads.workload(conn, wid))
        if record is None:  # committed before it was remembered: cannot be, unless deleted by hand
            raise NotFound(f"workload {wid} of request id {request_id!r} is no longer stored")
        check_same_spec(wid, record.spec, spec, request_id)
        return record, repeat_explanation(wid, record.site, record.state, request_id)

    def evaluate(self, tenant: str, spec: WorkloadSpec) -> dict[str, Any]:
        """A dry run on the live state: the decision a submit would get now."""
        self._refuse_on_standby()
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
        return liveview.statuses(
            self.state.core, self.links, self.config, clocks, records, self._queue_positions
        )

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

    async def usage(
        self, tenant: str | None, query: ledger.UsageQuery | None = None
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Settlements summed as `query` asks, and the budgets and caps; `tenant`: only its own."""
        query = query or ledger.UsageQuery()
        if tenant is not None:
            query = dataclasses.replace(query, tenant=tenant)
        wanted = query
        rows = await self.read(lambda conn: ledger.usage(conn, wanted))
        tenant = tenant or query.tenant
        return rows, ledger.budgets(self.config, self.state.money.book, tenant, self.wall())

    def quote(self, tenant: str, spec: WorkloadSpec) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """A dry run's decision, and what the workload would cost at each site (before submit)."""
        explanation = self.evaluate(tenant, spec)
        return explanation, self.state.quotes(tenant, spec, explanation)

    async def reload_config(self, by: str) -> reloading.ReloadResult:
        """Read the federation file again and use it from the next cycle (SIGHUP, `config reload`).
        A file that fails validation keeps the old config; the log and the result say why."""
        path = str(self.config_path) if self.config_path is not None else ""
        if self.config_path is None:
            return reloading.ReloadResult(False, path, ["this broker was started without a config file"])
        try:
            config = await asyncio.to_thread(load_federation, self.config_path)
        except InvalidInput as error:
            log.error("config reload by %s refused, the old config stays: %s", by, error)
            return reloading.ReloadResult(False, path, list(error.problems) or [str(error)])
        if not self.active:  # a standby: its view and its tokens follow the file too
            changed = reloading.changes(self.config, config)
            await self._use_config(config)
            return reloading.ReloadResult(True, path, [], changed)
        result: reloading.ReloadResult = await self.call(c.Reload(config, path, by))
        if not result.reloaded:
            log.error("config reload by %s refused, the old config stays: %s", by, "; ".join(result.problems))
        return result

    async def _use_config(self, config: FederationConfig) -> None:
        """Swap the config, then rebuild memory from the database under it (reservations keep
        their placed price: it is in their rows)."""
        self.config = config
        for site in config.sites:
            self.links.setdefault(site.name, SiteLink(site.name, heard_at=self.clock.now()))
        for name in [n for n in self.links if config.site(n) is None]:
            removed = self.links.pop(name)  # no work there (engine/reload.py checked)
            if removed.session is not None:
                removed.session.close()
        if self.active:
            await self._rebuild()
        else:
            await self._refresh_view()
        for listener in self.config_listeners:
            listener(config)

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
            if batch and self._fenced.is_set():
                self._fail(batch, Unavailable(f"broker {self.broker_id} lost the scheduler lease; retry"))
            elif batch:
                await self.cycle(batch)

    async def cycle(self, batch: list[tuple[c.Command, asyncio.Future[Any] | None]]) -> None:
        """One scheduling cycle over `batch` (step 1, drain, is the caller's)."""
        self.cycles += 1
        started = time.perf_counter()
        tracer = telemetry.tracer()
        state = self.state
        tx = Tx()
        # The steps' spans are never made current (nothing nests in them; a context switch in
        # and out costs as much as the span) and belong to no workload's trace.
        # 2. decide
        span = tracer.start_span(
            "fedbroker.cycle.decide", _NO_TRACE, attributes={"fedbroker.commands": len(batch)}
        )
        try:
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
                state.checkpoint_heard(tx)  # after the rest: it rides on their commit if any
            except Exception:
                log.exception("a scheduling cycle failed; rebuilding the broker's state from the store")
                await self._recover(
                    batch, Unavailable("the broker hit an internal error and recovered; retry")
                )
                return
        finally:
            span.end()
        decided = time.perf_counter()
        # 3. persist
        rows = tx.rows()
        if rows:
            span = tracer.start_span(
                "fedbroker.cycle.persist", _NO_TRACE, attributes={"fedbroker.rows": len(rows)}
            )
            if telemetry.traces_exported():  # it is the database span (no SQLAlchemy instrumentation)
                span.set_attributes(self._db_span_attributes(rows))
            try:
                try:
                    await self.writer.commit(rows)
                except LeaseLost as error:
                    # Another broker may be scheduling: nothing of this cycle is kept or published,
                    # and no rebuild: this broker steps down (`_lead`).
                    log.error("commit refused, nothing of this cycle is kept: %s", error)
                    self._fenced.set()
                    self._fail(batch, Unavailable(f"broker {self.broker_id} lost the scheduler lease; retry"))
                    return
                except Exception as error:
                    log.error("commit failed, nothing of this cycle is kept: %s", _short(error))
                    span.set_status(trace.Status(trace.StatusCode.ERROR, _short(error)))
                    await self._recover(
                        batch, Unavailable(f"the broker could not store this now: {_short(error)}")
                    )
                    return
            finally:
                span.end()
        persist_s = time.perf_counter() - decided if rows else 0.0
        # 4. apply
        state.forget(tx.ended)
        state.money.committed(tx)  # the ledger's cache takes only committed rows
        if tx.reload is not None:
            await self._use_config(tx.reload)  # between cycles: the next one runs under it
        # 5. publish
        span = tracer.start_span(
            "fedbroker.cycle.publish", _NO_TRACE, attributes={"fedbroker.messages": len(tx.messages)}
        )
        for site, message in tx.messages:
            self.links[site].send(message)
        for event in tx.events:
            self.hub.publish(event.workload_id, event.seq)
        for future, value in tx.replies:
            if not future.done():
                future.set_result(value)
        span.end()
        self.observer.cycle_done(tx, decided - started, persist_s)

    def _db_span_attributes(self, rows: Rows) -> dict[str, str | int]:
        """The persist span's database attributes: the system and the rows of its one transaction."""
        return {
            "db.system.name": self.store.engine.dialect.name,  # "sqlite", "postgresql"
            "db.operation.name": "COMMIT",
            "fedbroker.rows.inserted": len(rows.inserted),
            "fedbroker.rows.updated": len(rows.updated),
            "fedbroker.rows.events": len(rows.events),
            "fedbroker.rows.decisions": len(rows.decisions),
            "fedbroker.rows.ledger": len(rows.ledger),
            "fedbroker.rows.sites": len(rows.sites),
        }

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
            case c.Reload():
                return state.reload(tx, command)
        raise TypeError(f"unknown command {command!r}")

    async def _recover(
        self, batch: list[tuple[c.Command, asyncio.Future[Any] | None]], error: BrokerError
    ) -> None:
        """Rebuild memory from the store, then tell the cycle's callers: whoever retries at once
        meets the rebuilt state. If the database stays away, callers hear after a second and
        the rebuild goes on retrying."""
        # A submit repeating a request id too old for memory failed on the unique index: read
        # back whose those ids are, so the client's retry is answered with its workload.
        requests = [
            (cmd.tenant, cmd.request_id) for cmd, _ in batch if isinstance(cmd, c.Submit) and cmd.request_id
        ]
        rebuilt = asyncio.create_task(self._rebuild(requests=requests))
        await asyncio.wait({rebuilt}, timeout=1.0)
        self._fail(batch, error)
        await rebuilt

    @staticmethod
    def _fail(batch: list[tuple[c.Command, asyncio.Future[Any] | None]], error: BrokerError) -> None:
        for _, future in batch:
            if future is not None and not future.done():
                future.set_exception(error)

    async def _rebuild(self, *, fresh: bool = False, requests: list[tuple[str, str]] | None = None) -> None:
        """Memory from the database alone (at start, at a takeover (`fresh`), and after a failed
        commit); retries while it is down."""
        healthy = (
            frozenset()
            if self._state is None or fresh
            else frozenset(n for n in self.links if self._state.core.healthy(n))
        )
        delay = 0.2
        while True:
            try:
                stored, book, owners = await self.read(
                    lambda conn: (
                        reads.for_recovery(conn, MAX_REMEMBERED),
                        ledger.Book.load(conn),
                        reads.request_owners(conn, requests or ()),
                    )
                )
                state, tx = rebuild(
                    stored,
                    book,
                    self.config,
                    self.links,
                    broker_id=self.broker_id,
                    wall=self.wall,
                    clock=self.clock,
                    healthy=healthy,
                )
                state.requests.load(owners)
                rows = tx.rows()
                if rows:
                    await self.writer.commit(rows)
                state.money.committed(tx)
            except Exception as error:
                if self._state is None or fresh:
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


def _poll_s(lease: Lease) -> float:
    """How often a standby reads the lease."""
    return lease.ttl_s / 6


def _as_broker_error(error: Exception) -> BrokerError:
    """The core's refusal of a malformed request reaches the caller as INVALID_ARGUMENT."""
    return error if isinstance(error, BrokerError) else InvalidArgument(str(error))


def _short(error: Exception) -> str:
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return text[:300]

"""The broker's state machine: workloads, sites and agents, over the store and the placement core.

Everything runs on one asyncio loop and every method here is synchronous, so
each call is atomic with respect to the others: the placement core and the
store never see two submits interleaved. That is how the broker never
over-commits a site or a budget, however many submits arrive at once.
The gRPC layer (broker/api) only authenticates, converts and calls in here.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from fedbroker.v1 import agent_service_pb2
from opentelemetry import trace
from sqlmodel import Session, col, select

from broker import ledger, lifecycle, placement, telemetry
from broker.auth import Identity
from broker.config import FederationConfig
from broker.dispatch import AgentSession, Dispatcher
from broker.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from broker.federation import check_references, placement_federation, placement_request
from broker.inventory import SiteState, node_from_json, node_from_proto, node_to_json
from broker.lifecycle import ACTIVE, CANCELLED, FAILED, PLACED, QUEUED, RUNNING, SUCCEEDED, TERMINAL
from broker.spec import WorkloadSpec, parse_spec, spec_to_proto
from broker.store import DecisionRow, SiteRow, Store, WorkloadEventRow, WorkloadRow
from broker.watch import WatchHub

log = logging.getLogger("fedbroker.broker")

LIST_LIMIT_DEFAULT = 1000


def new_workload_id() -> str:
    return f"wl-{uuid.uuid4().hex[:12]}"


class Broker:
    def __init__(
        self,
        config: FederationConfig,
        store: Store,
        *,
        clock: Callable[[], float] = time.time,
        broker_id: str | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.clock = clock
        self.broker_id = broker_id or f"broker-{uuid.uuid4().hex[:8]}"
        with Session(store.engine) as session:
            spent = ledger.spent_by_tenant(session)
        self.core = placement.PlacementCore(placement_federation(config, spent))
        self.sites = {s.name: SiteState(s.name, tuple(s.backends)) for s in config.sites}
        self.dispatch = Dispatcher()
        self.hub = WatchHub()
        self.started_at = clock()
        self._pending_events: list[tuple[str, int]] = []
        self._recover()

    # ------------------------------------------------------------------ tenants

    def submit(
        self, who: Identity, spec: WorkloadSpec, *, dry_run: bool = False
    ) -> tuple[WorkloadRow | None, dict[str, Any]]:
        """Validate, decide and (unless dry_run) store a workload. Returns it and its explanation."""
        if who.role != "tenant":
            raise PermissionDenied(f"{who} cannot submit workloads; use a tenant token")
        problems = check_references(self.config, spec)
        if problems:
            raise InvalidArgument("spec: " + "; ".join(problems))
        if dry_run:
            request = placement_request("dry-run", who.name, spec, seq=0)
            return None, self.core.evaluate(request).explanation.to_dict()

        now = self.clock()
        with (
            telemetry.tracer().start_as_current_span(
                "fedbroker.submit", context=trace.set_span_in_context(trace.INVALID_SPAN)
            ) as span,
            self._session() as session,
        ):
            row = WorkloadRow(
                id=new_workload_id(),
                name=spec.name,
                tenant=who.name,
                backend=spec.backend,
                spec=spec.model_dump(mode="json"),
                state=QUEUED,
                trace_id=telemetry.trace_id_hex(span),
                traceparent=telemetry.inject(span).get("traceparent", ""),
                created_at=now,
                updated_at=now,
            )
            span.set_attributes({"fedbroker.workload": row.id, "fedbroker.tenant": who.name})
            session.add(row)
            session.flush()  # assigns row.seq, the workload's place in the queue
            assert row.seq is not None
            decision = self.core.submit(placement_request(row.id, who.name, spec, row.seq))
            explanation = decision.explanation.to_dict()
            if isinstance(decision, placement.Refused):  # leaving with an error rolls back
                raise FailedPrecondition(_refusal_message(explanation))
            self._record_decision(session, row, explanation)
            if isinstance(decision, placement.Placed):
                self._place(session, row, decision)
            else:
                self._transition(session, row, QUEUED, explanation["summary"])
        log.info("submitted %s (%s) for %s: %s", row.id, row.name, who.name, row.state)
        return row, explanation

    def get(self, who: Identity, workload_id: str) -> WorkloadRow:
        with self._session() as session:
            return self._visible_row(session, who, workload_id)

    def list_workloads(self, who: Identity, states: Iterable[str] = (), limit: int = 0) -> list[WorkloadRow]:
        if who.role == "agent":
            raise PermissionDenied(f"{who} cannot list workloads")
        query = select(WorkloadRow).order_by(col(WorkloadRow.seq).desc())
        if who.role == "tenant":
            query = query.where(WorkloadRow.tenant == who.name)
        wanted = list(states)
        if wanted:
            query = query.where(col(WorkloadRow.state).in_(wanted))
        with self._session() as session:
            return list(session.exec(query.limit(limit or LIST_LIMIT_DEFAULT)).all())

    def cancel(self, who: Identity, workload_id: str) -> WorkloadRow:
        with self._session() as session:
            row = self._visible_row(session, who, workload_id)
            if row.state in TERMINAL:
                raise FailedPrecondition(f"workload {row.id} is already {row.state}")
            was_at = row.site if row.state in ACTIVE else None
            self._settle(session, row)
            self.core.cancel(row.id)
            self._transition(session, row, CANCELLED, f"cancelled by {who}")
            if was_at is not None:
                self._send_cancel(was_at, row.id, row.attempt, f"cancelled by {who}")
        self.schedule()
        return row

    def explain(self, who: Identity, workload_id: str) -> dict[str, Any]:
        with self._session() as session:
            row = self._visible_row(session, who, workload_id)
            if row.state == QUEUED:
                live = self.core.explain(row.id)
                if live is not None:
                    return {**live.to_dict(), "attempt": row.attempt}
            decision = session.exec(
                select(DecisionRow)
                .where(DecisionRow.workload_id == row.id)
                .order_by(col(DecisionRow.seq).desc())
                .limit(1)
            ).first()
            if decision is None:
                raise NotFound(f"no decision recorded for workload {row.id}")
            return {**decision.explanation, "attempt": decision.attempt}

    def events_after(self, workload_id: str, after_seq: int) -> list[WorkloadEventRow]:
        with self._session() as session:
            return list(
                session.exec(
                    select(WorkloadEventRow)
                    .where(WorkloadEventRow.workload_id == workload_id)
                    .where(col(WorkloadEventRow.seq) > after_seq)
                    .order_by(col(WorkloadEventRow.seq))
                ).all()
            )

    def site_usage(self, name: str) -> placement.SiteUsage:
        return self.core.site_usage(name)

    # ------------------------------------------------------------------ agents

    def agent_hello(self, who: Identity, hello: agent_service_pb2.Hello) -> AgentSession:
        """Open a session for a site's agent; queue the Welcome and every unacknowledged assignment."""
        if who.role != "agent":
            raise PermissionDenied(f"{who} is not a site agent")
        if hello.site != who.name:
            raise PermissionDenied(f"this token is for site {who.name!r}, not {hello.site!r}")
        site = self.sites[who.name]
        live = self.dispatch.current(site.name)
        age = site.heartbeat_age(self.clock())
        if (
            live is not None
            and live.agent_id != hello.agent_id
            and age is not None
            and age <= self.config.heartbeat_ttl_s
        ):
            # Two agents for one site would take turns replacing each other, and each
            # would declare the other's work lost. The newcomer waits (and retries).
            raise FailedPrecondition(f"site {site.name} already has a live agent {live.agent_id!r}")
        session = self.dispatch.open(site.name, hello.agent_id)
        site.agent_id = hello.agent_id
        # Sequence numbers order reports within one agent session (an agent restarted, or
        # another one, starts its own sequence), so the comparison starts afresh.
        site.report_seq = 0
        site.awaiting_first_report = True
        session.outbox.put_nowait(
            agent_service_pb2.BrokerMessage(
                welcome=agent_service_pb2.Welcome(
                    broker_id=self.broker_id, heartbeat_ttl_s=self.config.heartbeat_ttl_s
                )
            )
        )
        with self._session() as db:
            unacked = db.exec(
                select(WorkloadRow)
                .where(WorkloadRow.site == site.name)
                .where(WorkloadRow.state == PLACED)
                .where(WorkloadRow.acked == False)  # noqa: E712  (SQL comparison)
                .order_by(col(WorkloadRow.seq))
            ).all()
            for row in unacked:
                session.outbox.put_nowait(self._assignment(row))
        log.info("agent %s connected for %s; re-sent %d assignments", hello.agent_id, site.name, len(unacked))
        return session

    def agent_disconnected(self, session: AgentSession) -> None:
        if self.dispatch.close(session):
            log.info("agent %s for %s disconnected", session.agent_id, session.site)

    def agent_report(self, site_name: str, report: agent_service_pb2.InventoryReport) -> None:
        """A full inventory snapshot, which is also the agent's heartbeat."""
        site = self.sites[site_name]
        if report.seq <= site.report_seq:
            return  # older than what we have: reports may cross a reconnect
        names = [n.name for n in report.nodes]
        if len(set(names)) != len(names):
            # A broken snapshot is not applied; the site goes unhealthy by TTL if they persist.
            log.error("ignored report %d from %s: a node is listed twice", report.seq, site_name)
            return
        site.report_seq = report.seq
        site.last_report_at = self.clock()
        nodes = [node_from_proto(n) for n in report.nodes]
        datasets = sorted(set(report.datasets))
        changed = (nodes, datasets) != (site.nodes, site.datasets)
        site.nodes, site.datasets = nodes, datasets
        running: list[str] = []
        with self._session() as session:
            seen: set[str] = set()
            for item in report.workloads:
                state = lifecycle.from_proto(item.state)
                row = self._reconcile(session, site_name, item.workload_id, item.attempt, state, item.message)
                if row is None:
                    continue
                seen.add(row.id)
                if state == RUNNING and row.state in ACTIVE:
                    running.append(row.id)  # its GPUs now show as allocated on the nodes
            if site.awaiting_first_report:
                site.awaiting_first_report = False
                self._requeue_lost(session, site_name, seen)
            if changed:  # most heartbeats repeat the last snapshot: no write for those
                session.merge(
                    SiteRow(name=site_name, nodes=[node_to_json(n) for n in nodes], datasets=datasets)
                )
        self.core.update_site(site_name, nodes=site.nodes, datasets=site.datasets, running=running)
        if not site.healthy:
            site.healthy = True
            site.unhealthy_since = None
            self.core.set_healthy(site_name, True)
            log.info("site %s is healthy", site_name)
        self.schedule()

    def agent_update(self, site_name: str, update: agent_service_pb2.WorkloadUpdate) -> None:
        state = lifecycle.from_proto(update.state)
        with self._session() as session:
            self._reconcile(session, site_name, update.workload_id, update.attempt, state, update.message)
        self.schedule()

    def agent_ack(self, site_name: str, ack: agent_service_pb2.Ack) -> None:
        with self._session() as session:
            row = self._row(session, ack.workload_id)
            if row is not None and row.site == site_name and row.attempt == ack.attempt:
                row.acked = True
                session.add(row)

    # ------------------------------------------------------------------ scheduling

    def schedule(self) -> int:
        """One queue pass: place what now fits. Returns how many were placed."""
        placed = self.core.schedule()
        if not placed:
            return 0
        with self._session() as session:
            for decision in placed:
                row = self._row(session, decision.workload_id)
                assert row is not None  # the core only places what the store holds
                self._record_decision(session, row, decision.explanation.to_dict())
                self._place(session, row, decision)
        return len(placed)

    def sweep(self) -> None:
        """Health: sites silent for the TTL go unhealthy; their work is re-queued as the design says."""
        now = self.clock()
        for site in self.sites.values():
            age = site.heartbeat_age(now)
            if site.healthy and (age is None or age > self.config.heartbeat_ttl_s):
                site.healthy = False
                site.unhealthy_since = now
                self.core.set_healthy(site.name, False)
                log.warning("site %s is unhealthy: no report for %.1fs", site.name, age or 0.0)
            elif (
                site.unhealthy_since is None
                and not site.healthy
                and now - self.started_at > self.config.heartbeat_ttl_s
            ):
                # Never heard from since this broker started: give its agent one TTL to
                # reconnect before its work is treated as stranded.
                site.unhealthy_since = now
            if site.healthy or site.unhealthy_since is None:
                continue
            grace_over = now - site.unhealthy_since >= self.config.requeue_grace_s
            with self._session() as session:
                for row in self._active_at(session, site.name):
                    if row.state == PLACED and not row.acked:
                        self._retry_or_fail(session, row, f"site {site.name} unavailable before launch")
                    elif grace_over:
                        self._retry_or_fail(
                            session,
                            row,
                            f"site {site.name} unavailable for {now - site.unhealthy_since:.0f}s",
                        )
        self.schedule()

    # ------------------------------------------------------------------ internals

    def _session(self) -> Any:
        return _PublishingSession(self)

    @staticmethod
    def _row(session: Session, workload_id: str) -> WorkloadRow | None:
        return session.exec(select(WorkloadRow).where(WorkloadRow.id == workload_id)).first()

    @staticmethod
    def _active_at(session: Session, site: str) -> list[WorkloadRow]:
        """The workloads placed or running at site, oldest first."""
        query = (
            select(WorkloadRow)
            .where(WorkloadRow.site == site)
            .where(col(WorkloadRow.state).in_(list(ACTIVE)))
            .order_by(col(WorkloadRow.seq))
        )
        return list(session.exec(query).all())

    def _reconcile(
        self, session: Session, site: str, workload_id: str, attempt: int, state: str, message: str
    ) -> WorkloadRow | None:
        """Apply what a site's agent says of one attempt, and fence what it should not run.

        Returns the workload when the attempt is its current one at this site, else None.
        A stale, unknown or finished attempt still running there is told to cancel."""
        row = self._row(session, workload_id)
        if row is None or row.site != site or row.attempt != attempt:
            if state not in TERMINAL:
                self._send_cancel(site, workload_id, attempt, "stale attempt")
            return None
        if row.state in TERMINAL and state not in TERMINAL:
            # e.g. cancelled while the agent was away: that Cancel never reached it
            self._send_cancel(site, row.id, row.attempt, f"workload is {row.state}")
        else:
            self._apply_agent_state(session, row, state, message or state.lower())
        return row

    def _visible_row(self, session: Session, who: Identity, workload_id: str) -> WorkloadRow:
        if who.role == "agent":
            raise PermissionDenied(f"{who} cannot read workloads")
        row = self._row(session, workload_id)
        # Another tenant's workload is reported as absent, so ids leak nothing.
        if row is None or (who.role == "tenant" and row.tenant != who.name):
            raise NotFound(f"no workload {workload_id!r}")
        return row

    def _transition(self, session: Session, row: WorkloadRow, state: str, message: str) -> None:
        if row.state != state and not lifecycle.can_follow(row.state, state):
            log.debug("ignored %s -> %s for %s", row.state, state, row.id)
            return
        row.state = state
        row.message = message
        row.updated_at = self.clock()
        session.add(row)
        event = WorkloadEventRow(
            workload_id=row.id,
            state=state,
            site=row.site,
            attempt=row.attempt,
            message=message,
            at=row.updated_at,
        )
        session.add(event)
        session.flush()
        assert event.seq is not None
        self._pending_events.append((row.id, event.seq))

    def _place(self, session: Session, row: WorkloadRow, decision: placement.Placed) -> None:
        row.attempt += 1
        row.started_at = None
        row.site = decision.site
        row.nodes = list(decision.nodes)
        row.acked = False
        with telemetry.tracer().start_as_current_span(
            "fedbroker.place", context=telemetry.extract({"traceparent": row.traceparent})
        ) as span:
            span.set_attributes(
                {
                    "fedbroker.workload": row.id,
                    "fedbroker.attempt": row.attempt,
                    "fedbroker.site": decision.site,
                }
            )
            for candidate in decision.explanation.candidates:
                span.add_event("candidate", _candidate_attributes(candidate))
        self._transition(session, row, PLACED, decision.explanation.summary)
        self.dispatch.send(decision.site, self._assignment(row))

    def _assignment(self, row: WorkloadRow) -> agent_service_pb2.BrokerMessage:
        with telemetry.tracer().start_as_current_span(
            "fedbroker.dispatch", context=telemetry.extract({"traceparent": row.traceparent})
        ) as span:
            span.set_attributes({"fedbroker.workload": row.id, "fedbroker.attempt": row.attempt})
            carrier = telemetry.inject(span)
        return agent_service_pb2.BrokerMessage(
            assignment=agent_service_pb2.Assignment(
                workload_id=row.id,
                attempt=row.attempt,
                tenant=row.tenant,
                spec=spec_to_proto(row.spec),
                nodes=row.nodes,
                trace_context=carrier,
            )
        )

    def _apply_agent_state(self, session: Session, row: WorkloadRow, state: str, message: str) -> None:
        if row.state in TERMINAL or state == row.state:
            return
        if state == RUNNING:
            row.acked = True
            row.started_at = self.clock()
            self._transition(session, row, RUNNING, message)
        elif state == SUCCEEDED:
            self._settle(session, row)
            self.core.finish(row.id)
            self._transition(session, row, SUCCEEDED, message)
        elif state == FAILED:
            self._retry_or_fail(session, row, f"attempt {row.attempt} failed: {message}")
        elif state == CANCELLED:
            self._settle(session, row)
            self.core.finish(row.id)
            self._transition(session, row, CANCELLED, f"cancelled at the site: {message}")

    def _retry_or_fail(self, session: Session, row: WorkloadRow, reason: str) -> None:
        self._settle(session, row)
        max_attempts = int(row.spec.get("max_attempts", 1))
        if row.attempt < max_attempts:
            # No Cancel is sent here: if the old attempt surfaces in a later
            # report, the attempt numbers no longer match and it is cancelled then.
            self.core.requeue(row.id)
            row.site, row.nodes, row.acked = None, [], False
            self._transition(session, row, QUEUED, f"{reason}; queued for attempt {row.attempt + 1}")
        else:
            self.core.finish(row.id)
            self._transition(session, row, FAILED, f"{reason}; no attempts left ({max_attempts})")
        log.info("%s: %s", row.id, row.message)

    def _settle(self, session: Session, row: WorkloadRow) -> None:
        """Charge the current attempt for the time it ran, once, before its GPUs are released.

        The run time is from the agent's RUNNING report to the moment the broker records the
        attempt's end (or, for a lost site, gives up on it)."""
        if row.started_at is None:
            return  # never ran: nothing to charge; the reservation is simply released
        hours = max(0.0, self.clock() - row.started_at) / 3600
        charge = self.core.charge(row.id, hours)
        row.started_at = None
        if charge is not None and charge.cost_hkd > 0:
            session.add(ledger.charge_row(charge, row.attempt, self.clock()))

    def usage(self, who: Identity) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Settled charges by (tenant, program, site), and each visible tenant's budget."""
        if who.role == "agent":
            raise PermissionDenied(f"{who} cannot read usage")
        tenant = who.name if who.role == "tenant" else None
        with Session(self.store.engine) as session:
            rows = ledger.usage_rows(session, tenant)
            budgets = ledger.budgets(session, self.config, self.core.budget_left, tenant)
        return rows, budgets

    def _requeue_lost(self, session: Session, site_name: str, seen: set[str]) -> None:
        """Attempts the site took but its (restarted) agent no longer knows were lost with it."""
        for row in self._active_at(session, site_name):
            if row.acked and row.id not in seen:
                self._retry_or_fail(session, row, f"attempt {row.attempt} lost by the {site_name} agent")

    def _send_cancel(self, site: str, workload_id: str, attempt: int, reason: str) -> None:
        self.dispatch.send(
            site,
            agent_service_pb2.BrokerMessage(
                cancel=agent_service_pb2.Cancel(workload_id=workload_id, attempt=attempt, reason=reason)
            ),
        )

    def _record_decision(self, session: Session, row: WorkloadRow, explanation: dict[str, Any]) -> None:
        """Store a decision; one that chose a site is for the next attempt."""
        attempt = row.attempt + 1 if explanation.get("chosen") else row.attempt
        session.add(
            DecisionRow(
                workload_id=row.id,
                attempt=attempt,
                chosen=explanation.get("chosen"),
                explanation=explanation,
                at=self.clock(),
            )
        )

    def _recover(self) -> None:
        """Rebuild the in-memory views from the store after a (re)start."""
        with Session(self.store.engine) as session:
            for site_row in session.exec(select(SiteRow)).all():
                site = self.sites.get(site_row.name)
                if site is None:
                    continue  # a site removed from the config
                site.nodes = [node_from_json(n) for n in site_row.nodes]
                site.datasets = list(site_row.datasets)
                self.core.update_site(site.name, nodes=site.nodes, datasets=site.datasets)
            rows = session.exec(
                select(WorkloadRow)
                .where(col(WorkloadRow.state).not_in(list(TERMINAL)))
                .order_by(col(WorkloadRow.seq))
            ).all()
        restored = 0
        with self._session() as session:
            for row in rows:
                assert row.seq is not None
                request = placement_request(row.id, row.tenant, parse_spec(row.spec), row.seq)
                if row.state in ACTIVE and row.site in self.sites:
                    self.core.restore(request, row.site, row.nodes)
                else:
                    decision = self.core.submit(request)
                    if isinstance(decision, placement.Refused):
                        reason = _refusal_message(decision.explanation.to_dict())
                        self._transition(session, row, FAILED, f"refused after restart: {reason}")
                restored += 1
        if restored:
            log.info("recovered %d unfinished workloads from the store", restored)


class _PublishingSession:
    """A store transaction that wakes Watch streams only after it has committed."""

    def __init__(self, broker: Broker) -> None:
        self._broker = broker
        self._context = broker.store.session()

    def __enter__(self) -> Session:
        return self._context.__enter__()

    def __exit__(self, *exc: Any) -> None:
        try:
            self._context.__exit__(*exc)
        finally:
            events, self._broker._pending_events = self._broker._pending_events, []
            if exc[0] is None:
                for workload_id, seq in events:
                    self._broker.hub.publish(workload_id, seq)


def _refusal_message(explanation: dict[str, Any]) -> str:
    reasons = [f"{c['site']}: {'; '.join(c['reasons'])}" for c in explanation["candidates"] if c["reasons"]]
    return "can never fit any site: " + " | ".join(reasons)


def _candidate_attributes(candidate: placement.Candidate) -> dict[str, Any]:
    attributes: dict[str, Any] = {"site": candidate.site, "eligible": candidate.eligible}
    if candidate.reasons:
        attributes["reasons"] = list(candidate.reasons)
    if candidate.score is not None:
        attributes["score"] = candidate.score
    if candidate.terms is not None:
        attributes.update(
            locality_hours=candidate.terms.locality_hours,
            cost_hkd=candidate.terms.cost_hkd,
            load=candidate.terms.load,
        )
    return attributes

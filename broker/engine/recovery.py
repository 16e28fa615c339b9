"""Rebuild the engine's memory from the database alone: at start, and after a failed commit.

The stored rows are the truth. Sites get their last stored snapshot (and the workloads it
showed running, whose GPUs are already counted as allocated); placed and running
workloads take back their reservations where they are, each with the money its ledger row
holds (not priced again: a restart never moves a reservation from one workload to another);
an attempt placed before the ledger existed is reserved now; queued ones go back in the queue
in their order (never refused again: the broker that queued them judged them able to fit
some day). A row that cannot be restored (a spec that no longer validates, nodes that do
not match its replicas, a site no longer configured) is *quarantined*: it is marked
FAILED with the reason, logged, and the broker starts anyway.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from broker import placement
from broker.config import FederationConfig
from broker.engine.clock import AttentiveClock
from broker.engine.links import SiteLink
from broker.engine.liveview import iso
from broker.engine.records import Event, LiveWorkload
from broker.engine.state import BrokerState
from broker.engine.tx import Tx
from broker.federation import placement_federation, placement_request
from broker.ledger import Book
from broker.lifecycle import ACTIVE, FAILED
from broker.spec import parse_spec
from broker.store import reads
from broker.store.reads import Stored

log = logging.getLogger("fedbroker.recovery")


def rebuild(
    stored: Stored,
    book: Book,
    config: FederationConfig,
    links: dict[str, SiteLink],
    *,
    broker_id: str,
    wall: Callable[[], float],
    clock: AttentiveClock,
    healthy: frozenset[str] = frozenset(),
) -> tuple[BrokerState, Tx]:
    """A new state from `stored`; the Tx holds the quarantine updates, to commit before anything else."""
    spent = {tenant: float(b.spent_program) for tenant, b in book.balances.items()}
    core = placement.PlacementCore(
        placement_federation(config, spent), format_time=iso, preemption_wait_s=config.preemption_wait_s
    )
    state = BrokerState(
        config,
        core,
        links,
        broker_id=broker_id,
        wall=wall,
        clock=clock,
        next_seq=stored.next_seq,
        next_event=stored.next_event,
        book=book,
    )
    tx = Tx()
    state.follow_month(None)  # what each tenant paid this month, for spend caps
    core.set_paused(bool(stored.settings.get("paused")))
    state.requests.load(stored.requests)
    for row in stored.sites:
        link = links.get(row.name)
        if link is None:
            continue  # a site removed from the config
        try:
            nodes = tuple(placement.Node(**n) for n in row.nodes)
            core.update_site(row.name, nodes=nodes, datasets=row.datasets, running=row.running)
        except (TypeError, ValueError, placement.PlacementError) as error:
            log.error("ignored the stored inventory of site %s: %s", row.name, error)
            continue
        link.stored = (nodes, tuple(row.datasets), frozenset(row.running))
    restored = quarantined = 0
    for row in stored.unfinished:
        try:
            _restore(state, tx, row)
            restored += 1
        except Exception as error:  # one bad row must not keep the broker from starting
            _quarantine(state, tx, row, error)
            quarantined += 1
    for link in links.values():
        # Whatever the agent said last is re-read in full from its next report.
        link.last_inventory, link.settled = None, False
        # When it was last heard from, as stored: a lost attempt is billed until then, even if
        # the site is never heard from again by this broker.
        heard = stored.heard.get(link.name)
        link.heard_stored = heard
        if heard is not None and (link.reported_wall is None or link.reported_wall < heard):
            link.reported_wall = heard
        # Health only now: while every site counted unhealthy, queued work went back in the
        # queue unplaced; the next cycle's pass places what fits, with its rows and assignment
        # (placed in the core here, it would have had neither).
        core.set_healthy(link.name, link.name in healthy)
    _release_orphans(state, tx)
    if restored:
        log.info("recovered %d unfinished workloads from the store", restored)
    if quarantined:
        log.error("quarantined %d workloads that could not be restored (marked FAILED)", quarantined)
    return state, tx


def _restore(state: BrokerState, tx: Tx, row: Any) -> None:
    spec = parse_spec(row.spec, f"stored workload {row.id}")
    # Its overflow clock runs from its submission, across restarts.
    request = placement_request(row.id, row.tenant, spec, row.seq, submitted_at=row.created_at)
    workload = LiveWorkload.restored(reads.record(row), request, spec.max_attempts)
    if row.state in ACTIVE:
        if row.site not in state.links:
            raise ValueError(f"site {row.site!r} is not configured")
        held = state.money.book.open.get(row.id)
        if held is not None and held.attempt == row.attempt and held.site == row.site:
            when = row.started_at or row.updated_at
            state.core.restore(
                request,
                row.site,
                row.nodes,
                placed_at=when,
                program_hkd=float(held.program_hkd),
                tenant_hkd=float(held.tenant_hkd),
            )
        else:  # placed before the ledger existed: priced now, and its reservation written
            state.core.restore(request, row.site, row.nodes, placed_at=row.started_at or row.updated_at)
            state.money.reserve(
                tx,
                request,
                attempt=row.attempt,
                site=row.site,
                subsidised=bool(state.core.subsidy_held(row.id)),
                at=state.wall(),
            )
    elif row.retry_at is not None:
        state.backing_off[row.id] = workload  # it waits out its backoff, as before the restart
    else:
        state.core.submit(request, refuse=False)
    state.live[row.id] = workload
    if row.request_id is not None:  # an unfinished workload's id is known however old
        state.requests.remember(row.tenant, row.request_id, row.id)


def _release_orphans(state: BrokerState, tx: Tx) -> None:
    """A reservation whose attempt no longer holds a placement (its workload ended, was
    quarantined or moved on without its closing row) is released, so no budget stays held."""
    for workload_id, held in list(state.money.book.open.items()):
        workload = state.live.get(workload_id)
        if workload is not None and workload.attempt == held.attempt and workload.state in ACTIVE:
            continue
        log.error(
            "released the reservation of %s attempt %d: it holds no placement", workload_id, held.attempt
        )
        state.money.close(
            tx, workload_id, held.attempt, None, state.wall(), "released at recovery: no placement"
        )


def _quarantine(state: BrokerState, tx: Tx, row: Any, error: Exception) -> None:
    reason = f"quarantined at recovery: {error}"[:2000]
    log.error("workload %s: %s", row.id, reason)
    now = state.wall()
    tx.raw_updates.append(
        {
            "b_id": row.id,
            "state": FAILED,
            "site": row.site,
            "nodes": list(row.nodes or []),
            "attempt": row.attempt,
            "acked": row.acked,
            "traceparent": row.traceparent,
            "message": reason,
            "updated_at": now,
            "started_at": None,
            "reason": row.reason,
            "infra_requeues": row.infra_requeues,
            "doubt_requeues": row.doubt_requeues,
            "retry_at": None,
            "preemptions": row.preemptions,
        }
    )
    tx.events.append(Event(state.next_event, row.id, FAILED, row.site, row.attempt, reason, now))
    state.next_event += 1

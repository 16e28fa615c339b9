"""What WorkloadService adds to stored records for the CLI and SDK.

A workload's nodes, its place in the queue and what it waits for now, an unreachable
site and when its work will be requeued; filtered lists; events of many workloads;
and how an explanation's terms make its score. Kept apart from `workload_service.py`,
which only authenticates and dispatches.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
from fedbroker.v1 import types_pb2, workload_service_pb2

from broker import lifecycle
from broker.api import convert, paging
from broker.api.limits import check_ref
from broker.config import Weights
from broker.engine.engine import Engine
from broker.engine.records import WorkloadRecord
from broker.errors import InvalidArgument, PermissionDenied
from broker.store.lookups import Filter
from broker.watch import ALL_WORKLOADS, STOPPING

LIST_LIMIT_MAX = 1000
LIST_LIMIT_DEFAULT = 1000
# A page ends once its workloads hold this much (specs are up to 64 KB each): far below
# gRPC's 4 MiB message limit, so no tenant's workloads can make List fail.
PAGE_BYTES = 2 * 1024 * 1024


def workloads(engine: Engine, records: list[WorkloadRecord]) -> list[types_pb2.Workload]:
    """Records on the wire, with what only the engine's memory knows now."""
    live = engine.live_status(records)
    out = []
    for record in records:
        message = convert.workload(record)
        message.nodes.extend(record.nodes)
        status = live.get(record.id)
        if status is not None:
            message.queue_position = status.queue_position
            if status.waiting_for:
                message.message = status.waiting_for  # the reason now, not the one at submit
            if status.site_unreachable_since is not None and status.requeue_at is not None:
                message.site_unreachable_since.CopyFrom(convert.timestamp(status.site_unreachable_since))
                message.requeue_at.CopyFrom(convert.timestamp(status.requeue_at))
        out.append(message)
    return out


def only_own(tenant: str) -> str:
    """A tenant named another tenant's workloads: refused for who it is (PERMISSION_DENIED, as
    GetUsage refuses another's usage), not for how it asked."""
    return f"tenant: a tenant sees only its own workloads ({tenant})"


def list_filter(request: workload_service_pb2.ListWorkloadsRequest, tenant: str | None) -> Filter:
    """The caller's filter; a tenant's own tenant overrides any it asks for (it sees only its own)."""
    if request.limit < 0:
        raise InvalidArgument("limit: must not be negative")
    for field in ("tenant", "site", "name"):
        check_ref(getattr(request, field), field)
    try:
        states = tuple(lifecycle.from_proto(s) for s in request.states)
    except ValueError:
        raise InvalidArgument("states: unknown workload state") from None
    if tenant is not None and request.tenant and request.tenant != tenant:
        raise PermissionDenied(only_own(tenant))
    since = request.since.ToNanoseconds() / 1e9 if request.HasField("since") else None
    before_seq = paging.seq_from_token(request.page_token) if request.page_token else None
    return Filter(
        tenant=tenant if tenant is not None else (request.tenant or None),
        states=states,
        site=request.site or None,
        name=request.name or None,
        since=since,
        limit=min(request.limit, LIST_LIMIT_MAX) or LIST_LIMIT_DEFAULT,
        before_seq=before_seq,
    )


async def list_response(
    engine: Engine, request: workload_service_pb2.ListWorkloadsRequest, tenant: str | None
) -> workload_service_pb2.ListWorkloadsResponse:
    wanted = list_filter(request, tenant)
    records, event_seq = await engine.find_workloads(wanted)
    page = workloads(engine, records)
    kept, size = 0, 0
    for message in page:
        size += message.ByteSize()
        if kept and size > PAGE_BYTES:
            break
        kept += 1
    more = kept < len(page) or len(records) == wanted.limit
    return workload_service_pb2.ListWorkloadsResponse(
        workloads=page[:kept],
        event_seq=event_seq,
        next_page_token=paging.token_after(records[kept - 1].seq) if more and kept else "",
    )


async def events_of_all(
    engine: Engine, tenant: str | None, after_seq: int
) -> AsyncIterator[workload_service_pb2.WorkloadEvent]:
    """Every visible workload's events after `after_seq`, then each new one, until cancelled."""
    wakeups = engine.hub.subscribe(ALL_WORKLOADS)  # before reading, so no event falls between
    try:
        last = after_seq
        while True:
            for row in await engine.events_since(tenant, last):
                last = row.seq
                yield convert.event(row)
            woken = [await wakeups.get()]
            while not wakeups.empty():  # one read covers every event published meanwhile
                woken.append(wakeups.get_nowait())
            if STOPPING in woken:
                raise BrokerStopping
    finally:
        engine.hub.unsubscribe(ALL_WORKLOADS, wakeups)


async def events_of_one(
    engine: Engine, workload_id: str, after_seq: int
) -> AsyncIterator[workload_service_pb2.WorkloadEvent]:
    """One workload's events after `after_seq`, then each new one, until a terminal state."""
    wakeups = engine.hub.subscribe(workload_id)  # before replaying, so no event falls between
    try:
        last = after_seq
        while True:
            for row in await engine.events_after(workload_id, last):
                last = row.seq
                yield convert.event(row)
                if row.state in lifecycle.TERMINAL:
                    return
            if await wakeups.get() == STOPPING:
                raise BrokerStopping
    finally:
        engine.hub.unsubscribe(workload_id, wakeups)


class BrokerStopping(Exception):
    """The hub closed under a stream: the broker is stopping."""


async def until_broker_stops(
    stream: AsyncIterator[workload_service_pb2.WorkloadEvent], context: grpc.aio.ServicerContext
) -> AsyncIterator[workload_service_pb2.WorkloadEvent]:
    """A stream that, when the broker stops under it, ends with UNAVAILABLE (the CLI and SDK
    reconnect and resume) instead of a cancellation gRPC logs as a traceback."""
    try:
        async for event in stream:
            yield event
    except BrokerStopping:
        await context.abort(grpc.StatusCode.UNAVAILABLE, "the broker is stopping; watch again to go on")


def with_score_parts(
    message: types_pb2.Explanation, weights: Weights, estimated_hours: float
) -> types_pb2.Explanation:
    """Each eligible candidate's terms as the weighted fractions that sum to its score
    (the same scaling as broker/placement/scorers.rank)."""
    eligible = [c for c in message.candidates if c.HasField("terms") and c.HasField("score")]
    dearest = max((c.terms.cost_hkd for c in eligible), default=0.0)
    for candidate in eligible:
        terms = candidate.terms
        hours = terms.locality_hours
        moving = hours / (hours + estimated_hours) if hours > 0 else 0.0
        terms.locality_part = weights.locality * moving
        terms.cost_part = weights.cost * (terms.cost_hkd / dearest if dearest > 0 else 0.0)
        terms.load_part = weights.load * terms.load
    return message

"""WorkloadService: what tenants and operators call. Who may do what is decided here.

Tenants submit, and see and cancel only their own workloads (another tenant's id is
answered NOT_FOUND, so ids leak nothing); operators see and cancel everything; agents
call none of it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TypeVar

import grpc
from fedbroker.v1 import types_pb2, workload_service_pb2, workload_service_pb2_grpc
from opentelemetry import trace

from broker import telemetry
from broker.api import convert, logs, queue_view, workload_views
from broker.api.limits import SubmitLimiter, check_ref
from broker.api.status import abort, unary
from broker.api.workload_views import only_own
from broker.auth import Authenticator, Identity
from broker.engine import commands as c
from broker.engine.engine import Engine
from broker.engine.requests import checked_request_id
from broker.errors import BrokerError, FailedPrecondition, InvalidArgument, PermissionDenied
from broker.lifecycle import TERMINAL
from broker.spec import MAX_SPEC_BYTES, spec_from_proto, spec_to_proto

T = TypeVar("T")
LIST_LIMIT_MAX = 10_000
QUEUE_LIMIT_DEFAULT = 100  # rows of `fedbroker queue`: each costs its reason, built on demand


def _reader(who: Identity) -> str | None:
    """The tenant whose workloads `who` may read (None: all of them)."""
    if who.role == "agent":
        raise PermissionDenied(f"{who} cannot read workloads")
    return who.name if who.role == "tenant" else None


class WorkloadService(workload_service_pb2_grpc.WorkloadServiceServicer):
    def __init__(self, engine: Engine, auth: Authenticator) -> None:
        self.engine = engine
        self.auth = auth
        self.limiter = SubmitLimiter(lambda: engine.config.limits)

    @unary
    async def Submit(
        self, request: workload_service_pb2.SubmitRequest, context: grpc.aio.ServicerContext
    ) -> workload_service_pb2.SubmitResponse:
        who = self.auth.identify(context.invocation_metadata())
        if who.role != "tenant":
            raise PermissionDenied(f"{who} cannot submit workloads; use a tenant token")
        await self.limiter.take_or_wait(who.name)  # a dry run too: it costs a placement evaluation
        request_id = checked_request_id(request.request_id)
        spec = spec_from_proto(request.spec)
        if request.dry_run:
            explanation, quotes = self.engine.quote(who.name, spec)
            parts = workload_views.with_score_parts(
                convert.explanation(explanation), self.engine.config.weights, spec.estimated_hours
            )
            return workload_service_pb2.SubmitResponse(
                explanation=parts, quotes=[convert.site_quote(q) for q in quotes]
            )
        # The canonical wire form (defaults filled in) goes to the agents with each assignment.
        wire = spec_to_proto(spec)
        spec_wire = wire.SerializeToString()
        if len(spec_wire) > MAX_SPEC_BYTES:
            raise InvalidArgument(f"spec: {len(spec_wire):,} bytes; at most {MAX_SPEC_BYTES:,} are accepted")
        state = self.engine.state
        if request_id is None or state.requests.get(who.name, request_id) is None:
            # (a repeat makes nothing new: it is answered, whatever the tenant's queue holds)
            self.limiter.check_queued(who.name, state.core.queued_count(who.name))
        record, explanation = await self.engine.submit(who.name, spec, spec_wire, request_id)
        if explanation.get("repeat"):  # the stored workload, as it is now (its spec as stored)
            return workload_service_pb2.SubmitResponse(
                workload=convert.workload(record), explanation=convert.explanation(explanation)
            )
        if telemetry.traces_exported():
            # The RPC's server span (broker/observability/grpc_tracing.py) and the workload's own
            # trace (its `fedbroker.submit` root, broker/engine/state.py) are joined here, the one
            # place both are known: the workload and its trace id on the RPC's span. A search for
            # the workload finds both; the RPC's span names the trace. Not a parent: the workload's
            # trace outlives the call (placement, dispatch, the launch) and is one per workload.
            # Not a span link from `fedbroker.submit`: the RPC's context would have to ride the
            # command into the engine, and most trace UIs show a link only from its own side.
            trace.get_current_span().set_attributes(
                {
                    "fedbroker.workload": record.id,
                    "fedbroker.tenant": who.name,
                    "fedbroker.workload.trace_id": record.trace_id,
                }
            )
        return workload_service_pb2.SubmitResponse(
            workload=convert.workload(record, wire), explanation=convert.explanation(explanation)
        )

    @unary
    async def Get(
        self, request: workload_service_pb2.GetWorkloadRequest, context: grpc.aio.ServicerContext
    ) -> types_pb2.Workload:
        who = self.auth.identify(context.invocation_metadata())
        return workload_views.workloads(
            self.engine, [await self.engine.get(check_ref(request.id, "id"), _reader(who))]
        )[0]

    @unary
    async def List(
        self, request: workload_service_pb2.ListWorkloadsRequest, context: grpc.aio.ServicerContext
    ) -> workload_service_pb2.ListWorkloadsResponse:
        who = self.auth.identify(context.invocation_metadata())
        return await workload_views.list_response(self.engine, request, _reader(who))

    @unary
    async def Cancel(
        self, request: workload_service_pb2.CancelWorkloadRequest, context: grpc.aio.ServicerContext
    ) -> types_pb2.Workload:
        who = self.auth.identify(context.invocation_metadata())
        tenant = _reader(who)
        record = await self.engine.get(check_ref(request.id, "id"), tenant)
        if record.state in TERMINAL:
            raise FailedPrecondition(f"workload {record.id} is already {record.state}")
        cancelled = await self.engine.call(c.Cancel(record.id, str(who), tenant))
        return convert.workload(cancelled)

    @unary
    async def Explain(
        self, request: workload_service_pb2.ExplainRequest, context: grpc.aio.ServicerContext
    ) -> types_pb2.Explanation:
        who = self.auth.identify(context.invocation_metadata())
        record = await self.engine.get(check_ref(request.id, "id"), _reader(who))
        explanation = convert.explanation(await self.engine.explain(record.id, record.tenant))
        hours = float(record.spec.get("estimated_hours") or 1.0)
        return workload_views.with_score_parts(explanation, self.engine.config.weights, hours)

    @unary
    async def ListEvents(
        self, request: workload_service_pb2.ListEventsRequest, context: grpc.aio.ServicerContext
    ) -> workload_service_pb2.ListEventsResponse:
        who = self.auth.identify(context.invocation_metadata())
        record = await self.engine.get(check_ref(request.id, "id"), _reader(who))
        rows = await self.engine.events_after(record.id, 0)
        return workload_service_pb2.ListEventsResponse(events=[convert.event(r) for r in rows])

    @unary
    async def Queue(
        self, request: workload_service_pb2.QueueRequest, context: grpc.aio.ServicerContext
    ) -> workload_service_pb2.QueueResponse:
        who = self.auth.identify(context.invocation_metadata())
        tenant = _reader(who)
        if tenant is not None and request.tenant and request.tenant != tenant:
            raise PermissionDenied(only_own(tenant))
        limit = request.limit or QUEUE_LIMIT_DEFAULT
        if not 0 < limit <= LIST_LIMIT_MAX:
            raise InvalidArgument(f"limit: between 1 and {LIST_LIMIT_MAX:,}")
        return queue_view.queue_response(self.engine, tenant or request.tenant or None, limit)

    async def _authorised(
        self, who: Identity, stream: AsyncIterator[T], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[T]:
        """A stream's items while the token that opened it is still in the config: a reload that
        removes the token ends the stream at its next item (a call is authorised when it starts;
        a stream outlives that moment)."""
        async for item in stream:
            if not self.auth.knows(who):
                await context.abort(
                    grpc.StatusCode.UNAUTHENTICATED, "the token of this call was removed from the config"
                )
            yield item

    async def Watch(
        self, request: workload_service_pb2.WatchWorkloadRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[workload_service_pb2.WorkloadEvent]:
        try:
            who = self.auth.identify(context.invocation_metadata())
            record = await self.engine.get(
                check_ref(request.id, "id"), _reader(who)
            )  # existence and visibility
        except BrokerError as error:
            await abort(context, error)
        events = workload_views.events_of_one(self.engine, record.id, max(0, request.after_seq))
        async for event in self._authorised(who, workload_views.until_broker_stops(events, context), context):
            yield event

    async def WatchWorkloads(
        self, request: workload_service_pb2.WatchWorkloadsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[workload_service_pb2.WorkloadEvent]:
        try:
            who = self.auth.identify(context.invocation_metadata())
            tenant = _reader(who)
            if tenant is not None and request.tenant and request.tenant != tenant:
                raise PermissionDenied(only_own(tenant))
        except BrokerError as error:
            await abort(context, error)
        wanted = tenant or request.tenant or None
        events = workload_views.events_of_all(self.engine, wanted, request.after_seq)
        async for event in self._authorised(who, workload_views.until_broker_stops(events, context), context):
            yield event

    async def Logs(
        self, request: workload_service_pb2.LogsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[workload_service_pb2.LogLines]:
        """Relayed from the site's agent, outside the engine (broker/api/logs.py)."""
        try:
            who = self.auth.identify(context.invocation_metadata())
            check_ref(request.id, "id")
            async for lines in self._authorised(who, logs.relay(self.engine, _reader(who), request), context):
                yield lines
        except BrokerError as error:
            await abort(context, error)

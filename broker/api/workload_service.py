"""WorkloadService: what tenants and operators call."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
from fedbroker.v1 import types_pb2, workload_service_pb2, workload_service_pb2_grpc

from broker import lifecycle
from broker.api import convert
from broker.api.status import status_for, unary
from broker.auth import Authenticator
from broker.engine import Broker
from broker.errors import BrokerError
from broker.lifecycle import TERMINAL
from broker.spec import spec_from_proto


class WorkloadService(workload_service_pb2_grpc.WorkloadServiceServicer):
    def __init__(self, broker: Broker, auth: Authenticator) -> None:
        self.broker = broker
        self.auth = auth

    @unary
    async def Submit(
        self, request: workload_service_pb2.SubmitRequest, context: grpc.aio.ServicerContext
    ) -> workload_service_pb2.SubmitResponse:
        who = self.auth.identify(context.invocation_metadata())
        spec = spec_from_proto(request.spec)
        row, explanation = self.broker.submit(who, spec, dry_run=request.dry_run)
        response = workload_service_pb2.SubmitResponse(explanation=convert.explanation(explanation))
        if row is not None:
            response.workload.CopyFrom(convert.workload(row))
        return response

    @unary
    async def Get(
        self, request: workload_service_pb2.GetWorkloadRequest, context: grpc.aio.ServicerContext
    ) -> types_pb2.Workload:
        who = self.auth.identify(context.invocation_metadata())
        return convert.workload(self.broker.get(who, request.id))

    @unary
    async def List(
        self, request: workload_service_pb2.ListWorkloadsRequest, context: grpc.aio.ServicerContext
    ) -> workload_service_pb2.ListWorkloadsResponse:
        who = self.auth.identify(context.invocation_metadata())
        states = [lifecycle.from_proto(s) for s in request.states]
        rows = self.broker.list_workloads(who, states, request.limit)
        return workload_service_pb2.ListWorkloadsResponse(workloads=[convert.workload(r) for r in rows])

    @unary
    async def Cancel(
        self, request: workload_service_pb2.CancelWorkloadRequest, context: grpc.aio.ServicerContext
    ) -> types_pb2.Workload:
        who = self.auth.identify(context.invocation_metadata())
        return convert.workload(self.broker.cancel(who, request.id))

    @unary
    async def Explain(
        self, request: workload_service_pb2.ExplainRequest, context: grpc.aio.ServicerContext
    ) -> types_pb2.Explanation:
        who = self.auth.identify(context.invocation_metadata())
        return convert.explanation(self.broker.explain(who, request.id))

    async def Watch(
        self, request: workload_service_pb2.WatchWorkloadRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[workload_service_pb2.WorkloadEvent]:
        try:
            who = self.auth.identify(context.invocation_metadata())
            self.broker.get(who, request.id)  # existence and visibility
        except BrokerError as error:
            await context.abort(status_for(error), str(error))
        # Subscribe before replaying, so no event falls between the two.
        wakeups = self.broker.hub.subscribe(request.id)
        try:
            last_seq = 0
            while True:
                for row in self.broker.events_after(request.id, last_seq):
                    assert row.seq is not None
                    last_seq = row.seq
                    yield convert.event(row)
                    if row.state in TERMINAL:
                        return
                await wakeups.get()
        finally:
            self.broker.hub.unsubscribe(request.id, wakeups)

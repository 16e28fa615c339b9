"""UsageService: what work cost and who paid; tenants see their own, operators all."""

from __future__ import annotations

import grpc
from fedbroker.v1 import usage_service_pb2, usage_service_pb2_grpc

from broker.api.status import unary
from broker.auth import Authenticator
from broker.engine import Broker


class UsageService(usage_service_pb2_grpc.UsageServiceServicer):
    def __init__(self, broker: Broker, auth: Authenticator) -> None:
        self.broker = broker
        self.auth = auth

    @unary
    async def GetUsage(
        self, request: usage_service_pb2.GetUsageRequest, context: grpc.aio.ServicerContext
    ) -> usage_service_pb2.GetUsageResponse:
        who = self.auth.identify(context.invocation_metadata())
        rows, budgets = self.broker.usage(who)
        return usage_service_pb2.GetUsageResponse(
            rows=[usage_service_pb2.UsageRow(**{**r, "program": r["program"] or ""}) for r in rows],
            budgets=[usage_service_pb2.TenantBudget(**b) for b in budgets],
        )

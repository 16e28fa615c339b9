"""UsageService: what work cost and who paid; tenants see their own, operators all."""

from __future__ import annotations

import grpc
from fedbroker.v1 import usage_service_pb2, usage_service_pb2_grpc

from broker.api.status import unary
from broker.auth import Authenticator
from broker.engine.engine import Engine
from broker.errors import PermissionDenied


class UsageService(usage_service_pb2_grpc.UsageServiceServicer):
    def __init__(self, engine: Engine, auth: Authenticator) -> None:
        self.engine = engine
        self.auth = auth

    @unary
    async def GetUsage(
        self, request: usage_service_pb2.GetUsageRequest, context: grpc.aio.ServicerContext
    ) -> usage_service_pb2.GetUsageResponse:
        who = self.auth.identify(context.invocation_metadata())
        if who.role == "agent":
            raise PermissionDenied(f"{who} cannot read usage")
        rows, budgets = await self.engine.usage(who.name if who.role == "tenant" else None)
        return usage_service_pb2.GetUsageResponse(
            rows=[usage_service_pb2.UsageRow(**{**r, "program": r["program"] or ""}) for r in rows],
            budgets=[usage_service_pb2.TenantBudget(**b) for b in budgets],
        )

"""UsageService: what work cost and who paid; tenants see their own, operators all."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import grpc
from fedbroker.v1 import usage_service_pb2, usage_service_pb2_grpc

from broker import ledger
from broker.api.status import unary
from broker.auth import Authenticator
from broker.engine.engine import Engine
from broker.errors import InvalidArgument, PermissionDenied


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
        visible = who.name if who.role == "tenant" else None
        if visible is not None and request.tenant and request.tenant != visible:
            raise PermissionDenied(f"a tenant sees only its own usage ({visible})")
        query = usage_query(request)
        rows, budgets = await self.engine.usage(visible or query.tenant, query)
        return usage_service_pb2.GetUsageResponse(
            rows=[usage_row(r) for r in rows], budgets=[budget(b) for b in budgets]
        )


def usage_query(request: usage_service_pb2.GetUsageRequest) -> ledger.UsageQuery:
    by = tuple(request.by) or ledger.UsageQuery().by
    unknown = [d for d in by if d not in ledger.USAGE_DIMENSIONS]
    if unknown or len(set(by)) != len(by):
        raise InvalidArgument(
            f"by: {', '.join(unknown) or 'a dimension twice'}; use {', '.join(ledger.USAGE_DIMENSIONS)}"
        )
    since = request.since.ToSeconds() + request.since.nanos / 1e9 if request.HasField("since") else None
    until = request.until.ToSeconds() + request.until.nanos / 1e9 if request.HasField("until") else None
    return ledger.UsageQuery(
        tenant=request.tenant or None, site=request.site or None, since=since, until=until, by=by
    )


def usage_row(r: dict[str, Any]) -> usage_service_pb2.UsageRow:
    money = {k: r[k] for k in ledger.MONEY_KEYS}
    return usage_service_pb2.UsageRow(
        tenant=r.get("tenant") or "",
        program=r.get("program") or "",
        site=r.get("site") or "",
        gpu_model=r.get("gpu_model") or "",
        month=r.get("month") or "",
        gpu_hours=float(money["gpu_hours"]),
        cost_hkd=float(money["total_hkd"]),
        total_hkd=float(money["total_hkd"]),
        program_hkd=float(money["program_hkd"]),
        tenant_hkd=float(money["tenant_hkd"]),
        gpu_hours_exact=_text(money["gpu_hours"]),
        total_hkd_exact=_text(money["total_hkd"]),
        program_hkd_exact=_text(money["program_hkd"]),
        tenant_hkd_exact=_text(money["tenant_hkd"]),
    )


def budget(b: dict[str, Any]) -> usage_service_pb2.TenantBudget:
    message = usage_service_pb2.TenantBudget(
        tenant=b["tenant"],
        program=b["program"],
        budget_hkd=float(b["budget_hkd"]),
        spent_hkd=float(b["spent_hkd"]),
        reserved_hkd=float(b["reserved_hkd"]),
        left_hkd=float(b["left_hkd"]),
        month=b["month"],
        cap_used_hkd=float(b["cap_used_hkd"]),
    )
    if b["cap_hkd"] is not None:
        message.cap_hkd = float(b["cap_hkd"])
    return message


def _text(value: Decimal) -> str:
    """A sum as plain decimal text (no exponent, no trailing zeros past the cent)."""
    text = format(value.normalize(), "f")
    whole, _, fraction = text.partition(".")
    return f"{whole}.{fraction.ljust(2, '0')}"

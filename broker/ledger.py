"""The subsidy ledger: settled charges as rows, and the sums `fedbroker usage` reports.

Money moves in two steps. At placement the placement core reserves the program's
expected share against the tenant's budget (so concurrent placements never
over-commit it). When an attempt ends, the engine settles it from its real run
time: one `ChargeRow` per (workload, attempt), enforced unique by the database,
and the program's share leaves the budget for good. At start-up the budgets the
core sees are the configured ones less what the charges say was spent.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from broker.config import FederationConfig
from broker.placement import Charge
from broker.store import ChargeRow

C = ChargeRow.__table__  # type: ignore[attr-defined]
USAGE_KEYS = ("tenant", "program", "site", "gpu_hours", "cost_hkd", "tenant_hkd", "program_hkd")


def charge_values(charge: Charge, attempt: int, at: float) -> dict[str, Any]:
    """The charges row of one settled attempt."""
    return dict(
        workload_id=charge.workload_id,
        attempt=attempt,
        tenant=charge.tenant,
        program=charge.program,
        site=charge.site,
        gpu_model=charge.gpu_model,
        gpus=charge.gpus,
        hours=charge.hours,
        price_hkd_per_gpu_hour=charge.price_hkd_per_gpu_hour,
        cost_hkd=charge.cost_hkd,
        program_hkd=charge.program_hkd,
        tenant_hkd=charge.tenant_hkd,
        at=at,
    )


def spent_by_tenant(conn: Connection) -> dict[str, float]:
    """HK$ each tenant's program has paid, over all settled charges."""
    query = select(C.c.tenant, func.sum(C.c.program_hkd)).group_by(C.c.tenant)
    return {name: float(total or 0.0) for name, total in conn.execute(query).all()}


def usage_rows(conn: Connection, tenant: str | None = None) -> list[dict[str, Any]]:
    """Charges summed by (tenant, program, site); one tenant's only when ``tenant`` is given."""
    by = (C.c.tenant, C.c.program, C.c.site)
    query = select(
        *by,
        func.sum(C.c.gpus * C.c.hours),
        func.sum(C.c.cost_hkd),
        func.sum(C.c.tenant_hkd),
        func.sum(C.c.program_hkd),
    ).group_by(*by)
    if tenant is not None:
        query = query.where(C.c.tenant == tenant)
    query = query.order_by(*by)
    return [dict(zip(USAGE_KEYS, row, strict=True)) for row in conn.execute(query).all()]


def budgets(
    config: FederationConfig,
    spent: dict[str, float],
    budget_left: Callable[[str], float],
    tenant: str | None = None,
) -> list[dict[str, Any]]:
    """Each subsidised tenant's budget: configured, spent (settled), reserved (held now), left."""
    out = []
    for t in config.tenants:
        if t.subsidy is None or (tenant is not None and t.name != tenant):
            continue
        spent_hkd = spent.get(t.name, 0.0)
        left = budget_left(t.name)
        out.append(
            {
                "tenant": t.name,
                "program": t.subsidy.program,
                "budget_hkd": t.subsidy.budget_hkd,
                "spent_hkd": spent_hkd,
                "reserved_hkd": max(0.0, t.subsidy.budget_hkd - spent_hkd - left),
                "left_hkd": left,
            }
        )
    return out

"""The subsidy ledger: money as rows, in exact decimals, and what is derived from them.

Every attempt's money moves in two rows (table `ledger`, broker/store/tables.py):
  reserve  at placement: the estimate at the price and rate it was placed at; the program's
           share is *held* against the tenant's budget, the tenant's share against its
           monthly spend cap;
  settle   when an attempt that ran ends: its real run time at the placed price, rounded
           once, to the cent; the program pays its rate of it, up to what its reservation and
           the budget's free part cover, and the tenant pays the rest (the row says so);
  release  when an attempt that never ran ends (or was fenced): nothing is paid.
Both closing rows undo the hold (`held_*` < 0). The database refuses a second reservation
or a second closing row for one attempt, so nothing is ever charged twice.

Budgets are sums of rows: held = sum(held_program_hkd), spent = sum(program_hkd of
settlements); left = budget - spent - held. `Book` is those sums kept in memory (and the
open reservations), built from the rows at start and changed only by rows that were
committed. Sums are made in Python from Decimals, the same way on SQLite (whose NUMERIC is
a float) and PostgreSQL.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection

from broker.store import LedgerRow

L = LedgerRow.__table__  # type: ignore[attr-defined]
RESERVE, SETTLE, RELEASE = "reserve", "settle", "release"
ZERO = Decimal(0)
CENT = Decimal("0.01")
FINE = Decimal("1e-8")  # a reservation's estimate is kept exact to this (the column's scale)
HOURS = Decimal("1e-6")  # GPU-hours as stored on a settlement (the money uses the exact time)
SECONDS_PER_HOUR = Decimal(3600)
USAGE_DIMENSIONS = ("tenant", "program", "site", "gpu_model", "month")


def exact(value: float | int | str | Decimal) -> Decimal:
    """A config or spec number as the decimal it was written as (0.7 is 0.7, not 0.69999...)."""
    if isinstance(value, Decimal):
        return value
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)


def cents(value: Decimal) -> Decimal:
    return value.quantize(CENT, ROUND_HALF_EVEN)


def month_of(at: float) -> str:
    """The calendar month (UTC) of a UNIX time: what spend caps and `--by month` count by."""
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m")


@dataclass(frozen=True, slots=True)
class Reservation:
    """An open reservation: an attempt placed, not yet settled or released."""

    workload_id: str
    attempt: int
    tenant: str
    program: str | None
    site: str
    gpu_model: str
    gpus: int
    price: Decimal  # HK$ per GPU-hour, as placed: the settlement uses it whatever the config says now
    rate: Decimal  # the program's share as placed (0 when not subsidised)
    program_hkd: Decimal  # held against the budget
    tenant_hkd: Decimal  # held against the tenant's spend cap


@dataclass
class Balance:
    """One tenant's sums over the rows."""

    held_program: Decimal = ZERO
    held_tenant: Decimal = ZERO
    spent_program: Decimal = ZERO
    paid_tenant: dict[str, Decimal] = field(default_factory=dict)  # month -> HK$ the tenant paid

    def budget_used(self) -> Decimal:
        return self.held_program + self.spent_program

    def cap_used(self, month: str) -> Decimal:
        """What counts against a monthly cap: paid this month, and the open reservations' share."""
        return self.paid_tenant.get(month, ZERO) + self.held_tenant


class Book:
    """Balances and open reservations: the ledger rows summed, applied only once committed."""

    def __init__(self) -> None:
        self.balances: dict[str, Balance] = {}
        self.open: dict[str, Reservation] = {}  # workload id -> its current attempt's reservation

    def balance(self, tenant: str) -> Balance:
        found = self.balances.get(tenant)
        if found is None:
            found = self.balances[tenant] = Balance()
        return found

    def apply(self, rows: Iterable[dict[str, Any]]) -> None:
        for row in rows:
            b = self.balance(row["tenant"])
            b.held_program += row["held_program_hkd"]
            b.held_tenant += row["held_tenant_hkd"]
            if row["kind"] == RESERVE:
                self.open[row["workload_id"]] = reservation_of(row)
                continue
            opened = self.open.get(row["workload_id"])
            if opened is not None and opened.attempt == row["attempt"]:
                del self.open[row["workload_id"]]
            if row["kind"] == SETTLE:
                b.spent_program += row["program_hkd"]
                month = month_of(row["at"])
                b.paid_tenant[month] = b.paid_tenant.get(month, ZERO) + row["tenant_hkd"]

    @classmethod
    def load(cls, conn: Connection) -> Book:
        """The book from every row (at start, at a takeover, after a failed commit)."""
        book = cls()
        book.apply(r._asdict() for r in conn.execute(select(*_BOOK_COLUMNS).order_by(L.c.seq)))
        return book


_BOOK_COLUMNS = (
    L.c.kind,
    L.c.workload_id,
    L.c.attempt,
    L.c.tenant,
    L.c.program,
    L.c.site,
    L.c.gpu_model,
    L.c.gpus,
    L.c.price_hkd_per_gpu_hour,
    L.c.rate,
    L.c.program_hkd,
    L.c.tenant_hkd,
    L.c.held_program_hkd,
    L.c.held_tenant_hkd,
    L.c.at,
)


def reservation_of(row: dict[str, Any]) -> Reservation:
    return Reservation(
        workload_id=row["workload_id"],
        attempt=row["attempt"],
        tenant=row["tenant"],
        program=row["program"],
        site=row["site"],
        gpu_model=row["gpu_model"],
        gpus=row["gpus"],
        price=row["price_hkd_per_gpu_hour"],
        rate=row["rate"],
        program_hkd=row["held_program_hkd"],
        tenant_hkd=row["held_tenant_hkd"],
    )


# ---------------------------------------------------------------------------- the arithmetic


@dataclass(frozen=True, slots=True)
class Estimate:
    """What a placement is expected to cost at a site, and who would pay."""

    gpu_hours: Decimal
    price: Decimal
    rate: Decimal  # 0 when not subsidised there
    total_hkd: Decimal
    program_hkd: Decimal
    tenant_hkd: Decimal


def estimate(gpus: int, hours: float, price: float | Decimal, rate: float | Decimal) -> Estimate:
    gpu_hours = gpus * exact(hours)
    p, r = exact(price), exact(rate)
    total = (gpu_hours * p).quantize(FINE, ROUND_HALF_EVEN)
    program = (total * r).quantize(FINE, ROUND_HALF_EVEN)
    return Estimate(gpu_hours, p, r, total, program, total - program)


def reserve_row(
    *,
    workload_id: str,
    attempt: int,
    tenant: str,
    program: str | None,
    site: str,
    gpu_model: str,
    gpus: int,
    est: Estimate,
    budget_free: Decimal,
    at: float,
) -> dict[str, Any]:
    """The reservation of a placement. The program's hold never exceeds the budget's free part
    (the placement core decides in floats; the ledger's decimals have the last word)."""
    held = min(est.program_hkd, max(ZERO, budget_free)) if program is not None else ZERO
    reason = ""
    if program is not None and held < est.program_hkd:
        reason = f"budget covers HK${held} of the program's estimated HK${est.program_hkd}"
    return _row(
        RESERVE,
        workload_id,
        attempt,
        tenant,
        program,
        site,
        gpu_model,
        gpus,
        gpu_hours=est.gpu_hours,
        price=est.price,
        rate=est.rate if program is not None else ZERO,
        total=est.total_hkd,
        program_hkd=held,
        tenant_hkd=est.total_hkd - held,
        held_program=held,
        held_tenant=est.total_hkd - held,
        at=at,
        reason=reason,
    )


def settle_row(
    reservation: Reservation, seconds: float, budget_free: Decimal, at: float, why: str
) -> dict[str, Any]:
    """The settlement of an attempt that ran `seconds` (from its RUNNING report to its last
    report). The program pays its rate of the cost, up to its own reservation plus the budget's
    free part; past that the tenant pays, and the reason says so. Rounded once, to the cent."""
    r = reservation
    gpu_hours = r.gpus * exact(max(0.0, seconds)) / SECONDS_PER_HOUR
    total_exact = gpu_hours * r.price
    total = cents(total_exact)
    program = ZERO
    reason = why
    if r.program is not None:
        share = total_exact * r.rate
        available = r.program_hkd + max(ZERO, budget_free)
        program = cents(share)
        if program > available:  # the budget ran out mid-run: never more than it holds
            program = available.quantize(CENT, ROUND_DOWN)
            reason = (
                f"{why}; subsidy budget ran out: the program paid HK${program} of its "
                f"HK${cents(share)} share, the tenant pays the remaining HK${cents(share) - program}"
            )
    return _row(
        SETTLE,
        r.workload_id,
        r.attempt,
        r.tenant,
        r.program,
        r.site,
        r.gpu_model,
        r.gpus,
        gpu_hours=gpu_hours.quantize(HOURS, ROUND_HALF_EVEN),
        price=r.price,
        rate=r.rate,
        total=total,
        program_hkd=program,
        tenant_hkd=total - program,
        held_program=-r.program_hkd,
        held_tenant=-r.tenant_hkd,
        at=at,
        reason=reason,
    )


def release_row(reservation: Reservation, at: float, why: str) -> dict[str, Any]:
    """An attempt that never ran (or was fenced): its reservation is released, nothing paid."""
    r = reservation
    return _row(
        RELEASE,
        r.workload_id,
        r.attempt,
        r.tenant,
        r.program,
        r.site,
        r.gpu_model,
        r.gpus,
        gpu_hours=ZERO,
        price=r.price,
        rate=r.rate,
        total=ZERO,
        program_hkd=ZERO,
        tenant_hkd=ZERO,
        held_program=-r.program_hkd,
        held_tenant=-r.tenant_hkd,
        at=at,
        reason=why,
    )


def _row(
    kind: str,
    workload_id: str,
    attempt: int,
    tenant: str,
    program: str | None,
    site: str,
    gpu_model: str,
    gpus: int,
    *,
    gpu_hours: Decimal,
    price: Decimal,
    rate: Decimal,
    total: Decimal,
    program_hkd: Decimal,
    tenant_hkd: Decimal,
    held_program: Decimal,
    held_tenant: Decimal,
    at: float,
    reason: str,
) -> dict[str, Any]:
    return {
        "kind": kind,
        "closes": None if kind == RESERVE else 1,
        "workload_id": workload_id,
        "attempt": attempt,
        "tenant": tenant,
        "program": program,
        "site": site,
        "gpu_model": gpu_model,
        "gpus": gpus,
        "gpu_hours": gpu_hours,
        "price_hkd_per_gpu_hour": price,
        "rate": rate,
        "total_hkd": total,
        "program_hkd": program_hkd,
        "tenant_hkd": tenant_hkd,
        "held_program_hkd": held_program,
        "held_tenant_hkd": held_tenant,
        "at": at,
        "reason": reason[:2000],
    }


# ---------------------------------------------------------------------------- reports


@dataclass(frozen=True, slots=True)
class UsageQuery:
    tenant: str | None = None
    site: str | None = None
    since: float | None = None  # UNIX seconds, inclusive
    until: float | None = None  # exclusive
    by: tuple[str, ...] = ("tenant", "program", "site")


MONEY_KEYS = ("gpu_hours", "total_hkd", "program_hkd", "tenant_hkd")


def usage(conn: Connection, query: UsageQuery) -> list[dict[str, Any]]:
    """Settlements summed by `query.by` (exact: each figure is the sum of its rows' figures)."""
    wanted = select(
        L.c.tenant,
        L.c.program,
        L.c.site,
        L.c.gpu_model,
        L.c.at,
        L.c.gpu_hours,
        L.c.total_hkd,
        L.c.program_hkd,
        L.c.tenant_hkd,
    ).where(L.c.kind == SETTLE)
    if query.tenant is not None:
        wanted = wanted.where(L.c.tenant == query.tenant)
    if query.site is not None:
        wanted = wanted.where(L.c.site == query.site)
    if query.since is not None:
        wanted = wanted.where(L.c.at >= query.since)
    if query.until is not None:
        wanted = wanted.where(L.c.at < query.until)
    sums: dict[tuple[Any, ...], list[Decimal]] = {}
    for row in conn.execute(wanted):
        values = row._asdict()
        values["month"] = month_of(values["at"])
        key = tuple(values[d] for d in query.by)
        acc = sums.setdefault(key, [ZERO, ZERO, ZERO, ZERO])
        for i, name in enumerate(MONEY_KEYS):
            acc[i] += values[name]
    out = []
    for key in sorted(sums, key=lambda k: tuple("" if v is None else str(v) for v in k)):
        out.append({**dict(zip(query.by, key, strict=True)), **dict(zip(MONEY_KEYS, sums[key], strict=True))})
    return out


def budgets(config: Any, book: Book, tenant: str | None, now: float) -> list[dict[str, Any]]:
    """Each visible tenant's budget (subsidised ones) and monthly cap (capped ones), from the book."""
    month = month_of(now)
    out = []
    for t in config.tenants:
        if tenant is not None and t.name != tenant:
            continue
        cap = getattr(t, "max_hkd_per_month", None)
        if t.subsidy is None and cap is None:
            continue
        b = book.balances.get(t.name, Balance())
        budget = exact(t.subsidy.budget_hkd) if t.subsidy else ZERO
        entry: dict[str, Any] = {
            "tenant": t.name,
            "program": t.subsidy.program if t.subsidy else "",
            "budget_hkd": budget,
            "spent_hkd": b.spent_program,
            "reserved_hkd": b.held_program,
            "left_hkd": max(ZERO, budget - b.budget_used()),
            "month": month,
            "cap_hkd": None if cap is None else exact(cap),
            "cap_used_hkd": b.cap_used(month),
        }
        out.append(entry)
    return out


def to_csv(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if row.get(c) is None else row.get(c) for c in columns])
    return out.getvalue()

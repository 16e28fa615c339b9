"""The engine's cashier: the ledger rows of each cycle (broker/ledger.py), checked against the book.

The book (`ledger.Book`) holds what committed rows say; this module adds, for the cycle being
decided, what that cycle's rows would change (`Pending`), so two placements in one cycle never
hold the same HK$ twice. The engine applies a cycle's rows to the book only after its commit
(`committed`); a failed commit rebuilds everything, book included, from the database.

When money moves:
- placement: a reservation at the site's price and the program's rate as they are now (the
  settlement uses these, whatever a later config reload says);
- an attempt that ran ends: its settlement, from its RUNNING report to `end` (its last report;
  for a lost attempt, when its site was last heard from);
- an attempt that never ran ends, or was fenced: its release.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from broker import ledger, placement
from broker.config import FederationConfig
from broker.ledger import ZERO, Balance, Book, Reservation

log = logging.getLogger("fedbroker.money")


@dataclass
class Pending:
    """One cycle's rows and what they change, until its commit."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    opened: dict[str, Reservation] = field(default_factory=dict)
    closed: set[tuple[str, int]] = field(default_factory=set)
    budget_used: dict[str, Decimal] = field(default_factory=dict)  # tenant -> held + spent change

    def add(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        tenant = row["tenant"]
        used = row["held_program_hkd"] + (row["program_hkd"] if row["kind"] == ledger.SETTLE else ZERO)
        self.budget_used[tenant] = self.budget_used.get(tenant, ZERO) + used
        if row["kind"] == ledger.RESERVE:
            self.opened[row["workload_id"]] = ledger.reservation_of(row)
        else:
            self.closed.add((row["workload_id"], row["attempt"]))


class Cashier:
    def __init__(self, config: FederationConfig, book: Book) -> None:
        self.book = book
        self._budgets = {t.name: ledger.exact(t.subsidy.budget_hkd) for t in config.tenants if t.subsidy}
        self._programs = {t.name: t.subsidy.program for t in config.tenants if t.subsidy}
        self._rates = {p.name: p.rate for p in config.subsidy_programs}
        self._prices = {s.name: dict(s.gpu_prices_hkd_per_hour) for s in config.sites}
        self._caps = {
            t.name: ledger.exact(t.max_hkd_per_month)
            for t in config.tenants
            if t.max_hkd_per_month is not None
        }
        self._pending = Pending()
        self._for: object = None  # the Tx the pending rows belong to

    # ------------------------------------------------------------------ views

    def pending(self, tx: object) -> Pending:
        """The rows of the cycle being decided (`tx`), or with None (a dry run's quote, between
        cycles or while one commits) those of the cycle not yet committed, if any: a view never
        drops that cycle's rows, which the book takes once its commit lands."""
        if tx is not None and self._for is not tx:
            self._pending, self._for = Pending(), tx
        return self._pending

    def reservation(self, tx: object, workload_id: str) -> Reservation | None:
        """The workload's open reservation, with this cycle's rows."""
        pending = self.pending(tx)
        found = pending.opened.get(workload_id) or self.book.open.get(workload_id)
        if found is None or (found.workload_id, found.attempt) in pending.closed:
            return None
        return found

    def budget_free(self, tx: object, tenant: str) -> Decimal:
        """The budget not yet spent nor held (0 without a program); negative after a reload
        lowered the budget below what is already committed."""
        budget = self._budgets.get(tenant)
        if budget is None:
            return ZERO
        used = self.book.balance(tenant).budget_used() + self.pending(tx).budget_used.get(tenant, ZERO)
        return budget - used

    def balance(self, tenant: str) -> Balance:
        return self.book.balances.get(tenant, Balance())

    # ------------------------------------------------------------------ rows

    def reserve(
        self,
        tx: Any,
        request: placement.Request,
        *,
        attempt: int,
        site: str,
        subsidised: bool,
        at: float,
    ) -> Reservation:
        """The reservation of `request` placed at `site`: its estimate priced now, one row."""
        workload_id, tenant, gpu_model = request.workload_id, request.tenant, request.gpu_model
        gpus, hours = request.gpus_total, request.estimated_hours
        program = self._programs.get(tenant) if subsidised else None
        rate = self._rates.get(program, 0.0) if program is not None else 0.0
        price = self._prices.get(site, {}).get(gpu_model, 0.0)
        est = ledger.estimate(gpus, hours, price, rate)
        row = ledger.reserve_row(
            workload_id=workload_id,
            attempt=attempt,
            tenant=tenant,
            program=program,
            site=site,
            gpu_model=gpu_model,
            gpus=gpus,
            est=est,
            budget_free=self.budget_free(tx, tenant),
            at=at,
        )
        if row["reason"]:
            log.warning("%s attempt %d: %s", workload_id, attempt, row["reason"])
        self._write(tx, row)
        return ledger.reservation_of(row)

    def close(
        self, tx: Any, workload_id: str, attempt: int, ran_s: float | None, at: float, why: str
    ) -> dict[str, Any] | None:
        """Settle the attempt if it ran (`ran_s` seconds), else release it; None if it holds no
        reservation (closed already: never twice)."""
        reservation = self.reservation(tx, workload_id)
        if reservation is None or reservation.attempt != attempt:
            return None
        if ran_s is None:
            row = ledger.release_row(reservation, at, why)
        else:
            free = self.budget_free(tx, reservation.tenant)
            row = ledger.settle_row(reservation, ran_s, free, at, why)
        self._write(tx, row)
        return row

    def _write(self, tx: Any, row: dict[str, Any]) -> None:
        self.pending(tx).add(row)
        tx.ledger.append(row)

    def quotes(
        self,
        tenant: str,
        sites: list[Any],
        *,
        gpu_model: str,
        gpus: int,
        hours: float,
        subsidy: str,
        eligible: dict[str, tuple[bool, list[str]]],
        now: float,
    ) -> list[dict[str, Any]]:
        """Before submit: each site's estimate (its price, the program's rate if it honours the
        tenant's program and the budget covers the share), and the budget and cap left after."""
        program = self._programs.get(tenant) if subsidy != "none" else None
        free = self.budget_free(None, tenant) if tenant in self._budgets else None
        cap = self._caps.get(tenant)
        cap_left = None if cap is None else cap - self.balance(tenant).cap_used(ledger.month_of(now))
        out = []
        for site in sites:
            rate = (
                self._rates.get(program, 0.0)
                if program is not None and program in site.subsidy_programs
                else 0.0
            )
            est = ledger.estimate(gpus, hours, site.gpu_prices_hkd_per_hour[gpu_model], rate)
            subsidised = program is not None and rate > 0 and free is not None and est.program_hkd <= free
            if not subsidised:
                est = ledger.estimate(gpus, hours, site.gpu_prices_hkd_per_hour[gpu_model], 0.0)
            ok, reasons = eligible.get(site.name, (False, []))
            out.append(
                {
                    "site": site.name,
                    "eligible": ok,
                    "reasons": list(reasons),
                    "gpu_model": gpu_model,
                    "gpu_hours": est.gpu_hours,
                    "price_hkd_per_gpu_hour": est.price,
                    "total_hkd": ledger.cents(est.total_hkd),
                    "program_hkd": ledger.cents(est.program_hkd),
                    "tenant_hkd": ledger.cents(est.total_hkd) - ledger.cents(est.program_hkd),
                    "program": program if subsidised else "",
                    "budget_left_after_hkd": None
                    if free is None
                    else ledger.cents(max(ZERO, free - est.program_hkd)),
                    "cap_left_after_hkd": None
                    if cap_left is None
                    else ledger.cents(cap_left - est.tenant_hkd),
                }
            )
        return out

    def month_paid(self, tx: object, month: str) -> dict[str, Decimal]:
        """What each capped tenant paid itself in `month` (UTC), with this cycle's settlements:
        the placement core's spend caps count from it (broker/placement/filters.py)."""
        paid = {t: self.balance(t).paid_tenant.get(month, ZERO) for t in self._caps}
        for row in self.pending(tx).rows if tx is not None else ():
            if row["kind"] == ledger.SETTLE and row["tenant"] in paid and ledger.month_of(row["at"]) == month:
                paid[row["tenant"]] += row["tenant_hkd"]
        return paid

    def committed(self, tx: object) -> None:
        """After the commit that stored `tx`'s rows: the book takes them."""
        if self._for is tx:
            self.book.apply(self._pending.rows)
            self._pending, self._for = Pending(), None

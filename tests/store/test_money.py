"""The subsidy ledger on a real database (SQLite and PostgreSQL): every reservation, settlement
and release a row; budgets from the rows; restarts, lost sites, reloads and races."""

from __future__ import annotations

import asyncio
import threading
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select

from broker.auth import sha256_hex
from broker.config import FederationConfig, parse_federation
from broker.engine import commands as c
from broker.errors import FailedPrecondition
from broker.ledger import UsageQuery
from broker.store import LedgerRow, SiteHeardRow
from tests.store.engine_harness import OTHER, TENANT, Clock, Harness, federation, spec

L = LedgerRow.__table__  # type: ignore[attr-defined]


def money_federation(budget: float = 1000.0, price: float = 40.0, **tenant: Any) -> FederationConfig:
    data = federation().model_dump()
    data["tenants"][0]["subsidy"] = {"program": "aiss", "budget_hkd": budget}
    data["tenants"][0].update(tenant)
    data["sites"][0]["gpu_prices_hkd_per_hour"] = {"H800": price}
    return parse_federation(data)


async def rows(h: Harness) -> list[dict[str, Any]]:
    found = await h.engine.read(lambda conn: [r._asdict() for r in conn.execute(select(L).order_by(L.c.seq))])
    return found


def check_books(all_rows: list[dict[str, Any]], config: FederationConfig) -> dict[str, Decimal]:
    """From the rows alone: no budget over-committed, each attempt reserved once and closed at
    most once, and each closing row undoes exactly its reservation. Returns each tenant's use."""
    used: dict[str, Decimal] = {}
    reserved: dict[tuple[str, int], dict[str, Any]] = {}
    closed: set[tuple[str, int]] = set()
    for row in all_rows:
        key = (row["workload_id"], row["attempt"])
        if row["kind"] == "reserve":
            assert key not in reserved, f"reserved twice: {key}"
            reserved[key] = row
        else:
            assert key in reserved and key not in closed, f"closed twice or never reserved: {key}"
            closed.add(key)
            assert row["held_program_hkd"] == -reserved[key]["held_program_hkd"]
            assert row["total_hkd"] == row["program_hkd"] + row["tenant_hkd"]
            assert row["program_hkd"] >= 0 and row["tenant_hkd"] >= 0
            assert row["total_hkd"] == row["total_hkd"].quantize(Decimal("0.01"))  # rounded to the cent
        spent = row["program_hkd"] if row["kind"] == "settle" else Decimal(0)
        used[row["tenant"]] = used.get(row["tenant"], Decimal(0)) + row["held_program_hkd"] + spent
    for tenant in config.tenants:
        if tenant.subsidy is not None:
            assert used.get(tenant.name, Decimal(0)) <= Decimal(repr(tenant.subsidy.budget_hkd)), tenant.name
    return used


def run(db_url: str, scenario: Any, config: FederationConfig, clock: Clock | None = None) -> None:
    async def main() -> None:
        h = await Harness.start(config, db_url, clock)
        try:
            await scenario(h)
        finally:
            await h.stop()

    asyncio.run(main())


def test_placement_reserves_and_the_end_settles_from_the_running_report_to_the_last(db_url: str) -> None:
    async def scenario(h: Harness) -> None:
        await h.connect()
        record = await h.submit(subsidy="required", estimated_hours=2)  # 8 x 2 h x 40 = 640; 70%: 448
        (reserve,) = await rows(h)
        assert (reserve["kind"], reserve["held_program_hkd"], reserve["held_tenant_hkd"]) == (
            "reserve",
            Decimal("448"),
            Decimal("192"),
        )
        assert (reserve["price_hkd_per_gpu_hour"], reserve["rate"]) == (Decimal("40.0"), Decimal("0.7"))
        await h.update(record.id, 1, "RUNNING")
        h.clock.wall_now += 1234.5
        await h.update(record.id, 1, "SUCCEEDED")
        settle = (await rows(h))[1]
        # 8 GPUs x 1234.5 s = 2.743333.. GPU-hours x 40 = 109.7333.. -> 109.73; 70% -> 76.81
        assert (settle["kind"], settle["total_hkd"], settle["program_hkd"], settle["tenant_hkd"]) == (
            "settle",
            Decimal("109.73"),
            Decimal("76.81"),
            Decimal("32.92"),
        )
        assert settle["held_program_hkd"] == Decimal("-448")
        budgets = (await h.engine.usage(None))[1]
        assert (budgets[0]["spent_hkd"], budgets[0]["reserved_hkd"], budgets[0]["left_hkd"]) == (
            Decimal("76.81"),
            Decimal("0"),
            Decimal("923.19"),
        )

    run(db_url, scenario, money_federation())


def test_a_lost_attempt_is_billed_until_its_site_was_last_heard_from(db_url: str) -> None:
    async def scenario(h: Harness) -> None:
        await h.connect()
        record = await h.submit(estimated_hours=2)
        await h.update(record.id, 1, "RUNNING")
        h.clock.wall_now += 4
        await h.report(allocated=8, attempts=((record.id, 1, "RUNNING"),))  # last heard: 4 s in
        await h.advance(10 + 30 + 2)  # silent past the TTL and the requeue grace
        assert (await h.get(record.id)).state != "RUNNING"
        settle = [r for r in await rows(h) if r["kind"] == "settle"]
        assert len(settle) == 1
        assert settle[0]["gpu_hours"] == Decimal("0.008889")  # 8 GPUs x 4 s
        assert settle[0]["total_hkd"] == Decimal("0.36")  # 8 x 4 s x HK$40/h, not 46 s of it
        assert settle[0]["program_hkd"] == Decimal("0.25")

    run(db_url, scenario, money_federation())


async def stored_heard(h: Harness) -> dict[str, float]:
    table = SiteHeardRow.__table__  # type: ignore[attr-defined]
    return await h.engine.read(lambda conn: {r.name: r.at for r in conn.execute(select(table))})


def test_a_lost_attempt_after_a_restart_is_billed_until_its_site_was_last_heard_from(db_url: str) -> None:
    clock = Clock()
    started: list[float] = []
    ids: list[str] = []

    async def before(h: Harness) -> None:
        await h.connect()
        record = await h.submit(estimated_hours=2)
        ids.append(record.id)
        await h.update(record.id, 1, "RUNNING")
        started.append(h.clock.wall_now)
        running = ((record.id, 1, "RUNNING"),)
        await h.report(allocated=8, attempts=running)  # a new snapshot: stored, with the time
        assert await stored_heard(h) == {"cyberport": started[0]}
        for at in (4, 8, 20):  # heartbeats that change nothing write nothing, for 30 s
            h.clock.wall_now = started[0] + at
            await h.report(allocated=8, attempts=running)
            assert await stored_heard(h) == {"cyberport": started[0]}
        h.clock.wall_now = started[0] + 40
        await h.report(allocated=8, attempts=running)  # 40 s stale: stored on its own
        assert await stored_heard(h) == {"cyberport": started[0] + 40}
        h.clock.wall_now += 25  # heard at +65 too, not stored (25 s < 30): the broker dies first
        await h.report(allocated=8, attempts=running)

    async def after(h: Harness) -> None:
        # restarted; the site is never heard from again
        h.clock.wall_now += 600
        await h.advance(10 + 30 + 2)  # silent past the TTL and the requeue grace
        assert (await h.get(ids[0])).state == "QUEUED"
        (settle,) = [r for r in await rows(h) if r["kind"] == "settle"]
        assert settle["gpu_hours"] == Decimal("0.088889")  # 8 GPUs x 40 s, not 0 nor 11 minutes
        assert settle["total_hkd"] == Decimal("3.56")  # 8 x 40 s x HK$40/h
        check_books(await rows(h), h.engine.config)

    run(db_url, before, money_federation(), clock)
    run(db_url, after, money_federation(), clock)


def test_a_failure_before_start_releases_the_reservation_and_pays_nothing(db_url: str) -> None:
    async def scenario(h: Harness) -> None:
        await h.connect()
        record = await h.submit(subsidy="required", estimated_hours=2, max_attempts=1)
        await h.update(record.id, 1, "FAILED", reason="exit")
        kinds = [(r["kind"], r["program_hkd"], r["held_program_hkd"]) for r in await rows(h)]
        assert kinds == [("reserve", Decimal("448"), Decimal("448")), ("release", 0, Decimal("-448"))]
        assert (await h.engine.usage(None))[0] == []

    run(db_url, scenario, money_federation())


def test_when_the_budget_runs_out_mid_run_the_tenant_pays_the_rest_and_the_row_says_so(db_url: str) -> None:
    async def scenario(h: Harness) -> None:
        await h.connect()
        record = await h.submit(subsidy="required", estimated_hours=1)  # 320, 224 reserved of 1000
        await h.update(record.id, 1, "RUNNING")
        h.clock.wall_now += 5 * 3600  # ran 5 h: 1600, the program's 70% would be 1120
        await h.update(record.id, 1, "SUCCEEDED")
        settle = (await rows(h))[-1]
        assert (settle["total_hkd"], settle["program_hkd"], settle["tenant_hkd"]) == (
            Decimal("1600.00"),
            Decimal("1000.00"),
            Decimal("600.00"),
        )
        assert "subsidy budget ran out" in settle["reason"] and "HK$120.00" in settle["reason"]
        assert (await h.engine.usage(None))[1][0]["left_hkd"] == 0
        check_books(await rows(h), h.engine.config)

    run(db_url, scenario, money_federation())


def test_a_restart_mid_run_keeps_every_reservation_with_its_workload(db_url: str) -> None:
    clock = Clock()
    placed: dict[str, Decimal] = {}

    async def before(h: Harness) -> None:
        await h.connect(count=4)
        for hours in (2, 1, 3):  # 448, 224, 672 of 8 x H800 at 40 (70%): the budget holds 1344
            record = await h.submit(subsidy="preferred", estimated_hours=hours)
            placed[record.id] = h.engine.state.money.book.open[record.id].program_hkd
        first = next(iter(placed))
        await h.update(first, 1, "RUNNING")

    async def after(h: Harness) -> None:
        # Restarted with a dearer price and a smaller budget: nothing is priced again.
        book = h.engine.state.money.book
        assert {w: book.open[w].program_hkd for w in placed} == placed
        assert {w: h.engine.state.core.subsidy_held(w) for w in placed} == {
            w: float(v) for w, v in placed.items()
        }
        first = next(iter(placed))
        h.clock.wall_now += 1800
        await h.connect(count=4, allocated=8, attempts=tuple((w, 1, "RUNNING") for w in placed))
        h.clock.wall_now += 1800
        await h.update(first, 1, "SUCCEEDED")
        settle = [r for r in await rows(h) if r["kind"] == "settle"]
        # settled at the placed price (40), not the new one (80): 8 x 1 h x 40, 70% of it
        assert [(r["workload_id"], r["total_hkd"], r["program_hkd"]) for r in settle] == [
            (first, Decimal("320.00"), Decimal("224.00"))
        ]
        assert len([r for r in await rows(h) if r["kind"] == "reserve"]) == 3  # none written again

    run(db_url, before, money_federation(budget=2000), clock)
    run(db_url, after, money_federation(budget=1400, price=80), clock)


def test_a_quote_while_a_commit_is_in_flight_keeps_that_cycles_money_in_the_book(db_url: str) -> None:
    """A dry run reads the budget on the event loop while a cycle's commit waits on its thread;
    the book must still take that cycle's reservation when the commit lands (a quote once
    dropped it, so the budget looked free until a restart)."""

    async def scenario(h: Harness) -> None:
        await h.connect()
        entered, release = threading.Event(), threading.Event()
        commit = h.engine.writer._commit

        def held_commit(rows: Any) -> None:
            entered.set()
            release.wait(10)
            commit(rows)

        h.engine.writer._commit = held_commit  # type: ignore[method-assign]
        submitted = asyncio.create_task(h.submit(subsidy="required", estimated_hours=2))  # holds 448
        await asyncio.to_thread(entered.wait, 10)
        explanation, _ = h.engine.quote(TENANT, spec(subsidy="required", estimated_hours=2))
        assert explanation["chosen"] is None  # the quote sees the 448 held by the cycle committing
        release.set()
        first = await submitted
        h.engine.writer._commit = commit  # type: ignore[method-assign]
        budgets = (await h.engine.usage(None))[1]
        assert (budgets[0]["reserved_hkd"], budgets[0]["left_hkd"]) == (Decimal("448"), Decimal("352"))
        second = await h.submit(subsidy="required", estimated_hours=2)  # 448 more would cross 800
        assert second.state == "QUEUED"
        assert [r["workload_id"] for r in await rows(h)] == [first.id]  # one reservation, the first's

    run(db_url, scenario, money_federation(budget=800.0))


def test_many_tenants_submitting_at_once_never_overspend_small_budgets(db_url: str) -> None:
    tenants = [f"t{i}" for i in range(6)]
    data = federation().model_dump()
    data["tenants"] = [
        {"name": t, "token_sha256": sha256_hex(t), "subsidy": {"program": "aiss", "budget_hkd": 700.0}}
        for t in tenants
    ]
    data["sites"][0]["gpu_prices_hkd_per_hour"] = {"H800": 40.0}
    config = parse_federation(data)

    async def scenario(h: Harness) -> None:
        await h.connect(count=40)
        # each wants 8 x 1 h x 40 x 0.7 = 224 of 700: at most 3 per tenant may be subsidised
        results = await asyncio.gather(
            *(
                h.submit(t, name=f"{t}-{i}", subsidy="required", estimated_hours=1)
                for t in tenants
                for i in range(6)
            ),
            return_exceptions=True,
        )
        placed = [r for r in results if not isinstance(r, BaseException) and r.state == "PLACED"]
        assert all(isinstance(r, BaseException) or r.state in ("PLACED", "QUEUED") for r in results)
        used = check_books(await rows(h), config)
        assert all(v <= Decimal("700") for v in used.values())
        assert len(placed) == 3 * len(tenants)
        # every one runs 2 h instead of 1: the budget still holds (the tenants pay the rest)
        await asyncio.gather(*(h.update(r.id, 1, "RUNNING") for r in placed))
        h.clock.wall_now += 7200
        await asyncio.gather(*(h.update(r.id, 1, "SUCCEEDED") for r in placed))
        used = check_books(await rows(h), config)
        assert used == {t: Decimal("700.00") for t in tenants}

    run(db_url, scenario, config)


def test_usage_groups_filters_and_reconciles_exactly_with_the_rows(db_url: str) -> None:
    async def scenario(h: Harness) -> None:
        await h.connect(count=4)
        await h.connect("sandy-ridge", count=4)
        ids = []
        for tenant in (TENANT, OTHER, TENANT):
            record = await h.submit(tenant, estimated_hours=1)
            ids.append(record)
            await h.update(record.id, 1, "RUNNING", site=record.site or "cyberport")
            h.clock.wall_now += 1000.3
            await h.update(record.id, 1, "SUCCEEDED", site=record.site or "cyberport")
        settled = [r for r in await rows(h) if r["kind"] == "settle"]
        by_month, _ = await h.engine.usage(None, UsageQuery(by=("month",)))
        assert len(by_month) == 1 and by_month[0]["total_hkd"] == sum(r["total_hkd"] for r in settled)
        mine, _ = await h.engine.usage(TENANT, UsageQuery(tenant=OTHER, by=("tenant", "site")))
        assert {r["tenant"] for r in mine} == {TENANT}  # a tenant's view is forced to itself
        assert sum(r["tenant_hkd"] for r in mine) == sum(
            r["tenant_hkd"] for r in settled if r["tenant"] == TENANT
        )
        later, _ = await h.engine.usage(None, UsageQuery(since=h.clock.wall_now + 1))
        assert later == []

    run(db_url, scenario, money_federation())


def test_a_reload_changes_budgets_and_prices_keeps_placed_prices_and_refuses_a_bad_file(
    db_url: str, tmp_path: Path
) -> None:
    path = tmp_path / "federation.yaml"
    path.write_text(yaml.safe_dump(money_federation().model_dump(mode="json")))

    async def scenario(h: Harness) -> None:
        h.engine.config_path = path
        await h.connect(count=4)
        running = await h.submit(subsidy="required", estimated_hours=1)
        await h.update(running.id, 1, "RUNNING")
        new = money_federation(budget=5000, price=100).model_dump(mode="json")
        path.write_text(yaml.safe_dump(new))
        result = await h.engine.reload_config("operator sre")
        assert result.reloaded and any("budget_hkd" in line or "subsidy" in line for line in result.changes)
        assert (await h.engine.usage(None))[1][0]["budget_hkd"] == Decimal("5000.0")
        quoted = h.engine.quote(TENANT, h_spec(estimated_hours=1))[1]
        assert (quoted[0]["site"], quoted[0]["price_hkd_per_gpu_hour"]) == ("cyberport", Decimal("100.0"))
        h.clock.wall_now += 3600
        await h.update(running.id, 1, "SUCCEEDED")
        settle = (await rows(h))[-1]
        assert settle["total_hkd"] == Decimal("320.00")  # the price it was placed at
        path.write_text("sites: []\n")
        refused = await h.engine.reload_config("operator sre")
        assert not refused.reloaded and refused.problems
        assert h.engine.config.sites[0].gpu_prices_hkd_per_hour == {"H800": 100.0}  # the old one stays
        check_books(await rows(h), h.engine.config)

    run(db_url, scenario, money_federation())


def h_spec(**changes: Any) -> Any:
    from tests.store.engine_harness import spec

    return spec(**changes)


def test_a_reload_that_removes_a_site_with_running_work_is_refused(db_url: str, tmp_path: Path) -> None:
    path = tmp_path / "federation.yaml"

    async def scenario(h: Harness) -> None:
        h.engine.config_path = path
        await h.connect(count=4)
        record = await h.submit(estimated_hours=1)
        assert record.site == "cyberport"
        data = money_federation().model_dump(mode="json")
        data["sites"] = [s for s in data["sites"] if s["name"] != "cyberport"]
        data["tenants"][0].pop("subsidy")
        data["subsidy_programs"] = []
        path.write_text(yaml.safe_dump(data))
        result = await h.engine.reload_config("operator sre")
        assert not result.reloaded and "cyberport" in result.problems[0]
        assert h.engine.config.site("cyberport") is not None
        with pytest.raises(FailedPrecondition):
            await h.engine.call(c.Cancel("nope", "x", None))

    run(db_url, scenario, money_federation())


CAP_WAIT = "monthly spend cap HK$ 700.00: HK$ 640.00 paid or held this month"


def test_a_monthly_spend_cap_queues_what_would_cross_it_and_a_reload_raising_it_lets_it_run(
    db_url: str, tmp_path: Path
) -> None:
    path = tmp_path / "federation.yaml"

    async def scenario(h: Harness) -> None:
        h.engine.config_path = path
        await h.connect(count=4)
        # unsubsidised at 8 x 1 h x 40 = 320 each: a cap of 700 takes two, not a third
        for i in range(2):
            assert (await h.submit(name=f"ok{i}", subsidy="none", estimated_hours=1)).state == "PLACED"
        third = await h.submit(name="third", subsidy="none", estimated_hours=1)
        assert third.state == "QUEUED"
        assert third.message.startswith(f"waiting: {CAP_WAIT}; the tenant's share here needs HK$ 320.00")
        explained = await h.engine.explain(third.id, TENANT)
        assert CAP_WAIT in explained["summary"]
        budgets = (await h.engine.usage(TENANT))[1]
        assert (budgets[0]["cap_hkd"], budgets[0]["cap_used_hkd"]) == (Decimal("700.0"), Decimal("640"))
        quoted = h.engine.quote(TENANT, h_spec(subsidy="none", estimated_hours=1))[1]
        assert quoted[0]["cap_left_after_hkd"] == Decimal("-260.00")
        # the estimate alone is over the cap at every site: it can never fit, refused at submit
        with pytest.raises(FailedPrecondition, match=r"exceeds its monthly spend cap HK\$ 700\.00"):
            await h.submit(name="never", subsidy="none", estimated_hours=3)
        path.write_text(yaml.safe_dump(money_federation(max_hkd_per_month=1000.0).model_dump(mode="json")))
        assert (await h.engine.reload_config("operator sre")).reloaded
        await h.settle()
        assert (await h.get(third.id)).state == "PLACED"
        check_books(await rows(h), h.engine.config)

    run(db_url, scenario, money_federation(max_hkd_per_month=700.0))


def test_work_waiting_on_the_monthly_cap_runs_when_the_next_month_begins_across_a_restart(
    db_url: str,
) -> None:
    clock = Clock(wall_now=2_671_200.0)  # 1970-01-31 22:00 UTC
    ids: list[str] = []

    async def january(h: Harness) -> None:
        await h.connect(count=4)
        for name in ("a", "b", "c"):
            ids.append((await h.submit(name=name, subsidy="none", estimated_hours=1)).id)
        for wid in ids[:2]:
            await h.update(wid, 1, "RUNNING")
        h.clock.wall_now += 3600
        for wid in ids[:2]:
            await h.update(wid, 1, "SUCCEEDED")  # paid 320 each in January
        assert CAP_WAIT in (await h.get(ids[2])).message

    async def february(h: Harness) -> None:
        await h.connect(count=4)
        # restarted on January 31: what was paid this month still counts
        assert (await h.get(ids[2])).state == "QUEUED"
        assert CAP_WAIT in (await h.engine.explain(ids[2], TENANT))["summary"]
        h.clock.wall_now += 3700  # 1970-02-01 00:01:40 UTC
        await h.settle()
        assert (await h.get(ids[2])).state == "PLACED"
        budgets = (await h.engine.usage(TENANT))[1]
        assert (budgets[0]["month"], budgets[0]["cap_used_hkd"]) == ("1970-02", Decimal("320"))

    config = money_federation(max_hkd_per_month=700.0)
    run(db_url, january, config, clock)
    run(db_url, february, config, clock)

"""Property: for random sequences of submit, run, fail, succeed, cancel, a lost site, restart and
config reload, the ledger rows balance: each budget's use is the sum of its rows (and what the
engine holds in memory), no budget is over-committed, each attempt is reserved once and settled
or released at most once, and every placed workload holds exactly one open reservation."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from broker.ledger import Book
from broker.lifecycle import ACTIVE
from broker.store import Store
from tests.store.engine_harness import Clock, Harness
from tests.store.test_money import check_books, money_federation, rows

OPS = ("submit", "submit", "run", "succeed", "fail", "cancel", "lose_site", "restart", "reload", "wait")


async def check(h: Harness) -> None:
    stored = await rows(h)
    used = check_books(stored, h.engine.config)
    book = h.engine.state.money.book
    from_rows = await h.engine.read(Book.load)
    assert {t: b.budget_used() for t, b in book.balances.items() if b.budget_used()} == {
        t: b.budget_used() for t, b in from_rows.balances.items() if b.budget_used()
    }
    assert {t: v for t, v in used.items() if v} == {
        t: b.budget_used() for t, b in from_rows.balances.items() if b.budget_used()
    }
    live = {w.id: w for w in h.engine.state.live.values() if w.state in ACTIVE}
    assert {w: (r.attempt, r.site) for w, r in book.open.items()} == {
        w.id: (w.attempt, w.site) for w in live.values()
    }


async def play(ops: list[tuple[str, int]], db_url: str, path: Path) -> None:
    clock = Clock()
    budgets = iter((2500.0, 3000.0, 4000.0, 6000.0) * 20)
    config = money_federation(budget=2000.0)
    path.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    _empty(db_url)  # each example starts from nothing (the fixture's database is shared)
    h = await Harness.start(config, db_url, clock)
    h.engine.config_path = path
    try:
        await h.connect(count=3)
        for op, pick in ops:
            live = sorted(h.engine.state.live.values(), key=lambda w: w.seq)
            target = live[pick % len(live)] if live else None
            if op == "submit":
                hours = (1, 2, 3)[pick % 3]
                await h.submit(subsidy=("required", "preferred", "none")[pick % 3], estimated_hours=hours)
            elif op in ("run", "succeed", "fail") and target is not None and target.site == "cyberport":
                state = {"run": "RUNNING", "succeed": "SUCCEEDED", "fail": "FAILED"}[op]
                await h.update(target.id, target.attempt, state, reason="exit" if op == "fail" else "")
            elif op == "cancel" and target is not None:
                await h.engine.call(_cancel(target.id))
            elif op == "lose_site":
                await h.advance(10 + 30 + 1)  # silent: placed work requeued, running work lost
                await h.connect(count=3)
            elif op == "restart":
                await h.stop()
                h = await Harness.start(h.engine.config, db_url, clock)
                h.engine.config_path = path
                await h.connect(count=3, attempts=_running(h))
            elif op == "reload":
                new = money_federation(budget=next(budgets), price=(40.0, 50.0, 35.0)[pick % 3])
                path.write_text(yaml.safe_dump(new.model_dump(mode="json")))
                assert (await h.engine.reload_config("operator sre")).reloaded
            elif op == "wait":
                clock.wall_now += 600 * (pick % 5 + 1)
            await check(h)
    finally:
        await h.stop()


def _empty(db_url: str) -> None:
    store = Store(db_url)
    with store.engine.begin() as conn:
        for table in ("workloads", "workload_events", "decisions", "sites", "settings", "ledger"):
            conn.execute(text(f"DELETE FROM {table}"))
    store.close()


def _running(h: Harness) -> tuple[tuple[str, int, str], ...]:
    return tuple((w.id, w.attempt, w.state) for w in h.engine.state.live.values() if w.state == "RUNNING")


def _cancel(workload_id: str) -> Any:
    from broker.engine import commands as c

    return c.Cancel(workload_id, "tenant lion-rock-ai", None)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.lists(st.tuples(st.sampled_from(OPS), st.integers(0, 99)), min_size=4, max_size=24))
def test_random_sequences_keep_the_ledger_balanced(
    db_url: str, tmp_path_factory: Any, ops: list[tuple[str, int]]
) -> None:
    path = tmp_path_factory.mktemp("reload") / "federation.yaml"
    asyncio.run(play(ops, db_url, path))

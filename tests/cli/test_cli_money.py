"""Money through the real CLI, over real gRPC, against a real broker process and its agents:
quotes before submit, usage reports reconciled with the ledger rows in the database, and live
config reload (`fedbroker config reload`, SIGHUP)."""

from __future__ import annotations

import csv
import io
import json
import signal
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import create_engine, select

from broker.localfed import EXAMPLES, LocalFederation
from broker.store import LedgerRow
from tests.cli.test_cli_broker import cli, cli_json, workload_file

L = LedgerRow.__table__  # type: ignore[attr-defined]
BUDGET, CAP = 500_000, 200_000  # lion-rock-ai's in examples/federation.yaml


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFederation]:
    workdir = tmp_path_factory.mktemp("money")
    path = workdir / "federation.yaml"
    path.write_text(yaml.safe_dump(example_config()))
    federation = LocalFederation(
        workdir, config=path, agent_overrides={"heartbeat_s": 0.5, "backend": {"time_scale": 0.0001}}
    )
    with federation:
        federation.start()
        yield federation


def example_config(**changes: Any) -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load((EXAMPLES / "federation.yaml").read_text())
    config.update(heartbeat_ttl_s=2, requeue_grace_s=15)
    config.update(changes)
    return config


def with_budget_and_price(budget: float, price: float) -> dict[str, Any]:
    config = example_config()
    config["tenants"][0]["subsidy"]["budget_hkd"] = budget
    config["sites"][0]["gpu_prices_hkd_per_hour"]["H800"] = price
    return config


def ledger_rows(fed: LocalFederation) -> list[dict[str, Any]]:
    """The ledger as stored (read beside the running broker: SQLite in WAL mode)."""
    engine = create_engine(fed.db_url)
    try:
        with engine.connect() as conn:
            return [r._asdict() for r in conn.execute(select(L).order_by(L.c.seq))]
    finally:
        engine.dispose()


def quotes_of(fed: LocalFederation, path: Path, who: str = "lion-rock-ai") -> dict[str, dict[str, Any]]:
    return {q["site"]: q for q in cli_json(fed, "quote", "-f", str(path), who=who)["quotes"]}


def budget_of(fed: LocalFederation, who: str = "lion-rock-ai") -> dict[str, Any]:
    (budget,) = cli_json(fed, "usage", who=who)["budgets"]
    return dict(budget)


def test_quote_and_dry_run_give_each_sites_total_program_and_tenant_share_and_the_budget_left(
    fed: LocalFederation, tmp_path: Path
) -> None:
    path = workload_file(tmp_path, "quoted", estimated_hours=2)  # 8 x H800 for 2 h
    left = budget_of(fed)["left_hkd"]
    quotes = quotes_of(fed, path)
    cyberport, sandy = quotes["cyberport"], quotes["sandy-ridge"]
    # cyberport honours AISS (70%): 16 GPU-hours x HK$38 = 608, the program pays 425.60
    assert (cyberport["gpu_hours"], cyberport["price_hkd_per_gpu_hour"]) == (16, 38)
    assert (cyberport["total_hkd"], cyberport["program_hkd"], cyberport["tenant_hkd"]) == (608, 425.6, 182.4)
    assert cyberport["program"] == "aiss" and cyberport["eligible"]
    assert cyberport["budget_left_after_hkd"] == pytest.approx(left - 425.6, abs=0.005)
    # sandy-ridge does not: the tenant pays all of 16 x 32
    assert (sandy["total_hkd"], sandy["program_hkd"], sandy["tenant_hkd"]) == (512, 0, 512)
    assert sandy["budget_left_after_hkd"] == pytest.approx(left, abs=0.005)
    assert sandy["cap_left_after_hkd"] <= CAP - 512
    # submit --dry-run answers with the same figures, beside the decision
    dry = cli_json(fed, "submit", "-f", str(path), "--dry-run")
    assert {q["site"]: q for q in dry["quotes"]} == quotes and "candidates" in dry
    text = cli(fed, "submit", "-f", str(path), "--dry-run").stdout
    assert "what it would cost (HK$):" in text
    costs = text.split("what it would cost (HK$):", 1)[1]
    line = next(x for x in costs.splitlines() if x.startswith("cyberport"))
    assert "608.00" in line and "425.60" in line and "182.40" in line
    table = cli(fed, "quote", "-f", str(path)).stdout
    assert "budget_left_after" in table and "cap_left_after" in table
    assert budget_of(fed)["left_hkd"] == left  # a quote reserves nothing


def test_usage_csv_and_json_reconcile_exactly_with_the_ledger_rows(
    fed: LocalFederation, tmp_path: Path
) -> None:
    for who, name, site in (
        ("lion-rock-ai", "paid-a", "cyberport"),
        ("lion-rock-ai", "paid-b", "sandy-ridge"),
        ("harbour-robotics", "paid-c", "cyberport"),
    ):
        path = workload_file(tmp_path, name, seconds=3, sites=[site], estimated_hours=1)
        submitted = cli_json(fed, "submit", "-f", str(path), who=who)
        assert cli(fed, "watch", submitted["id"], who=who).returncode == 0
    settled = [r for r in ledger_rows(fed) if r["kind"] == "settle"]
    assert {r["tenant"] for r in settled} >= {"lion-rock-ai", "harbour-robotics"}
    assert any(r["program_hkd"] > 0 for r in settled)  # subsidised at cyberport

    def sums(keys: tuple[str, ...], rows: list[dict[str, Any]]) -> dict[tuple[str, ...], dict[str, Decimal]]:
        out: dict[tuple[str, ...], dict[str, Decimal]] = {}
        for row in rows:
            key = tuple("" if row[k] is None else str(row[k]) for k in keys)
            acc = out.setdefault(
                key, dict.fromkeys(("gpu_hours", "total_hkd", "program_hkd", "tenant_hkd"), Decimal(0))
            )
            for money in acc:
                acc[money] += row[money]
        return out

    # operators, as CSV: every figure the exact sum of its rows
    by = ("tenant", "site", "gpu_model")
    result = cli(fed, "usage", "--by", ",".join(by), "-o", "csv", who="sre")
    assert result.returncode == 0, result.stderr
    got = {
        tuple(r[k] for k in by): {
            m: Decimal(r[m]) for m in ("gpu_hours", "total_hkd", "program_hkd", "tenant_hkd")
        }
        for r in csv.DictReader(io.StringIO(result.stdout))
    }
    assert got == sums(by, settled)
    # a tenant, as JSON by month and program: only its own rows
    by = ("tenant", "program", "month")
    mine = cli_json(fed, "usage", "--by", ",".join(by))
    own = [dict(r, month=_month(r["at"])) for r in settled if r["tenant"] == "lion-rock-ai"]
    expected = sums(by, own)
    assert {(r["tenant"], r["program"] or "", r["month"]) for r in mine["usage"]} == set(expected)
    for row in mine["usage"]:
        exact = expected[(row["tenant"], row["program"] or "", row["month"])]
        assert row["total_hkd"] == float(exact["total_hkd"]) and row["tenant_hkd"] == float(
            exact["tenant_hkd"]
        )
    (budget,) = mine["budgets"]
    spent = sum((r["program_hkd"] for r in own), Decimal(0))
    assert budget["spent_hkd"] == float(spent)
    # another tenant's usage is not for a tenant to see
    refused = cli(fed, "usage", "--tenant", "harbour-robotics", "-o", "json")
    assert refused.returncode != 0 and json.loads(refused.stderr)["code"] == "PERMISSION_DENIED"


def _month(at: float) -> str:
    from broker.ledger import month_of

    return month_of(at)


def test_config_reload_is_for_operators_and_a_bad_file_keeps_the_old_config(
    fed: LocalFederation, tmp_path: Path
) -> None:
    path = workload_file(tmp_path, "reloaded", estimated_hours=1)
    denied = cli(fed, "config", "reload", "-o", "json")  # a tenant
    assert denied.returncode != 0 and json.loads(denied.stderr)["code"] == "PERMISSION_DENIED"
    fed.config.write_text(yaml.safe_dump(with_budget_and_price(600_000, 40.0)))
    done = cli_json(fed, "config", "reload", who="sre")
    assert done["reloaded"] and done["problems"] == [] and done["changes"]
    assert budget_of(fed)["budget_hkd"] == 600_000
    assert quotes_of(fed, path)["cyberport"]["price_hkd_per_gpu_hour"] == 40
    bad = example_config()
    bad["tenants"][0]["subsidy"]["program"] = "no-such-program"
    fed.config.write_text(yaml.safe_dump(bad))
    refused = cli(fed, "config", "reload", who="sre")
    assert refused.returncode == 1
    assert "not reloaded, the old config stays" in refused.stderr and "no-such-program" in refused.stderr
    as_json = cli(fed, "config", "reload", "-o", "json", who="sre")
    assert as_json.returncode == 1 and not json.loads(as_json.stdout)["reloaded"]
    assert any("no-such-program" in p for p in json.loads(as_json.stdout)["problems"])
    assert budget_of(fed)["budget_hkd"] == 600_000  # the old config stays
    assert quotes_of(fed, path)["cyberport"]["price_hkd_per_gpu_hour"] == 40


def test_sighup_reloads_the_file_and_the_next_quote_shows_it(fed: LocalFederation, tmp_path: Path) -> None:
    path = workload_file(tmp_path, "hupped", estimated_hours=1)
    fed.config.write_text(yaml.safe_dump(with_budget_and_price(700_000, 55.0)))
    fed.processes["broker"].send_signal(signal.SIGHUP)
    fed.wait(lambda: quotes_of(fed, path)["cyberport"]["price_hkd_per_gpu_hour"] == 55, 30, "the new price")
    cyberport = quotes_of(fed, path)["cyberport"]
    assert (cyberport["total_hkd"], cyberport["program_hkd"]) == (440, 308)  # 8 GPU-hours x 55, 70%
    budget = budget_of(fed)
    assert budget["budget_hkd"] == 700_000
    assert cyberport["budget_left_after_hkd"] == pytest.approx(budget["left_hkd"] - 308, abs=0.005)
    assert "config reloaded" in (fed.workdir / "broker.log").read_text()
    assert fed.processes["broker"].poll() is None  # SIGHUP did not stop it

"""Money on the command line: usage reports, quotes before submit, and config reload."""

from __future__ import annotations

import sys
from datetime import datetime
from typing import Any

import click

from broker import ledger
from broker.cli import humane, output
from broker.cli.common import client_options, output_format, sdk
from broker.cli.errors import REFUSED, fail
from broker.client import Client
from broker.sdk import workloads as specs
from broker.sdk.models import Quote

USAGE_MONEY = ["gpu_hours", "total_hkd", "program_hkd", "tenant_hkd"]
QUOTE_COLUMNS = ["site", "eligible", "gpu_hours", "hkd_per_gpu_h", "total_hkd", "program_hkd"]
QUOTE_COLUMNS += ["tenant_hkd", "budget_left_after", "cap_left_after", "reasons"]


def _when(text: str | None) -> datetime | None:
    """A date or time (UTC unless it names a zone), or a duration ago (30m, 2h, 7d)."""
    return humane.since(text)


def _dimensions(text: str) -> tuple[str, ...]:
    by = tuple(d.strip() for d in text.split(",") if d.strip())
    unknown = [d for d in by if d not in ledger.USAGE_DIMENSIONS]
    if unknown or not by or len(set(by)) != len(by):
        fail(f"--by: {text!r}: a comma-separated list of {', '.join(ledger.USAGE_DIMENSIONS)}")
    return by


@click.command()
@click.option("--tenant", default="", help="Only this tenant (operators; a tenant sees only itself).")
@click.option("--site", default="", help="Only work settled at this site.")
@click.option("--since", default=None, help="Settled since: a date (2026-11-01), a time, or 30d ago.")
@click.option("--until", default=None, help="Settled before this date or time (exclusive).")
@click.option(
    "--by",
    default="tenant,program,site",
    show_default=True,
    help=f"Group by, in order: {', '.join(ledger.USAGE_DIMENSIONS)} (month: UTC).",
)
@client_options
def usage(
    client: Client, as_json: bool, tenant: str, site: str, since: str | None, until: str | None, by: str
) -> None:
    """HK$ settled: the total, what the subsidy program paid, what the tenant paid; and each
    budget and monthly cap. `-o csv` for spreadsheets (exact decimals)."""
    dims = _dimensions(by)
    report = sdk().usage(tenant, site, _when(since), _when(until), dims)
    rows = [r.to_json() for r in report.rows]
    for row in rows:  # a dimension not grouped by means "all"
        for key in ("tenant", "program", "site"):
            if key not in dims:
                row.pop(key, None)
    budgets = [b.to_json() for b in report.budgets]
    columns = [*dims, *USAGE_MONEY]
    if output_format() == "csv":
        exact = [{**r, **_exact(row)} for r, row in zip(rows, report.rows, strict=True)]
        click.echo(ledger.to_csv(exact, columns), nl=False)
        return
    if as_json:
        output.emit_json({"usage": rows, "budgets": budgets})
        return
    click.echo(output.table(rows, columns) if rows else "no settled charges match")
    if budgets:
        click.echo("\n" + output.table(budgets, list(budgets[0])))


def _exact(row: Any) -> dict[str, str]:
    return {k: str(v) for k, v in row.exact.items()}


def quote_text(quote: Quote) -> str:
    rows = []
    for q in quote.sites:
        rows.append(
            {
                "site": q.site,
                "eligible": "yes" if q.eligible else "no",
                "gpu_hours": f"{q.gpu_hours:g}",
                "hkd_per_gpu_h": f"{q.price_hkd_per_gpu_hour:,.2f}",
                "total_hkd": f"{q.total_hkd:,.2f}",
                "program_hkd": f"{q.program_hkd:,.2f}",
                "tenant_hkd": f"{q.tenant_hkd:,.2f}",
                "budget_left_after": None
                if q.budget_left_after_hkd is None
                else f"{q.budget_left_after_hkd:,.2f}",
                "cap_left_after": None if q.cap_left_after_hkd is None else f"{q.cap_left_after_hkd:,.2f}",
                "reasons": "; ".join(q.reasons) or None,
            }
        )
    if not rows:
        return "no site prices this GPU model"
    return output.table(rows, QUOTE_COLUMNS)


@click.command()
@click.option("-f", "--file", "path", required=True, help="The workload's YAML file; - reads it from stdin.")
@client_options
def quote(client: Client, as_json: bool, path: str) -> None:
    """What a workload would cost at each site before you submit it: GPU-hours, price, total,
    what the subsidy program and you would pay, and the budget and monthly cap left after."""
    spec = specs.load(path)
    result = sdk().quote(spec)
    if as_json:
        output.emit_json(
            {"explanation": result.explanation.to_json(), "quotes": [q.to_json() for q in result.sites]}
        )
    else:
        click.echo(f"{result.explanation.summary}\n\n{quote_text(result)}")
    if result.explanation.refused:
        from broker.engine.state import refusal_message

        fail(refusal_message(result.explanation.to_json()), exit=REFUSED, code="FAILED_PRECONDITION")


@click.command("reload")
@client_options
def config_reload(client: Client, as_json: bool) -> None:
    """Operators: the broker reads its federation file again (as on SIGHUP). A file that fails
    validation changes nothing (exit 1, with each problem)."""
    result = client.reload_config()
    data = {
        "reloaded": result.reloaded,
        "path": result.path,
        "problems": list(result.problems),
        "changes": list(result.changes),
    }
    if as_json:
        output.emit_json(data)
    elif result.reloaded:
        changed = "\n".join(f"  {line}" for line in result.changes) or "  nothing changed"
        click.echo(f"reloaded {result.path}:\n{changed}")
    else:
        click.echo(f"not reloaded, the old config stays ({result.path or 'no file'}):", err=True)
        for problem in result.problems:
            click.echo(f"  {problem}", err=True)
    if not result.reloaded:
        sys.exit(REFUSED)

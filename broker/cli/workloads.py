"""The client commands: submit, get, list, cancel, watch, explain, sites, usage, pause, resume."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from broker import lifecycle
from broker.cli import output
from broker.cli.common import client_options
from broker.client import Client
from broker.spec import load_spec

WORKLOAD_COLUMNS = ["id", "name", "tenant", "state", "site", "attempt", "gpus", "message"]
SITE_COLUMNS = [
    "name",
    "healthy",
    "gpus_total",
    "gpus_allocated",
    "gpus_reserved",
    "gpus_free",
    "load",
    "heartbeat_age_s",
]


@click.command()
@click.option("-f", "--file", "path", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option("--dry-run", is_flag=True, help="Decide and explain; queue nothing.")
@client_options
def submit(client: Client, as_json: bool, path: Path, dry_run: bool) -> None:
    """Submit the workload in a YAML file."""
    response = client.submit(load_spec(path), dry_run=dry_run)
    explanation = output.explanation_json(response.explanation)
    if dry_run:
        if as_json:
            output.emit_json(explanation)
        else:
            click.echo("dry run: nothing was queued\n" + output.explanation_text(explanation))
        return
    workload = output.workload_json(response.workload)
    if as_json:
        output.emit_json(workload)
    else:
        click.echo(f"{workload['id']} {workload['state']}: {workload['message']}")


@click.command()
@click.argument("workload_id")
@client_options
def get(client: Client, as_json: bool, workload_id: str) -> None:
    """Show one workload."""
    workload = output.workload_json(client.get(workload_id))
    if as_json:
        output.emit_json(workload)
    else:
        click.echo("\n".join(f"{k + ':':12} {'-' if v is None else v}" for k, v in workload.items()))


@click.command(name="list")
@click.option("--state", "states", multiple=True, type=click.Choice(lifecycle.STATES), help="Repeatable.")
@click.option("--limit", type=int, default=0, help="At most this many (newest first).")
@client_options
def list_(client: Client, as_json: bool, states: tuple[str, ...], limit: int) -> None:
    """List workloads you can see, newest first."""
    workloads = [output.workload_json(w) for w in client.list(states, limit)]
    if as_json:
        output.emit_json(workloads)
    else:
        click.echo(output.table(workloads, WORKLOAD_COLUMNS))


@click.command()
@click.argument("workload_id")
@client_options
def cancel(client: Client, as_json: bool, workload_id: str) -> None:
    """Cancel a workload (queued or running)."""
    workload = output.workload_json(client.cancel(workload_id))
    if as_json:
        output.emit_json(workload)
    else:
        click.echo(f"{workload['id']} {workload['state']}: {workload['message']}")


@click.command()
@click.argument("workload_id")
@click.option("--timeout", type=float, default=None, help="Give up after this many seconds.")
@client_options
def watch(client: Client, as_json: bool, workload_id: str, timeout: float | None) -> None:
    """Follow a workload's state until it ends; exit 0 only if it SUCCEEDED."""
    last = None
    for event in client.watch(workload_id, timeout=timeout):
        data = output.event_json(event)
        last = data["state"]
        if as_json:
            click.echo(output.json.dumps(data))
        else:
            where = f" on {data['site']}" if data["site"] else ""
            why = f" [{data['reason']}]" if data["reason"] else ""
            click.echo(
                f"{data['at']}  {data['state']:<9} attempt {data['attempt']}{where}{why}: {data['message']}"
            )
    sys.exit(0 if last == lifecycle.SUCCEEDED else 1)


@click.command()
@click.argument("workload_id")
@client_options
def explain(client: Client, as_json: bool, workload_id: str) -> None:
    """Why a workload went where it went, or what it waits for."""
    explanation = output.explanation_json(client.explain(workload_id))
    if as_json:
        output.emit_json(explanation)
    else:
        click.echo(output.explanation_text(explanation))


@click.command()
@client_options
def sites(client: Client, as_json: bool) -> None:
    """The federation's sites: health, GPUs and load."""
    rows = [output.site_json(s) for s in client.sites()]
    if as_json:
        output.emit_json(rows)
    else:
        click.echo(output.table(rows, SITE_COLUMNS))


@click.command()
@client_options
def usage(client: Client, as_json: bool) -> None:
    """HK$ per tenant, program and site: what the tenant paid, what the program paid."""
    response = client.usage()
    rows = [output.usage_json(r) for r in response.rows]
    budgets = [output.budget_json(b) for b in response.budgets]
    if as_json:
        output.emit_json({"usage": rows, "budgets": budgets})
        return
    click.echo(output.table(rows, list(rows[0]) if rows else ["tenant", "program", "site", "cost_hkd"]))
    if budgets:
        click.echo("\n" + output.table(budgets, list(budgets[0])))


@click.command()
@client_options
def pause(client: Client, as_json: bool) -> None:
    """Operators: stop placement everywhere (submits still queue; running work is untouched)."""
    paused = client.pause()
    if as_json:
        output.emit_json({"paused": paused})
    else:
        click.echo("placement paused: submits queue until `fedbroker resume`")


@click.command()
@client_options
def resume(client: Client, as_json: bool) -> None:
    """Operators: restart placement after `fedbroker pause`."""
    paused = client.resume()
    if as_json:
        output.emit_json({"paused": paused})
    else:
        click.echo("placement resumed")

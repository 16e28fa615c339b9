"""The client commands: submit, get, list, cancel, watch, explain, sites, pause, resume."""

from __future__ import annotations

import sys
import time

import click

from broker import lifecycle
from broker.cli import humane, output
from broker.cli.common import client_options, output_format, sdk
from broker.cli.errors import REFUSED, TIMED_OUT, fail
from broker.cli.money import quote_text
from broker.cli.progress import StatusLine
from broker.client import Client
from broker.sdk import workloads as specs
from broker.sdk.errors import WaitTimeout
from broker.sdk.models import Quote

WORKLOAD_COLUMNS = ["id", "name", "tenant", "state", "site", "gpus", "age", "runtime", "message"]
WIDE_COLUMNS = ["id", "name", "tenant", "state", "site", "attempt", "gpus", "age", "runtime"]
WIDE_COLUMNS += ["reason", "nodes", "trace_id", "message"]
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
MODEL_COLUMNS = [
    "site",
    "gpu_model",
    "gpus_total",
    "gpus_allocated",
    "gpus_reserved",
    "gpus_free",
    "hkd_per_gpu_h",
]


@click.command()
@click.option("-f", "--file", "path", required=True, help="The workload's YAML file; - reads it from stdin.")
@click.option(
    "--dry-run", is_flag=True, help="Decide and explain; queue nothing (exit 1 if it would be refused)."
)
@click.option(
    "--request-id",
    default=None,
    help="This submit's id (default: a new UUID). Retries while the broker is unavailable reuse it, "
    "and the broker answers a repeated id with the workload it made: pass the same id when "
    "re-running a command whose answer was lost.",
)
@client_options
def submit(client: Client, as_json: bool, path: str, dry_run: bool, request_id: str | None) -> None:
    """Submit the workload in a YAML file (like sbatch, sky launch)."""
    spec = specs.load(path)  # checked here: a bad or too-large file never reaches the broker
    response = client.submit(spec, dry_run=dry_run, request_id=request_id)
    explanation = output.explanation_json(response.explanation)
    if dry_run:
        quote = Quote.from_proto(response)
        if as_json:  # the explanation's keys, and each site's price (fedbroker quote)
            output.emit_json({**explanation, "quotes": [q.to_json() for q in quote.sites]})
        else:
            click.echo("dry run: nothing was queued\n" + output.explanation_text(explanation))
            click.echo("\nwhat it would cost (HK$):\n" + quote_text(quote))
        if explanation["summary"].startswith("refused"):
            from broker.engine.state import refusal_message  # the real submit's words, exactly

            fail(refusal_message(explanation), exit=REFUSED, code="FAILED_PRECONDITION")
        return
    workload = output.workload_json(response.workload)
    if as_json:
        output.emit_json(workload)
    else:
        click.echo(f"{workload['id']} {workload['state']}: {workload['message']}")


@click.command()
@click.argument("workload", shell_complete=humane.complete_workloads)
@client_options
def get(client: Client, as_json: bool, workload: str) -> None:
    """Show one workload (by id, unique id prefix, or name)."""
    data = output.workload_json(client.get(workload))
    if as_json:
        output.emit_json(data)
        return
    click.echo("\n".join(f"{k + ':':24} {humane.cell(v)}" for k, v in data.items()))
    if data["site_unreachable_since"]:
        click.echo(f"\nwarning: {humane.unreachable(data)}")


@click.command(name="list")
@click.option(
    "--state",
    "states",
    multiple=True,
    type=click.Choice(lifecycle.STATES, case_sensitive=False),
    help="Only these states (repeatable, any case).",
)
@click.option("--tenant", default="", help="Operators: only this tenant's.")
@click.option("--site", default="", help="Only those on this site.")
@click.option("--name", default="", help="Only those with this name.")
@click.option(
    "--since", default=None, help="Only those submitted since: 30m, 2h, 7d, or a date (2026-11-23T10:00)."
)
@click.option("--limit", type=click.IntRange(min=0), default=0, help="At most this many (newest first).")
@click.option(
    "-w", "--watch", "follow", is_flag=True, help="Then print each change as it happens (Ctrl-C ends)."
)
@client_options
def list_(
    client: Client,
    as_json: bool,
    states: tuple[str, ...],
    tenant: str,
    site: str,
    name: str,
    since: str | None,
    limit: int,
    follow: bool,
) -> None:
    """List workloads you can see, newest first (like squeue, kubectl get, sky queue)."""
    wanted = [s.upper() for s in states]
    page = client.list_page(wanted, limit, tenant=tenant, site=site, name=name, since=humane.since(since))
    rows = [humane.workload_row(output.workload_json(w)) for w in page.workloads]
    wide = output_format() == "wide"
    if as_json and follow:  # one JSON object per line, as the changes that follow
        for row in rows:
            click.echo(output.json.dumps(row))
    elif as_json:
        output.emit_json(rows)
    elif rows:
        click.echo(output.table(rows, WIDE_COLUMNS if wide else WORKLOAD_COLUMNS))
    else:
        filters = any((states, tenant, site, name, since))
        click.echo("no workloads" + (" match these filters" if filters else " yet: fedbroker submit -f FILE"))
    if follow:
        humane.follow_changes(client, page.event_seq, tenant, wanted, site, name, as_json, wide)


@click.command()
@click.argument("workload", shell_complete=humane.complete_workloads)
@client_options
def cancel(client: Client, as_json: bool, workload: str) -> None:
    """Cancel a workload (queued or running)."""
    data = output.workload_json(client.cancel(workload))
    if as_json:
        output.emit_json(data)
    else:
        click.echo(f"{data['id']} {data['state']}: {data['message']}")


@click.command()
@click.argument("workload", shell_complete=humane.complete_workloads)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Give up after this many seconds (exit 124).",
)
@client_options
def watch(client: Client, as_json: bool, workload: str, timeout: float | None) -> None:
    """Follow a workload until it ends; exit 0 only if it SUCCEEDED (1 otherwise, 124 on --timeout).

    If the broker restarts meanwhile, the watch reconnects and goes on after the last event it saw."""
    last = None
    with StatusLine(enabled=not as_json) as status:
        try:
            for event in sdk().watch(workload, timeout=timeout):
                data = event.to_json()
                last = data["state"]
                if as_json:
                    click.echo(output.json.dumps(data))
                else:
                    where = f" on {data['site']}" if data["site"] else ""
                    why = f" [{data['reason']}]" if data["reason"] else ""
                    head = f"{data['at']}  {data['state']:<9} attempt {data['attempt']}"
                    status.echo(f"{head}{where}{why}: {data['message']}")
                    status.show(f"{event.workload_id} {last}{where}")
        except WaitTimeout as error:
            fail(
                f"{error.message}; it goes on (fedbroker watch again to follow it)",
                exit=TIMED_OUT,
                code="TIMEOUT",
            )
    sys.exit(0 if last == lifecycle.SUCCEEDED else 1)


@click.command()
@click.argument("workload", shell_complete=humane.complete_workloads)
@client_options
def explain(client: Client, as_json: bool, workload: str) -> None:
    """Why a workload went where it went, what it waits for, or how it finished."""
    explanation = output.explanation_json(client.explain(workload))
    if as_json:
        output.emit_json(explanation)
    else:
        click.echo(output.explanation_text(explanation))


@click.command()
@click.option(
    "-w",
    "--watch",
    "follow",
    is_flag=True,
    help="Then print the sites again whenever one changes (health, GPUs, load), checking every "
    "--interval seconds; on a terminal, redraw every --interval. Ctrl-C ends.",
)
@click.option("--interval", type=click.FloatRange(min=0.2), default=2.0, show_default=True)
@client_options
def sites(client: Client, as_json: bool, follow: bool, interval: float) -> None:
    """The federation's sites: health, GPUs and load, and per GPU model with its price."""
    redraw = follow and not as_json and sys.stdout.isatty()  # a live screen, like watch(1)
    shown = None
    while True:
        rows = [output.site_json(s) for s in client.sites()]
        state = [_without_heartbeat_age(row) for row in rows]
        if state != shown or redraw:
            if as_json and follow:
                click.echo(output.json.dumps(rows))
            elif as_json:
                output.emit_json(rows)
            else:
                if redraw:
                    click.clear()
                click.echo(output.table(rows, SITE_COLUMNS))
                models = humane.model_rows(rows)
                if models:
                    click.echo("\n" + output.table(models, MODEL_COLUMNS))
                if follow and not redraw:
                    click.echo()  # a blank line between one update and the next
            shown = state
        if not follow:
            return
        time.sleep(interval)


def _without_heartbeat_age(row: dict[str, object]) -> dict[str, object]:
    """A site's state: its heartbeat's age grows between any two looks, so it is no change."""
    return {k: v for k, v in row.items() if k != "heartbeat_age_s"}


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

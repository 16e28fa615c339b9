"""`fedbroker logs`: an attempt's output, relayed by the broker from the agent of the site that ran it."""

from __future__ import annotations

import click

from broker.cli import output
from broker.cli.common import client_options
from broker.client import Client


@click.command()
@click.argument("workload_id")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines until the attempt ends.")
@click.option(
    "--attempt", type=click.IntRange(min=1), default=None, help="Which attempt (default: the latest)."
)
@click.option("--tail", type=click.IntRange(min=0), default=None, help="Only the last N lines.")
@client_options
def logs(
    client: Client, as_json: bool, workload_id: str, follow: bool, attempt: int | None, tail: int | None
) -> None:
    """Print a workload's log lines (one JSON object per line with -o json)."""
    for batch in client.logs(workload_id, attempt=attempt or 0, tail=tail, follow=follow):
        for line in batch.lines:
            if as_json:
                click.echo(output.json.dumps({"attempt": batch.attempt, "site": batch.site, "line": line}))
            else:
                click.echo(line)

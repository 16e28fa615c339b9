"""The `fedbroker` command line."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import click

from broker.cli.demo import demo
from broker.cli.logs import logs
from broker.cli.simulate import simulate
from broker.cli.workloads import cancel, explain, get, list_, pause, resume, sites, submit, usage, watch
from broker.config import load_federation
from broker.observability.cli_options import log_format_option, metrics_listen_option, setup_telemetry
from broker.observability.logs import setup_logging
from broker.validation import InvalidInput


@click.group()
@click.version_option(package_name="fedbroker")
def cli() -> None:
    """fedbroker: one endpoint for GPU compute across federated sites."""


@cli.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option("--db", "db_url", default=None, help="Database URL (default: SQLite under $XDG_DATA_HOME).")
@click.option("--listen", default="127.0.0.1:50051", show_default=True)
@click.option("--log-level", default="INFO", show_default=True)
@log_format_option
@metrics_listen_option
def serve(
    config_path: Path,
    db_url: str | None,
    listen: str,
    log_level: str,
    log_format: str,
    metrics_listen: str | None,
) -> None:
    """Run the broker."""
    from broker.server import ServeError
    from broker.server import serve as run_server
    from broker.store import default_db_url

    setup_logging(log_level, log_format)
    try:
        config = load_federation(config_path)
    except InvalidInput as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(2)
    telemetry = setup_telemetry("fedbroker-broker", metrics_listen)
    try:
        asyncio.run(run_server(config, db_url or default_db_url(), listen, metrics_enabled=telemetry.enabled))
    except ServeError as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(1)
    finally:
        telemetry.shutdown()


@cli.group()
def config() -> None:
    """Configuration helpers."""


@config.command("validate")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
def config_validate(path: Path) -> None:
    """Check a federation file; print each problem with its field path."""
    try:
        federation = load_federation(path)
    except InvalidInput as error:
        for problem in error.problems:
            click.echo(f"{path}: {problem}", err=True)
        sys.exit(2)
    click.echo(f"{path}: ok ({len(federation.sites)} sites, {len(federation.tenants)} tenants)")


def _add_agent_command() -> None:
    from site_agents.cli import agent_command

    cli.add_command(agent_command, "agent")


for _command in (submit, get, list_, cancel, watch, explain, sites, usage, pause, resume, demo, simulate):
    cli.add_command(_command)
cli.add_command(logs)
_add_agent_command()


def main() -> None:
    cli(prog_name="fedbroker")

"""The `fedbroker` command line."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from broker import eventloop
from broker.cli import errors
from broker.cli.completion import completion
from broker.cli.contexts import context
from broker.cli.db import db
from broker.cli.demo import demo
from broker.cli.describe import describe
from broker.cli.logs import logs
from broker.cli.money import config_reload, quote, usage
from broker.cli.queue import queue
from broker.cli.simulate import simulate
from broker.cli.validate import validate
from broker.cli.workloads import cancel, explain, get, list_, pause, resume, sites, submit, watch
from broker.config import load_federation
from broker.listen import parse_listen
from broker.observability.cli_options import log_format_option, metrics_listen_option, setup_telemetry
from broker.observability.logs import setup_logging
from broker.store.urls import database_url
from broker.tls import server_tls
from broker.validation import InvalidInput


@click.group()
@click.version_option(package_name="fedbroker")
def cli() -> None:
    """fedbroker: one endpoint for GPU compute across federated sites."""


@cli.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option(
    "--db",
    "db_url",
    default=None,
    envvar="FEDBROKER_DB_URL",
    help="A database URL (postgresql://..., sqlite:///...) or a SQLite file's path; also "
    "$FEDBROKER_DB_URL (default: SQLite under $XDG_DATA_HOME/fedbroker).",
)
@click.option("--listen", default="127.0.0.1:50051", show_default=True, help="host:port to serve gRPC on.")
@click.option(
    "--lease-ttl-s",
    type=click.FloatRange(min=0.5, max=300),
    default=3.0,
    show_default=True,
    help="How long the scheduler lease lasts unrenewed: a standby takes over this long after the "
    "active broker dies.",
)
@click.option(
    "--advertise",
    default=None,
    help="host:port that standbys name to callers as the active broker's (default: --listen).",
)
@click.option(
    "--tls-cert",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    envvar="FEDBROKER_TLS_CERT",
    help="TLS: the broker's certificate chain (PEM) [env FEDBROKER_TLS_CERT; federation.yaml tls.cert_file]. "
    "Re-read when the file changes or on SIGHUP.",
)
@click.option(
    "--tls-key",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    envvar="FEDBROKER_TLS_KEY",
    help="TLS: the certificate's private key (PEM) [env FEDBROKER_TLS_KEY; tls.key_file].",
)
@click.option(
    "--tls-client-ca",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    envvar="FEDBROKER_TLS_CLIENT_CA",
    help="Mutual TLS: every caller must present a certificate this CA signed; a site's agent_cert_san "
    "is checked against its agent's [env FEDBROKER_TLS_CLIENT_CA; tls.client_ca_file].",
)
@click.option(
    "--fronts",
    type=click.IntRange(min=0, max=64),
    default=0,
    envvar="FEDBROKER_FRONTS",
    show_default=True,
    help="Serve --listen from this many front processes, which relay calls to this one in batches: "
    "more submits/s where a core is free for them; 0: this process serves it alone "
    "[env FEDBROKER_FRONTS].",
)
@click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    default="INFO",
    show_default=True,
)
@log_format_option
@metrics_listen_option
def serve(
    config_path: Path,
    db_url: str | None,
    listen: str,
    lease_ttl_s: float,
    advertise: str | None,
    tls_cert: Path | None,
    tls_key: Path | None,
    tls_client_ca: Path | None,
    fronts: int,
    log_level: str,
    log_format: str,
    metrics_listen: str | None,
) -> None:
    """Run the broker. Several may share one database: one schedules, the others wait on standby."""
    from broker.server import ServeError
    from broker.server import serve as run_server
    from broker.store import default_db_url

    setup_logging(log_level, log_format)
    try:
        config = load_federation(config_path)
        db_url = database_url(db_url) if db_url else None
        parse_listen(listen)
        tls = server_tls(config, config_path, tls_cert, tls_key, tls_client_ca)
    except InvalidInput as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(2)
    telemetry = setup_telemetry("fedbroker-broker", metrics_listen)
    try:
        eventloop.run(
            run_server(
                config,
                db_url or default_db_url(),
                listen,
                metrics_enabled=telemetry.enabled,
                lease_ttl_s=lease_ttl_s,
                advertise=advertise,
                tls=tls,
                config_path=config_path,
                fronts=fronts,
                log_level=log_level,
                log_format=log_format,
            )
        )
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
cli.add_command(quote)
config.add_command(config_reload)
for _command in (describe, validate, context, completion):
    cli.add_command(_command)
cli.add_command(logs)
cli.add_command(queue)
cli.add_command(db)
_add_agent_command()


def main() -> None:
    """The entry point: no traceback for a user's mistake, the README's exit codes, and with
    `-o json` errors as JSON on stderr (usage errors too)."""
    argv = sys.argv[1:]
    as_json = errors.wants_json(argv)
    try:
        code = cli.main(args=argv, prog_name="fedbroker", standalone_mode=False)
    except errors.CliFailure as failure:
        errors.exit_with(failure.failure, as_json)
    except click.UsageError as error:
        if as_json:
            errors.exit_with(errors.Failure("USAGE", error.format_message(), errors.BAD_INPUT), as_json)
        error.show()
        sys.exit(errors.BAD_INPUT)
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    except InvalidInput as error:
        errors.exit_with(errors.from_invalid_input(error), as_json)
    except (click.Abort, KeyboardInterrupt):
        click.echo("interrupted", err=True)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)

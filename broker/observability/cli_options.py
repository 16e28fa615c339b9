"""The observability options `fedbroker serve` and `fedbroker agent` share, and their set-up."""

from __future__ import annotations

import sys

import click

from broker import telemetry
from broker.observability.grpc_tracing import instrument_grpc_server
from broker.observability.logs import FORMATS
from broker.observability.metrics_setup import Metrics, setup_metrics
from broker.observability.otel_env import TelemetryConfigError

log_format_option = click.option(
    "--log-format",
    type=click.Choice(FORMATS),
    envvar="FEDBROKER_LOG_FORMAT",
    default="text",
    show_default=True,
    help="Log lines as text or one JSON object each (or $FEDBROKER_LOG_FORMAT).",
)
metrics_listen_option = click.option(
    "--metrics-listen",
    metavar="ADDR",
    envvar="FEDBROKER_METRICS_LISTEN",
    default=None,
    help="Serve Prometheus metrics on HOST:PORT /metrics (or $FEDBROKER_METRICS_LISTEN); off by default.",
)


def setup_telemetry(service_name: str, metrics_listen: str | None) -> Metrics:
    """Traces and metrics from ``OTEL_*`` and the flag; exit 2 on a bad name or a taken port.
    With traces exported, gRPC servers this process creates trace their calls (an agent has none)."""
    try:
        telemetry.setup_tracing(service_name)
        if telemetry.traces_exported():
            instrument_grpc_server()
        return setup_metrics(service_name, metrics_listen)
    except TelemetryConfigError as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(2)

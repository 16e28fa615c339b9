"""`fedbroker agent --config agent.yaml`: load the config, set up tracing, run the agent until signalled.

Exit codes: 0 stopped by SIGTERM/SIGINT; 1 the broker refused the agent's
credential; 2 the config (or token) is unusable, or its backend cannot be built
here (a missing extra such as `fedbroker[ray]`, an unreadable kubeconfig).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
from opentelemetry import metrics

from broker import eventloop
from broker.gc_tuning import tune_gc
from broker.observability.cli_options import log_format_option, metrics_listen_option, setup_telemetry
from broker.observability.logs import setup_logging
from broker.tls import channel_credentials, uses_tls
from broker.validation import InvalidInput
from site_agents.agent import Agent, run_until_signalled
from site_agents.backends import make_backend
from site_agents.backends.base import Backend
from site_agents.config import TOKEN_ENV, load_agent_config, resolve_token, with_tls_flags
from site_agents.errors import AgentRefused, BackendUnavailable
from site_agents.metrics import AgentMetrics, MeteredBackend


@click.command("agent")
@click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The agent config (agent.yaml).",
)
@click.option(
    "--token",
    envvar=TOKEN_ENV,
    default=None,
    help=f"This site's agent token (or ${TOKEN_ENV}, or token_file in the config).",
)
@click.option(
    "--broker",
    envvar="FEDBROKER_BROKER",
    default=None,
    help="The broker's host:port, replacing the config's `broker` (or $FEDBROKER_BROKER).",
)
@click.option(
    "--ca-file",
    envvar="FEDBROKER_AGENT_CA_FILE",
    default=None,
    help="TLS: verify the broker against this CA (or $FEDBROKER_AGENT_CA_FILE, or tls.ca_file).",
)
@click.option(
    "--cert-file",
    envvar="FEDBROKER_AGENT_CERT_FILE",
    default=None,
    help="Mutual TLS: this site's certificate (or $FEDBROKER_AGENT_CERT_FILE, or tls.cert_file).",
)
@click.option(
    "--key-file",
    envvar="FEDBROKER_AGENT_KEY_FILE",
    default=None,
    help="Mutual TLS: its private key (or $FEDBROKER_AGENT_KEY_FILE, or tls.key_file).",
)
@click.option(
    "--insecure",
    is_flag=True,
    envvar="FEDBROKER_AGENT_INSECURE",
    default=False,
    help="Plaintext to a non-loopback broker, explicitly (or $FEDBROKER_AGENT_INSECURE=1, or tls.insecure).",
)
@click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    default="INFO",
    show_default=True,
)
@log_format_option
@metrics_listen_option
def agent_command(
    config_path: Path,
    token: str | None,
    broker: str | None,
    ca_file: str | None,
    cert_file: str | None,
    key_file: str | None,
    insecure: bool,
    log_level: str,
    log_format: str,
    metrics_listen: str | None,
) -> None:
    """Run this site's agent: report inventory to the broker and run what it assigns."""
    setup_logging(log_level, log_format)
    try:
        config = with_tls_flags(
            load_agent_config(config_path, broker), ca_file, cert_file, key_file, insecure
        )
        if uses_tls(config.brokers, config.tls):
            channel_credentials(config.tls)  # missing, expired or mismatched files: exit 2 now
        secret = resolve_token(config, token)
        backend = make_backend(config.backend)
    except (InvalidInput, BackendUnavailable) as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(2)
    telemetry = setup_telemetry("fedbroker-agent", metrics_listen)
    if telemetry.enabled:
        backend = MeteredBackend(backend, metrics.get_meter("fedbroker.agent"), config.site)
    try:
        eventloop.run(_serve(Agent(config, secret, backend), backend))
    except AgentRefused as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(1)
    finally:
        telemetry.shutdown()


async def _serve(agent: Agent, backend: Backend) -> None:
    tune_gc()
    if isinstance(backend, MeteredBackend):
        AgentMetrics(metrics.get_meter("fedbroker.agent"), agent, backend)  # its callbacks keep it alive
    try:
        await run_until_signalled(agent)
    finally:
        await backend.close()


if __name__ == "__main__":  # python -m site_agents.cli, before the fedbroker group registers it
    agent_command()

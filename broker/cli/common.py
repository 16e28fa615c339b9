"""Options and error handling shared by the client commands.

Every command that talks to the broker takes --endpoint, --token, --context and -o; the
connection settings come from broker/sdk/settings.py (flags, environment, contexts). A
command raises and `client_options` reports: no traceback, the exit codes of
broker/cli/errors.py, and with `-o json` the error as a JSON object on stderr.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import click

from broker import telemetry
from broker.cli.errors import BAD_INPUT, Failure, exit_with, from_client_error, from_invalid_input
from broker.client import Client, ClientError
from broker.endpoints import split
from broker.observability.otel_env import TelemetryConfigError
from broker.sdk.client import Client as SdkClient
from broker.sdk.settings import NO_TOKEN_HELP, resolve
from broker.tls import uses_tls
from broker.validation import InvalidInput

F = TypeVar("F", bound=Callable[..., Any])

OUTPUTS = ("table", "wide", "json", "yaml", "csv")  # csv: `usage` (others print their table)
OUTPUT_KEY = "fedbroker.output"
SDK_KEY = "fedbroker.sdk"


def output_format() -> str:
    """The -o of the command being run ("table" outside one)."""
    ctx = click.get_current_context(silent=True)
    return str(ctx.meta.get(OUTPUT_KEY, "table")) if ctx is not None else "table"


def sdk() -> SdkClient:
    """The typed SDK over the command's connection."""
    client: SdkClient = click.get_current_context().meta[SDK_KEY]
    return client


def client_options(command: F) -> F:
    """--endpoint, --token, --context and -o on every command that talks to the broker."""

    @click.option(
        "--endpoint",
        default=None,
        help="The broker's host:port [env FEDBROKER_ENDPOINT, the context's, 127.0.0.1:50051].",
    )
    @click.option(
        "--token",
        default=None,
        help="Bearer token. Prefer FEDBROKER_TOKEN, FEDBROKER_TOKEN_FILE or a context's token_file.",
    )
    @click.option(
        "--context",
        "context_name",
        default=None,
        help="A context of the client config (fedbroker context list).",
    )
    @click.option(
        "--ca-file",
        default=None,
        help="TLS: verify the broker against this CA [env FEDBROKER_CA_FILE, the context's tls.ca_file; "
        "else the system's trust store]. FEDBROKER_CERT_FILE/FEDBROKER_KEY_FILE: a client certificate.",
    )
    @click.option(
        "--insecure",
        is_flag=True,
        default=False,
        help="Plaintext, no TLS [env FEDBROKER_INSECURE=1]. Loopback endpoints are plaintext unless "
        "TLS is configured.",
    )
    @click.option("-o", "--output", type=click.Choice(OUTPUTS), default="table", show_default=True)
    @functools.wraps(command)
    def wrapper(
        endpoint: str | None,
        token: str | None,
        context_name: str | None,
        ca_file: str | None,
        insecure: bool,
        output: str,
        **kwargs: Any,
    ) -> Any:
        ctx = click.get_current_context()
        ctx.meta[OUTPUT_KEY] = output
        as_json = output in ("json", "yaml")
        try:
            settings = resolve(
                endpoint=endpoint, token=token, context=context_name, ca_file=ca_file, insecure=insecure
            )
        except InvalidInput as error:
            exit_with(from_invalid_input(error), as_json)
        if not settings.token:
            exit_with(Failure("NO_TOKEN", NO_TOKEN_HELP, BAD_INPUT), as_json)
        try:  # OTEL_TRACES_EXPORTER set: the client's calls are traced (gRPC client spans)
            telemetry.setup_tracing("fedbroker-cli")
        except TelemetryConfigError as error:
            exit_with(Failure("INVALID_INPUT", str(error), BAD_INPUT), as_json)
        try:
            client = Client(settings.endpoint, settings.token, tls=settings.tls)
        except InvalidInput as error:  # a TLS file missing, expired or not matching its key
            exit_with(from_invalid_input(error), as_json)
        with client:
            ctx.meta[SDK_KEY] = SdkClient(settings=settings, raw=client)
            try:
                return command(client=client, as_json=as_json, **kwargs)
            except ClientError as error:
                tls_on = uses_tls(split(settings.endpoint), settings.tls)
                exit_with(from_client_error(error, settings.endpoint, tls_on), as_json)
            except InvalidInput as error:
                exit_with(from_invalid_input(error), as_json)

    return wrapper  # type: ignore[return-value]

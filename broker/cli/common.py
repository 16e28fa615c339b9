"""Options and error handling shared by the client commands."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from broker.client import Client, ClientError
from broker.validation import InvalidInput

F = TypeVar("F", bound=Callable[..., Any])


def client_options(command: F) -> F:
    """--endpoint, --token and -o on every command that talks to the broker."""

    @click.option("--endpoint", envvar="FEDBROKER_ENDPOINT", default="127.0.0.1:50051", show_default=True)
    @click.option("--token", envvar="FEDBROKER_TOKEN", default="", help="Bearer token (env FEDBROKER_TOKEN).")
    @click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table", show_default=True)
    @functools.wraps(command)
    def wrapper(endpoint: str, token: str, output: str, **kwargs: Any) -> Any:
        with Client(endpoint, token) as client:
            try:
                return command(client=client, as_json=output == "json", **kwargs)
            except ClientError as error:
                click.echo(f"error: {error}", err=True)
                sys.exit(1)
            except InvalidInput as error:
                click.echo(f"error: {error}", err=True)
                sys.exit(2)

    return wrapper  # type: ignore[return-value]

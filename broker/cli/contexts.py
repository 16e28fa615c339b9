"""`fedbroker context`: named connections in the client config (like kubectl config use-context)."""

from __future__ import annotations

import click

from broker.cli import output
from broker.cli.errors import fail
from broker.sdk.settings import (
    ClientConfig,
    Context,
    TlsFiles,
    check_endpoint,
    config_path,
    load_config,
    save_config,
)
from broker.validation import InvalidInput, did_you_mean


def _load() -> ClientConfig:
    try:
        return load_config()
    except InvalidInput as error:
        fail(str(error))
        raise  # unreachable


@click.group()
def context() -> None:
    """Named connections (endpoint, token file, TLS files) in ~/.config/fedbroker/config.yaml."""


@context.command("list")
@click.option("-o", "--output", "fmt", type=click.Choice(["table", "json"]), default="table")
def context_list(fmt: str) -> None:
    """Every context; * marks the current one."""
    config = _load()
    rows = [
        {
            "current": "*" if name == config.current_context else "",
            "name": name,
            "endpoint": c.endpoint,
            "token_file": c.token_file,
            "tls": bool(c.tls and c.tls.ca_file),
        }
        for name, c in sorted(config.contexts.items())
    ]
    if fmt == "json":
        click.echo(output.json.dumps({"current_context": config.current_context, "contexts": rows}))
    elif rows:
        click.echo(output.table(rows, ["current", "name", "endpoint", "token_file", "tls"]))
    else:
        click.echo(
            f"no contexts in {config_path()}: "
            "fedbroker context set NAME --endpoint HOST:PORT --token-file FILE"
        )


@context.command("use")
@click.argument("name")
def context_use(name: str) -> None:
    """Make NAME the current context."""
    config = _load()
    if name not in config.contexts:
        hint = (
            did_you_mean(name, config.contexts) or f" (known: {', '.join(sorted(config.contexts)) or 'none'})"
        )
        fail(f"no context {name!r}{hint}")
    config.current_context = name
    save_config(config)
    click.echo(f"current context: {name} ({config.contexts[name].endpoint})")


@context.command("current")
def context_current() -> None:
    """Print the current context's name."""
    config = _load()
    if config.current_context is None:
        fail("no current context: fedbroker context use NAME")
    click.echo(config.current_context)


@context.command("set")
@click.argument("name")
@click.option("--endpoint", default=None, help="The broker's host:port.")
@click.option("--token-file", default=None, help="A file holding the token (kept out of shell history).")
@click.option("--ca-file", default=None, help="TLS: the CA that signed the broker's certificate.")
@click.option("--cert-file", default=None, help="Mutual TLS: this client's certificate.")
@click.option("--key-file", default=None, help="Mutual TLS: this client's key.")
@click.option("--use", "make_current", is_flag=True, help="Also make it the current context.")
def context_set(
    name: str,
    endpoint: str | None,
    token_file: str | None,
    ca_file: str | None,
    cert_file: str | None,
    key_file: str | None,
    make_current: bool,
) -> None:
    """Create or update the context NAME (only the options given change)."""
    config = _load()
    old = config.contexts.get(name, Context())
    try:
        new_endpoint = check_endpoint(endpoint) if endpoint else old.endpoint
    except InvalidInput as error:
        fail(str(error))
    tls = old.tls or TlsFiles()
    tls = tls.model_copy(
        update={
            k: v for k, v in (("ca_file", ca_file), ("cert_file", cert_file), ("key_file", key_file)) if v
        }
    )
    config.contexts[name] = Context(
        endpoint=new_endpoint,
        token_file=token_file or old.token_file,
        tls=tls if (tls.ca_file or tls.cert_file or tls.key_file) else None,
    )
    if make_current or config.current_context is None:
        config.current_context = name
    path = save_config(config)
    click.echo(f"context {name} saved in {path}" + (" (current)" if config.current_context == name else ""))


@context.command("delete")
@click.argument("name")
def context_delete(name: str) -> None:
    config = _load()
    if config.contexts.pop(name, None) is None:
        fail(f"no context {name!r}")
    if config.current_context == name:
        config.current_context = None
    save_config(config)
    click.echo(f"context {name} deleted")

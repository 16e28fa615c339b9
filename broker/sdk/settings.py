"""Where the broker is and who you are: flags, environment, and the client config's contexts.

The client config (like kubectl's kubeconfig) lives at `$FEDBROKER_CONFIG`, else
`~/.config/fedbroker/config.yaml` (`$XDG_CONFIG_HOME` honoured):

    current_context: prod
    contexts:
      prod:
        endpoint: broker.cyberport.hk:443
        token_file: ~/.config/fedbroker/prod.token
        tls: {ca_file: ~/.config/fedbroker/ca.pem}   # client side; cert_file/key_file for mTLS
      dev:
        endpoint: 127.0.0.1:50051
        token_file: ~/.config/fedbroker/dev.token

TLS: `--ca-file`/`--insecure`, else FEDBROKER_CA_FILE, FEDBROKER_CERT_FILE, FEDBROKER_KEY_FILE,
FEDBROKER_TLS_SERVER_NAME, FEDBROKER_INSECURE=1, else the context's `tls`. Nothing set: TLS
with the system's trust store, except to loopback endpoints (plaintext; broker/tls.py).

Precedence: a flag, then the environment (FEDBROKER_ENDPOINT, FEDBROKER_TOKEN,
FEDBROKER_TOKEN_FILE), then the context (--context, else FEDBROKER_CONTEXT, else
current_context), then the defaults. A context named explicitly with --context beats the
environment. Tokens live in files, so they never need to be on a command line.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import yaml
from platformdirs import user_config_path
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from broker.validation import InvalidInput, check_mapping, describe, did_you_mean, read_yaml

DEFAULT_ENDPOINT = "127.0.0.1:50051"
CONFIG_ENV = "FEDBROKER_CONFIG"
_HOST_PORT = re.compile(r"^(\[[0-9a-fA-F:]+\]|[^\s:\[\]/]+):\d{1,5}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class TlsFiles(_Strict):
    ca_file: str | None = None  # verify the broker against this CA (else the system's)
    cert_file: str | None = None  # mutual TLS: this client's certificate and key
    key_file: str | None = None
    # The name the broker's certificate must carry (else each endpoint's host).
    server_name: str | None = None
    insecure: bool = False  # plaintext, said explicitly (loopback endpoints need not say it)


class Context(_Strict):
    endpoint: Annotated[str, Field(min_length=1)] = DEFAULT_ENDPOINT
    token_file: str | None = None
    tls: TlsFiles | None = None


class ClientConfig(_Strict):
    current_context: str | None = None
    contexts: dict[str, Context] = {}


@dataclass(frozen=True)
class Settings:
    """What a client connects with, resolved."""

    endpoint: str
    token: str
    tls: TlsFiles | None = None
    context: str | None = None  # the context used, if any
    token_source: str = ""  # where the token came from, for messages


def config_path(environ: Mapping[str, str] = os.environ) -> Path:
    if environ.get(CONFIG_ENV):
        return Path(environ[CONFIG_ENV]).expanduser()
    return user_config_path("fedbroker", appauthor=False) / "config.yaml"


def load_config(path: Path | None = None) -> ClientConfig:
    path = path or config_path()
    if not path.exists():
        return ClientConfig()
    data = read_yaml(path)
    if data is None:
        return ClientConfig()
    check_mapping(data, str(path), "contexts (current_context, contexts)")
    try:
        return ClientConfig.model_validate(data)
    except ValidationError as error:
        raise InvalidInput(str(path), describe(error, ClientConfig)) from None


def save_config(config: ClientConfig, path: Path | None = None) -> Path:
    path = path or config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(config.model_dump(exclude_none=True), sort_keys=False)
    path.write_text(text)
    path.chmod(0o600)  # it names token files and may hold TLS paths: the user's alone
    return path


def check_endpoint(endpoint: str) -> str:
    """host:port as gRPC wants it; a URL or a bare host gets a message, not gRPC's."""
    if "://" in endpoint:
        scheme, _, rest = endpoint.partition("://")
        example = rest.rstrip("/") or DEFAULT_ENDPOINT
        raise InvalidInput(
            "endpoint", [f"use host:port without {scheme}:// (got {endpoint!r}); e.g. {example}"]
        )
    # A broker and its standbys: "a:50051,b:50051" (the client follows the active one).
    for part in endpoint.split(","):
        if not _HOST_PORT.match(part.strip()):
            raise InvalidInput(
                "endpoint", [f"must be host:port, e.g. {DEFAULT_ENDPOINT} (got {part.strip()!r})"]
            )
    return endpoint


def read_token_file(path: str, what: str) -> str:
    file = Path(path).expanduser()
    try:
        token = file.read_text().strip()
    except OSError as error:
        raise InvalidInput(what, [f"{file}: cannot read: {error.strerror}"]) from None
    except UnicodeDecodeError:
        raise InvalidInput(what, [f"{file}: is not a text file"]) from None
    if not token:
        raise InvalidInput(what, [f"{file}: is empty"])
    return token


_TLS_ENV = {
    "ca_file": "FEDBROKER_CA_FILE",
    "cert_file": "FEDBROKER_CERT_FILE",
    "key_file": "FEDBROKER_KEY_FILE",
    "server_name": "FEDBROKER_TLS_SERVER_NAME",
}


def resolve_tls(
    context_tls: TlsFiles | None,
    environ: Mapping[str, str],
    ca_file: str | None = None,
    insecure: bool = False,
) -> TlsFiles | None:
    """The context's TLS settings with the environment's and the flags' over them."""
    values = context_tls.model_dump() if context_tls is not None else {}
    for key, name in _TLS_ENV.items():
        if environ.get(name):
            values[key] = environ[name]
    if environ.get("FEDBROKER_INSECURE", "").lower() in ("1", "true", "yes"):
        values = {"insecure": True}
    if ca_file:
        values.update(ca_file=ca_file, insecure=False)
    if insecure:
        values = {"insecure": True}
    return TlsFiles(**values) if any(values.values()) else None


def resolve(
    *,
    endpoint: str | None = None,
    token: str | None = None,
    context: str | None = None,
    ca_file: str | None = None,
    insecure: bool = False,
    environ: Mapping[str, str] = os.environ,
    config: ClientConfig | None = None,
) -> Settings:
    """The settings a client uses; an unknown context or an unreadable token file is InvalidInput."""
    config = config if config is not None else load_config(config_path(environ))
    explicit = context is not None
    name = context or environ.get("FEDBROKER_CONTEXT") or config.current_context
    chosen: Context | None = None
    if name:
        chosen = config.contexts.get(name)
        if chosen is None:
            known = sorted(config.contexts)
            hint = did_you_mean(name, known) or (f" (known: {', '.join(known)})" if known else "")
            raise InvalidInput("context", [f"no context {name!r} in {config_path(environ)}{hint}"])

    context_file = chosen.token_file if chosen else None
    env_endpoint = environ.get("FEDBROKER_ENDPOINT")
    context_endpoint = chosen.endpoint if chosen else None
    if endpoint:
        pass
    elif explicit or not env_endpoint:
        endpoint = context_endpoint or env_endpoint
    else:
        endpoint = env_endpoint
    if token:
        secret, source = token, "--token"
    elif explicit and context_file:
        secret, source = read_token_file(context_file, f"context {name} token_file"), "context"
    elif environ.get("FEDBROKER_TOKEN"):
        secret, source = environ["FEDBROKER_TOKEN"], "FEDBROKER_TOKEN"
    elif environ.get("FEDBROKER_TOKEN_FILE"):
        secret, source = read_token_file(environ["FEDBROKER_TOKEN_FILE"], "FEDBROKER_TOKEN_FILE"), "env"
    elif context_file:
        secret, source = read_token_file(context_file, f"context {name} token_file"), "context"
    else:
        secret, source = "", ""
    return Settings(
        endpoint=check_endpoint(endpoint or DEFAULT_ENDPOINT),
        token=secret,
        tls=resolve_tls(chosen.tls if chosen else None, environ, ca_file, insecure),
        context=name if chosen else None,
        token_source=source,
    )


NO_TOKEN_HELP = (
    "no token: set FEDBROKER_TOKEN (or FEDBROKER_TOKEN_FILE), pass --token, "
    "or use a context with a token_file (fedbroker context set NAME --token-file FILE)"
)

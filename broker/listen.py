"""`--listen`: a host:port to check before gRPC tries it, so a typo and a taken port get
different messages (gRPC says the same for both, after logging a core error line)."""

from __future__ import annotations

import errno
import re
import socket

from broker.validation import InvalidInput

_HOST_PORT = re.compile(r"^(?P<host>\[[0-9a-fA-F:]+\]|[^\s:\[\]/]+):(?P<port>\d{1,5})$")


def parse_listen(listen: str) -> tuple[str, int]:
    match = _HOST_PORT.match(listen)
    if match is None or int(match["port"]) > 65535:
        raise InvalidInput(
            "--listen", [f"must be host:port with a port up to 65535, e.g. 127.0.0.1:50051 (got {listen!r})"]
        )
    return match["host"].strip("[]"), int(match["port"])


def why_not_listen(listen: str) -> str | None:
    """Why the broker could not listen on `listen` (None: it can, as far as a test bind says)."""
    host, port = parse_listen(listen)
    if port == 0:
        return None
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror:
        return f"cannot listen on {listen}: no such host {host!r}"
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gRPC does
        try:
            probe.bind(address)
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                return f"cannot listen on {listen}: the port is already in use (another broker?)"
            if error.errno == errno.EADDRNOTAVAIL:
                return f"cannot listen on {listen}: {host} is not an address of this machine"
            if error.errno == errno.EACCES:
                return f"cannot listen on {listen}: not allowed (a port below 1024 needs privileges)"
            return f"cannot listen on {listen}: {error.strerror}"
    return None


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on `host` now (the OS picks it; a race with another binder is possible)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])

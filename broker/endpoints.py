"""Several broker endpoints as one gRPC channel that follows the active broker.

`FEDBROKER_ENDPOINT=a:50051,b:50051` names an active broker and its standbys. gRPC's own
client-side health checking does the rest: the channel balances over every address but
uses only those whose health service says SERVING for fedbroker.v1.WorkloadService, which
only the active broker does (a standby reports NOT_SERVING there). After a takeover the
channel moves to the new active broker by itself, within a health-watch round trip.
"""

from __future__ import annotations

import json
import socket

ACTIVE_SERVICE = "fedbroker.v1.WorkloadService"
_SERVICE_CONFIG = json.dumps(
    {"loadBalancingConfig": [{"round_robin": {}}], "healthCheckConfig": {"serviceName": ACTIVE_SERVICE}}
)


class EndpointError(ValueError):
    """An endpoint list that cannot be dialled (a bad host:port, a name that does not resolve)."""


def split(endpoints: str) -> list[str]:
    return [e.strip() for e in endpoints.split(",") if e.strip()]


def channel_target(endpoints: str) -> tuple[str, list[tuple[str, str]]]:
    """The gRPC target and channel options for one endpoint (as given) or several (failover)."""
    parts = split(endpoints)
    if len(parts) <= 1:
        return endpoints.strip(), []
    # gRPC's static multi-address targets take addresses, not names: resolve them now.
    addresses = [_resolve(part) for part in parts]
    families = {family for family, _ in addresses}
    if len(families) > 1:
        raise EndpointError(f"{endpoints!r}: mixes IPv4 and IPv6 brokers; name them all in one family")
    scheme = "ipv6" if families == {socket.AF_INET6} else "ipv4"
    return f"{scheme}:{','.join(a for _, a in addresses)}", [("grpc.service_config", _SERVICE_CONFIG)]


def _resolve(endpoint: str) -> tuple[socket.AddressFamily, str]:
    host, sep, port = endpoint.rpartition(":")
    if not sep or not port.isdigit():
        raise EndpointError(f"{endpoint!r}: expected host:port")
    host = host.strip("[]")
    try:
        family, _, _, _, sockaddr = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)[0]
    except (OSError, UnicodeError) as error:
        raise EndpointError(f"{endpoint!r}: {error}") from None
    address = str(sockaddr[0])
    return family, f"[{address}]:{port}" if family == socket.AF_INET6 else f"{address}:{port}"

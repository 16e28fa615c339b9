"""Who is calling: bearer tokens checked against the SHA-256 digests in the config."""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from opentelemetry import metrics

from broker.config import FederationConfig
from broker.errors import Unauthenticated

log = logging.getLogger("fedbroker.auth")
# Created on the global (proxy) meter: it counts once `fedbroker serve` installs a provider.
_refusals = metrics.get_meter("fedbroker.broker").create_counter(
    "fedbroker.auth.refusals", "{call}", "Calls refused for their credentials, by reason"
)

Role = Literal["tenant", "operator", "agent"]


@dataclass(frozen=True, slots=True)
class Identity:
    role: Role
    name: str  # tenant, operator, or the agent's site

    def __str__(self) -> str:
        return f"{self.role} {self.name}"


def sha256_hex(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Authenticator:
    def __init__(self, config: FederationConfig) -> None:
        self._by_digest: dict[str, Identity] = {}
        for tenant in config.tenants:
            self._by_digest[tenant.token_sha256] = Identity("tenant", tenant.name)
        for operator in config.operators:
            self._by_digest[operator.token_sha256] = Identity("operator", operator.name)
        for site in config.sites:
            self._by_digest[site.agent_token_sha256] = Identity("agent", site.name)

    def identify(self, metadata: Iterable[tuple[str, str | bytes]] | None) -> Identity:
        """The identity behind the `authorization: Bearer <token>` metadata."""
        header = next((v for k, v in metadata or () if k == "authorization"), None)
        if header is None:
            raise _refused("missing", "missing authorization metadata (Bearer token)")
        value = header.decode() if isinstance(header, bytes) else header
        scheme, _, token = value.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise _refused("malformed", "authorization must be 'Bearer <token>'")
        digest = sha256_hex(token.strip())
        # Constant-time comparison so the digest is not guessable by timing.
        for known, identity in self._by_digest.items():
            if hmac.compare_digest(known, digest):
                return identity
        raise _refused("unknown_token", "unknown token")


def _refused(reason: str, message: str) -> Unauthenticated:
    """Log and count a refused login (never the token, nor its digest), and the error to raise."""
    log.warning("refused a call: %s", message)
    _refusals.add(1, {"fedbroker.auth.reason": reason})
    return Unauthenticated(message)

"""Who is calling: bearer tokens checked against the SHA-256 digests in the config."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from opentelemetry import metrics

from broker.config import FederationConfig, digests
from broker.errors import PermissionDenied, Unauthenticated

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
    # The digest of the token it logged in with: a stream outlives the call that opened it, and
    # ends when a reload removes that digest (AgentService.end_revoked).
    digest: str = field(default="", compare=False, repr=False)

    def __str__(self) -> str:
        return f"{self.role} {self.name}"


def sha256_hex(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Authenticator:
    def __init__(self, config: FederationConfig) -> None:
        self._by_digest: dict[str, Identity] = {}
        self.reload(config)

    def reload(self, config: FederationConfig) -> None:
        """Tokens from a reloaded config (broker/engine/reload.py): swapped in one assignment."""
        # Each holder may have several digests (a rotation's overlap: config.TokenDigests).
        holders: list[tuple[Role, str, str | list[str]]] = [
            *(("tenant", t.name, t.token_sha256) for t in config.tenants),
            *(("operator", o.name, o.token_sha256) for o in config.operators),
            *(("agent", s.name, s.agent_token_sha256) for s in config.sites),
        ]
        self._by_digest = {
            digest: Identity(role, name, digest) for role, name, value in holders for digest in digests(value)
        }
        self._sans = {s.name: s.agent_cert_san for s in config.sites if s.agent_cert_san}
        self._site_by_san = {san: name for name, san in self._sans.items()}

    def knows(self, identity: Identity) -> bool:
        """Whether `identity`'s token is still in the config (a reload may have removed it)."""
        return self._by_digest.get(identity.digest) == identity

    def check_agent_certificate(self, site: str, names: frozenset[str]) -> None:
        """Mutual TLS: `names` (the SANs of the connection's verified client certificate) must
        include the site's `agent_cert_san` when it has one, and may name no other site's:
        a certificate for one site cannot speak for another, whatever token it carries."""
        wanted = self._sans.get(site)
        if wanted is not None and wanted not in names:
            shown = f"one naming {_few(names)}" if names else "none"
            raise _denied(
                f"site {site} requires a client certificate naming {wanted!r} (mutual TLS); "
                f"this connection presented {shown}"
            )
        others = sorted(other for san, other in self._site_by_san.items() if san in names and other != site)
        if others:
            raise _denied(f"this client certificate is site {others[0]}'s; it cannot speak for site {site}")

    def identify(self, metadata: Iterable[tuple[str, str | bytes]] | None) -> Identity:
        """The identity behind the `authorization: Bearer <token>` metadata."""
        header = next((v for k, v in metadata or () if k == "authorization"), None)
        if header is None:
            raise _refused("missing", "missing authorization metadata (Bearer token)")
        value = header.decode() if isinstance(header, bytes) else header
        scheme, _, token = value.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise _refused("malformed", "authorization must be 'Bearer <token>'")
        # Looked up by digest, not compared token by token: what a lookup's timing could tell is
        # about the SHA-256 of the caller's own guess, never about a token, and one lookup costs
        # the same with 5 or 5,000 holders (a loop of constant-time comparisons grew with them).
        identity = self._by_digest.get(sha256_hex(token.strip()))
        if identity is None:
            raise _refused("unknown_token", "unknown token")
        return identity


def _few(names: frozenset[str]) -> str:
    shown = ", ".join(repr(n[:64]) for n in sorted(names)[:3])  # bounded: a certificate may hold many
    return shown + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def _denied(message: str) -> PermissionDenied:
    log.warning("refused an agent certificate: %s", message)
    _refusals.add(1, {"fedbroker.auth.reason": "client_certificate"})
    return PermissionDenied(message)


def _refused(reason: str, message: str) -> Unauthenticated:
    """Log and count a refused login (never the token, nor its digest), and the error to raise."""
    log.warning("refused a call: %s", message)
    _refusals.add(1, {"fedbroker.auth.reason": reason})
    return Unauthenticated(message)

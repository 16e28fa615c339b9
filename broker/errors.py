"""The broker's errors, one small tree; the API layer maps each to one gRPC status.

BrokerError
├── Unauthenticated      no token, or a token nobody holds
├── PermissionDenied     a known identity asking for what it may not do
├── NotFound             no such workload (or not yours to see)
├── InvalidArgument      a malformed request; the message names the field
├── FailedPrecondition   can never fit anywhere, or the state forbids it
├── ResourceExhausted    a limit was hit
└── Unavailable          the broker could not store it now (database down); safe to retry
"""

from __future__ import annotations


class BrokerError(Exception):
    pass


class Unauthenticated(BrokerError):
    pass


class PermissionDenied(BrokerError):
    pass


class NotFound(BrokerError):
    pass


class InvalidArgument(BrokerError):
    pass


class FailedPrecondition(BrokerError):
    pass


class ResourceExhausted(BrokerError):
    pass


class Unavailable(BrokerError):
    pass


class Standby(Unavailable):
    """This broker waits on standby: another one schedules (its callers should try it).

    `retry_within_s`: when a live broker holds the lease, how long retrying here can still
    help: until that lease, as last read, could have run out and this broker taken over.
    None when a takeover may come at any moment (no holder, or its lease ran out)."""

    def __init__(self, message: str, retry_within_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_within_s = retry_within_s


# Trailing metadata on a standby's refusals, so an agent can tell "alive, not active" from
# "unreachable" without reading the message, and a client how long retrying it is worth.
STANDBY_METADATA = ("fedbroker-role", "standby")
RETRY_WITHIN_KEY = "fedbroker-retry-within-s"


def standby_metadata(error: Standby) -> tuple[tuple[str, str], ...]:
    if error.retry_within_s is None:
        return (STANDBY_METADATA,)
    return (STANDBY_METADATA, (RETRY_WITHIN_KEY, f"{error.retry_within_s:.1f}"))

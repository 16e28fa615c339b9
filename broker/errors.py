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
    """This broker waits on standby: another one schedules (its callers should try it)."""


# Trailing metadata on a standby's refusals, so an agent can tell "alive, not active" from
# "unreachable" without reading the message.
STANDBY_METADATA = ("fedbroker-role", "standby")

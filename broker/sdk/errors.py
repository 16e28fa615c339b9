"""The SDK's exceptions: one class per way a call can go wrong, all `ClientError`s.

`except fedbroker.NotFoundError` reads better in a notebook than comparing status codes;
`error.code` still holds the gRPC status for those who want it.
"""

from __future__ import annotations

import grpc

from broker.client import ClientError


class InvalidWorkloadError(ClientError):
    """The broker refused the request as malformed (INVALID_ARGUMENT); the message names the field."""


class RefusedError(ClientError):
    """The workload can never fit, or its state forbids the call (FAILED_PRECONDITION)."""


class NotFoundError(ClientError):
    """No such workload visible to you (NOT_FOUND)."""


class AuthenticationError(ClientError):
    """No token, or one the broker does not know (UNAUTHENTICATED)."""


class PermissionDeniedError(ClientError):
    """A known identity asking for what it may not do (PERMISSION_DENIED)."""


class UnavailableError(ClientError):
    """The broker cannot be reached, or could not store the request now; safe to retry."""


class WaitTimeout(ClientError):
    """`wait`/`watch` gave up after its timeout; the workload goes on."""

    def __init__(self, message: str) -> None:
        super().__init__(grpc.StatusCode.DEADLINE_EXCEEDED, message)


_BY_CODE: dict[grpc.StatusCode, type[ClientError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidWorkloadError,
    grpc.StatusCode.FAILED_PRECONDITION: RefusedError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.UNAUTHENTICATED: AuthenticationError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
}


def typed(error: ClientError) -> ClientError:
    """The specific exception for `error`'s status code (itself when there is none)."""
    if type(error) is not ClientError:
        return error
    if error.code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return WaitTimeout(error.message or "timed out")
    kind = _BY_CODE.get(error.code)
    return error if kind is None else kind(error.code, error.message, error.retry_within_s)


def broker_away(error: BaseException) -> bool:
    """The broker restarting or unreachable for a moment: a watch reconnects."""
    return isinstance(error, ClientError) and error.code == grpc.StatusCode.UNAVAILABLE

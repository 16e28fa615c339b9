"""The one place where broker errors become gRPC status codes."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, TypeVar

import grpc

from broker import errors
from broker.api.limits import bounded
from broker.validation import InvalidInput

CODES: dict[type[Exception], grpc.StatusCode] = {
    errors.Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    errors.PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    InvalidInput: grpc.StatusCode.INVALID_ARGUMENT,
    errors.FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    errors.ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.Unavailable: grpc.StatusCode.UNAVAILABLE,
}

R = TypeVar("R")
log = logging.getLogger("fedbroker.api")


def status_for(error: Exception) -> grpc.StatusCode:
    return next((code for kind, code in CODES.items() if isinstance(error, kind)), grpc.StatusCode.INTERNAL)


async def abort(context: grpc.aio.ServicerContext, error: Exception) -> NoReturn:
    """End the call with `error`'s status and its (bounded) message. A standby's refusal also
    carries its trailing metadata: the role, and how long a retry here can help."""
    if isinstance(error, errors.Standby):
        context.set_trailing_metadata(errors.standby_metadata(error))
    await context.abort(status_for(error), bounded(str(error)))
    raise AssertionError("unreachable: abort raises")


def unary(method: Callable[..., Awaitable[R]]) -> Callable[..., Awaitable[R]]:
    """Turn the broker's errors raised by a unary handler into an aborted call."""

    @functools.wraps(method)
    async def handler(self: Any, request: Any, context: grpc.aio.ServicerContext) -> R:
        try:
            return await method(self, request, context)
        except (errors.BrokerError, InvalidInput) as error:
            await abort(context, error)
        except grpc.aio.AbortError:
            raise
        except Exception:
            # A bug, not the caller's input: logged here with its traceback; the caller gets a
            # plain sentence, never an exception class or a database statement.
            log.exception("%s failed", method.__name__)
            await context.abort(
                grpc.StatusCode.INTERNAL, f"{method.__name__}: internal error (logged by the broker)"
            )
            raise

    return handler

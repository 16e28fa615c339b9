"""Requests that are not protobuf at all answered INVALID_ARGUMENT in words, not UNKNOWN.

gRPC parses a request before any handler runs, and a parse error becomes UNKNOWN with
Python's exception class in its details ("Unexpected <class 'DecodeError'>"). This
interceptor gives each method a deserializer that never raises: bytes that do not parse
become a `Malformed` marker, and a unary request is refused with a plain message before the
servicer sees it. A client stream's messages reach its servicer as they come, a `Malformed`
among them: the agent stream drops such a message, as it drops a report it cannot apply
(aborting from the task that reads the stream raced the task that writes it). Each method's
wrapped handler is built once and reused, so a call pays one dictionary look-up.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import DecodeError

# upb's own nesting limit; a deeper message (a runtime_env nested ~32 levels) fails to parse.
PROTOBUF_MAX_DEPTH = 100


@dataclass(frozen=True, slots=True)
class Malformed:
    """Bytes that did not parse as the method's request message."""

    message_type: str
    too_deep: bool

    def describe(self) -> str:
        why = (
            f"nested deeper than protobuf's {PROTOBUF_MAX_DEPTH} levels"
            if self.too_deep
            else "not valid protobuf wire data"
        )
        return f"request: not a valid {self.message_type} message ({why})"


def _safe(deserialize: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    owner = getattr(deserialize, "__self__", None)
    descriptor = getattr(owner, "DESCRIPTOR", None)
    message_type = getattr(descriptor, "full_name", "request")

    def parse(data: bytes) -> Any:
        try:
            return deserialize(data)
        except (DecodeError, ValueError, TypeError, RecursionError) as error:
            return Malformed(message_type, "depth" in str(error).lower())

    return parse


async def _refuse(context: grpc.aio.ServicerContext, request: Malformed) -> None:
    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.describe())


def wrap_handler(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    if handler.request_deserializer is None:
        return handler
    deserializer = _safe(handler.request_deserializer)
    serializer = handler.response_serializer
    if handler.unary_unary is not None:
        inner_uu = handler.unary_unary

        async def unary_unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
            if isinstance(request, Malformed):
                await _refuse(context, request)
            return await inner_uu(request, context)

        return grpc.unary_unary_rpc_method_handler(unary_unary, deserializer, serializer)
    if handler.unary_stream is not None:
        inner_us = handler.unary_stream
        if inspect.isasyncgenfunction(inner_us):

            async def unary_stream_gen(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
                if isinstance(request, Malformed):
                    await _refuse(context, request)
                async for response in inner_us(request, context):
                    yield response

            return grpc.unary_stream_rpc_method_handler(unary_stream_gen, deserializer, serializer)

        async def unary_stream(request: Any, context: grpc.aio.ServicerContext) -> Any:
            if isinstance(request, Malformed):
                await _refuse(context, request)
            return await inner_us(request, context)

        return grpc.unary_stream_rpc_method_handler(unary_stream, deserializer, serializer)
    # A client stream's servicer takes its messages as they come, a `Malformed` among them
    # (the agent stream drops such a one): only the deserializer changes, and the servicer is
    # registered as it is, with no extra hop per message.
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(handler.stream_unary, deserializer, serializer)
    return grpc.stream_stream_rpc_method_handler(handler.stream_stream, deserializer, serializer)


class MalformedRequests(grpc.aio.ServerInterceptor):
    def __init__(self) -> None:
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method: str = handler_call_details.method  # type: ignore[attr-defined]
        known = self._wrapped.get(method)
        if known is not None and known[0] is handler:
            return known[1]
        wrapped = wrap_handler(handler)
        self._wrapped[method] = (handler, wrapped)
        return wrapped

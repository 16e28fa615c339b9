"""The engine process's side of the relay: each front's batches of unary calls, answered by the
very handlers registered on the gRPC server, in batches.

`HandlerRecorder` stands in for the server while the services are added, so the relay and
the server share one table of handlers. A relayed call runs its handler with a `RelayedContext`
that keeps what the handler sets (status, details, trailing metadata); its outcome goes back
to the front, which ends its client's call with it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any, NoReturn

import grpc
from fedbroker.v1 import relay_service_pb2 as pb
from fedbroker.v1 import relay_service_pb2_grpc
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from broker import batching, telemetry
from broker.api.malformed import wrap_handler
from broker.observability.grpc_tracing import traced
from broker.relay import protocol

log = logging.getLogger("fedbroker.relay")


class HandlerRecorder:
    """Passed to the generated `add_*Servicer_to_server` functions in the server's place: the
    server gets the services, and the recorder keeps each method's handler by its full path."""

    def __init__(self, server: grpc.aio.Server) -> None:
        self.server = server
        self.handlers: dict[str, grpc.RpcMethodHandler] = {}

    def add_generic_rpc_handlers(self, handlers: Iterable[grpc.GenericRpcHandler]) -> None:
        self.server.add_generic_rpc_handlers(handlers)

    def add_registered_method_handlers(
        self, service: str, handlers: Mapping[str, grpc.RpcMethodHandler]
    ) -> None:
        self.server.add_registered_method_handlers(service, handlers)  # type: ignore[attr-defined]
        for name, handler in handlers.items():
            self.handlers[f"/{service}/{name}"] = wrap_handler(handler)


class RelayedContext:
    """The part of `grpc.aio.ServicerContext` the broker's unary handlers use."""

    __slots__ = ("_metadata", "code", "details", "trailing")

    def __init__(self, metadata: tuple[tuple[str, str | bytes], ...]) -> None:
        self._metadata = metadata
        self.code = grpc.StatusCode.OK
        self.details = ""
        self.trailing: protocol.Metadata = ()

    def invocation_metadata(self) -> tuple[tuple[str, str | bytes], ...]:
        return self._metadata

    def set_trailing_metadata(self, metadata: protocol.Metadata) -> None:
        self.trailing = tuple(metadata)

    def set_code(self, code: grpc.StatusCode) -> None:
        self.code = code

    def set_details(self, details: str) -> None:
        self.details = details

    async def abort(self, code: grpc.StatusCode, details: str = "", trailing_metadata: Any = ()) -> NoReturn:
        self.code, self.details = code, details
        if trailing_metadata:
            self.trailing = tuple(trailing_metadata)
        raise grpc.aio.AbortError()


class RelayService(relay_service_pb2_grpc.RelayServiceServicer):
    """Serves the fronts' relay streams on the engine process's private socket."""

    def __init__(self, handlers: Mapping[str, grpc.RpcMethodHandler]) -> None:
        self._handlers = handlers

    async def Relay(
        self, request_iterator: AsyncIterator[pb.RelayCalls], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.RelayReplies]:
        await context.send_initial_metadata(())  # the front's sign that the stream is up
        replies: asyncio.Queue[pb.RelayReply | None] = asyncio.Queue()
        running: dict[int, asyncio.Task[None]] = {}  # this stream's calls, by the front's id

        async def read() -> None:
            async for message in request_iterator:
                for call in message.calls:
                    if call.cancel:
                        task = running.get(call.id)
                        if task is not None:
                            task.cancel()  # as gRPC cancels a direct call's handler
                        continue
                    task = asyncio.create_task(self._answer(call, replies))
                    running[call.id] = task
                    task.add_done_callback(functools.partial(_forget, running, call.id))

        reader = asyncio.create_task(read(), name="relay reader")
        # The front's end of the stream ends ours: calls still running finish (a Submit's commit
        # is not undone) and their replies go nowhere; the front told its callers UNAVAILABLE.
        reader.add_done_callback(lambda _: replies.put_nowait(None))
        batched: AsyncIterator[list[pb.RelayReply]] = batching.batches(
            replies, limit=protocol.RELAY_BATCH_BYTES
        )
        try:
            async for batch in batched:
                yield pb.RelayReplies(replies=batch)
        finally:
            reader.cancel()

    async def _answer(self, call: pb.RelayCall, replies: asyncio.Queue[pb.RelayReply | None]) -> None:
        try:
            async with asyncio.timeout(call.timeout_s if call.HasField("timeout_s") else None):
                reply = await self.answer(call)
        except TimeoutError:
            reply = protocol.status_reply(call.id, grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")
        replies.put_nowait(reply)

    async def answer(self, call: pb.RelayCall) -> pb.RelayReply:
        """Run the call's handler as the gRPC server would, and say how it ended."""
        handler = self._handlers.get(call.method)
        if handler is None or handler.unary_unary is None:
            missing = f"Method not found: {call.method}"
            return protocol.status_reply(call.id, grpc.StatusCode.UNIMPLEMENTED, missing)
        context = RelayedContext(protocol.from_wire(call.metadata))
        try:
            request = handler.request_deserializer(call.request)
            if telemetry.traces_exported() and traced(call.method):
                response = await self._traced(call.method, handler, request, context)
            else:
                response = await handler.unary_unary(request, context)
            if context.code == grpc.StatusCode.OK:
                return pb.RelayReply(
                    id=call.id,
                    code=grpc.StatusCode.OK.value[0],
                    trailing=protocol.to_wire(context.trailing),
                    response=handler.response_serializer(response),
                )
        except grpc.aio.AbortError:
            pass
        except Exception:
            if context.code == grpc.StatusCode.OK:  # as gRPC does: a code the handler set stands
                log.exception("relayed %s failed", call.method)  # handlers turn their errors into statuses
                context.code, context.details = grpc.StatusCode.UNKNOWN, "Unexpected error in the broker"
        try:
            trailing = protocol.to_wire(context.trailing)
        except (TypeError, AttributeError, UnicodeError):
            log.exception("relayed %s set trailing metadata that cannot be sent", call.method)
            trailing = []
        reply = protocol.status_reply(call.id, context.code, context.details)
        reply.trailing.extend(trailing)
        return reply

    @staticmethod
    async def _traced(
        method: str, handler: grpc.RpcMethodHandler, request: Any, context: RelayedContext
    ) -> Any:
        """The call's server span, as gRPC's instrumentation makes it for a direct call (the front
        makes none): a child of the caller's span, with the same name and attributes."""
        carrier = {k: v for k, v in context.invocation_metadata() if isinstance(v, str)}
        service, _, name = method[1:].partition("/")
        attributes = {"rpc.system": "grpc", "rpc.service": service, "rpc.method": name}
        with telemetry.tracer().start_as_current_span(
            method,
            context=telemetry.extract(carrier),
            kind=trace.SpanKind.SERVER,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            code = grpc.StatusCode.UNKNOWN  # unless the handler returns or aborts
            try:
                response = await handler.unary_unary(request, context)
                code = context.code
                return response
            except grpc.aio.AbortError:
                code = context.code
                raise
            except Exception as error:
                code = context.code if context.code != grpc.StatusCode.OK else grpc.StatusCode.UNKNOWN
                span.record_exception(error)
                raise
            finally:
                span.set_attribute("rpc.grpc.status_code", code.value[0])
                if code != grpc.StatusCode.OK:
                    span.set_status(Status(StatusCode.ERROR, context.details or code.name))


def _forget(running: dict[int, asyncio.Task[None]], call_id: int, _: asyncio.Task[None]) -> None:
    running.pop(call_id, None)

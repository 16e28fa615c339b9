"""A front process: the broker's public gRPC endpoint, in a process of its own.

Started by `fedbroker serve --fronts N` (never by hand): `python -m broker.relay.front`. It
binds the public address (with its siblings, through SO_REUSEPORT), ends TLS, and hands every
call to the engine process on its Unix socket: unary calls in batches over one relay stream,
streaming calls one for one. It parses no request and checks no token: the engine process
does both, as for a direct call, so a front holds no state and no secret but the TLS key.
It prints `ready <port>` once serving, and exits when its parent does.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
from fedbroker.v1 import (
    agent_service_pb2,
    operator_service_pb2,
    relay_service_pb2_grpc,
    site_service_pb2,
    usage_service_pb2,
    workload_service_pb2,
)
from fedbroker.v1 import relay_service_pb2 as pb
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2

from broker import batching, eventloop
from broker.api.limits import SERVER_OPTIONS
from broker.relay import protocol
from broker.tls import CertificateReloader, ServerTls, peer_names

log = logging.getLogger("fedbroker.front")

SERVICES = (
    workload_service_pb2.DESCRIPTOR.services_by_name["WorkloadService"],
    site_service_pb2.DESCRIPTOR.services_by_name["SiteService"],
    agent_service_pb2.DESCRIPTOR.services_by_name["AgentService"],
    usage_service_pb2.DESCRIPTOR.services_by_name["UsageService"],
    operator_service_pb2.DESCRIPTOR.services_by_name["OperatorService"],
    health_pb2.DESCRIPTOR.services_by_name["Health"],
    reflection_pb2.DESCRIPTOR.services_by_name["ServerReflection"],
)
# Under load a call waits this long for others to join its batch (each relay message costs the
# engine's loop ~40 µs to read); "under load" is the last batch leaving within BUSY_S.
LINGER_S = 0.001
BUSY_S = 0.003
RECONNECT_S = 0.2  # between tries of the engine's socket: it is on this host, or restarting
PARENT_CHECK_S = 1.0
GRACE_S = 2.0
UNREACHABLE = "the broker's engine process is not reachable from its front; retry"
# Client streams whose engine side sends its headers once the caller's credential is accepted,
# then answers the first message before it reads another (the agents' Hello, then Welcome).
HANDSHAKES = frozenset({"/fedbroker.v1.AgentService/Connect"})


def _unavailable(call_id: int) -> pb.RelayReply:
    return protocol.status_reply(call_id, grpc.StatusCode.UNAVAILABLE, UNREACHABLE)


class Relayer:
    """One stream to the engine process, carrying this front's unary calls both ways in batches.
    A broken stream fails its calls in flight with UNAVAILABLE (a Submit is retried with its
    request id, so none is lost or doubled), and is opened again."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._open = relay_service_pb2_grpc.RelayServiceStub(channel).Relay
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[pb.RelayReply]] = {}
        self._outbox: asyncio.Queue[pb.RelayCall | None] | None = None  # None: no stream now
        self.connected = asyncio.Event()

    async def call(
        self, method: str, metadata: list[pb.Metadatum], request: bytes, timeout_s: float | None = None
    ) -> pb.RelayReply:
        call_id = next(self._ids)
        outbox = self._outbox
        if outbox is None:
            return _unavailable(call_id)
        future: asyncio.Future[pb.RelayReply] = asyncio.get_running_loop().create_future()
        self._pending[call_id] = future
        outbox.put_nowait(
            pb.RelayCall(id=call_id, method=method, metadata=metadata, request=request, timeout_s=timeout_s)
        )
        try:
            return await future
        finally:
            self._pending.pop(call_id, None)
            answered = future.done() and not future.cancelled()
            if not answered and outbox is self._outbox:  # the caller went away: so does the call
                outbox.put_nowait(pb.RelayCall(id=call_id, cancel=True))

    async def run(self) -> None:
        while True:
            await self._stream()
            await asyncio.sleep(RECONNECT_S)

    async def _stream(self) -> None:
        outbox: asyncio.Queue[pb.RelayCall | None] = asyncio.Queue()

        async def calls() -> AsyncIterator[pb.RelayCalls]:
            batched: AsyncIterator[list[pb.RelayCall]] = batching.batches(
                outbox, limit=protocol.RELAY_BATCH_BYTES, linger_s=LINGER_S, busy_s=BUSY_S
            )
            async for batch in batched:
                yield pb.RelayCalls(calls=batch)

        stream = self._open(calls())
        try:
            await stream.initial_metadata()  # the engine's side sends it at once: the stream is up
            self._outbox = outbox
            self.connected.set()
            log.info("relaying to the engine process")
            async for message in stream:
                for reply in message.replies:
                    future = self._pending.get(reply.id)
                    if future is not None and not future.done():
                        future.set_result(reply)
            log.warning("the engine process ended the relay stream")
        except grpc.aio.AioRpcError as error:
            if self.connected.is_set():
                log.warning("relay stream to the engine process lost: %s", error.code().name)
        finally:
            self._outbox = None
            self.connected.clear()
            outbox.put_nowait(None)
            stream.cancel()
            for call_id, future in list(self._pending.items()):
                if not future.done():
                    future.set_result(_unavailable(call_id))


class FrontHandler(grpc.GenericRpcHandler):
    """Every method of the broker's services: unary ones relayed, streaming ones passed through."""

    def __init__(self, channel: grpc.aio.Channel, relayer: Relayer) -> None:
        self._channel = channel
        self._relayer = relayer
        self._handlers: dict[str, grpc.RpcMethodHandler] = {}
        for service in SERVICES:
            for method in service.methods:
                path = f"/{service.full_name}/{method.name}"
                if not (method.client_streaming or method.server_streaming):
                    self._handlers[path] = grpc.unary_unary_rpc_method_handler(self._relayed(path))
                elif method.client_streaming:
                    self._handlers[path] = grpc.stream_stream_rpc_method_handler(self._bidi_streaming(path))
                else:
                    self._handlers[path] = grpc.unary_stream_rpc_method_handler(self._server_streaming(path))

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        return self._handlers.get(handler_call_details.method)  # type: ignore[attr-defined]

    def _relayed(self, path: str) -> Callable[[bytes, grpc.aio.ServicerContext], Any]:
        async def relayed(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            metadata = protocol.to_wire(forwarded(context))
            reply = await self._relayer.call(path, metadata, request, context.time_remaining())
            if reply.trailing:
                context.set_trailing_metadata(protocol.from_wire(reply.trailing))
            if reply.code:
                await context.abort(protocol.STATUS_BY_NUMBER[reply.code], reply.details)
            return reply.response

        return relayed

    def _server_streaming(
        self, path: str
    ) -> Callable[[bytes, grpc.aio.ServicerContext], AsyncIterator[bytes]]:
        open_call = self._channel.unary_stream(path)

        async def passed(request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
            call = open_call(request, metadata=forwarded(context), timeout=context.time_remaining())
            try:
                async for response in call:
                    yield response
            except grpc.aio.AioRpcError as error:
                await _end_as(context, error, self._relayer.connected.is_set())
            finally:
                call.cancel()

        return passed

    def _bidi_streaming(
        self, path: str
    ) -> Callable[[AsyncIterator[bytes], grpc.aio.ServicerContext], AsyncIterator[bytes]]:
        open_call = self._channel.stream_stream(path)
        handshake = path in HANDSHAKES

        async def passed(
            requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext
        ) -> AsyncIterator[bytes]:
            call = open_call(metadata=forwarded(context), timeout=context.time_remaining())
            answered = asyncio.Event()
            pump: asyncio.Task[None] | None = None
            try:
                if handshake:
                    await call.initial_metadata()  # the engine took the credential, or refused it
                    if call.done():
                        await _end_as(context, await _status_of(call), True)
                pump = asyncio.create_task(_pump(requests, call, answered if handshake else None))
                async for response in call:
                    answered.set()
                    yield response
            except grpc.aio.AioRpcError as error:
                await _end_as(context, error, self._relayer.connected.is_set())
            finally:
                if pump is not None:
                    pump.cancel()
                call.cancel()

        return passed


async def _pump(
    requests: AsyncIterator[bytes], call: grpc.aio.StreamStreamCall, answered: asyncio.Event | None
) -> None:
    """The caller's messages to the engine process. With a handshake, the first goes alone and
    the rest wait for the engine's first answer: a refusal of the first (a Hello for another
    site) then never races a write, which gRPC would report as INTERNAL instead of the refusal."""
    try:
        first = True
        async for message in requests:
            if not first and answered is not None:
                await answered.wait()
            first = False
            if call.done():
                return
            await call.write(message)
        await call.done_writing()
    except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
        return  # the call ended: its status is the engine's, read by the response side


async def _status_of(call: grpc.aio.StreamStreamCall) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(
        await call.code(),
        await call.initial_metadata(),
        await call.trailing_metadata(),
        details=await call.details(),
    )


async def _end_as(context: grpc.aio.ServicerContext, error: grpc.aio.AioRpcError, reachable: bool) -> None:
    """End the caller's call as the engine process ended ours, trailing metadata and all. While
    the engine's socket is unreachable (the relay stream is down too), gRPC's own words for that
    (which name the socket's path) become ours."""
    trailing = error.trailing_metadata()
    if trailing:
        context.set_trailing_metadata(tuple(trailing))
    code, details = error.code(), error.details() or ""
    if code == grpc.StatusCode.UNAVAILABLE and not (reachable and details):
        details = UNREACHABLE
    await context.abort(code, details)


def forwarded(context: grpc.aio.ServicerContext) -> list[tuple[str, str | bytes]]:
    """The caller's metadata for the engine process: the keys only a front may set are dropped,
    then set from what the front knows (the caller's verified certificate names). The caller's
    trace context goes as it came: the engine process makes the call's server span."""
    metadata = [
        (key, value)
        for key, value in context.invocation_metadata() or ()
        if not key.startswith(protocol.TRUSTED_PREFIX)
    ]
    metadata.extend((protocol.PEER_SAN_KEY, name) for name in peer_names(context.auth_context()))
    return metadata


async def serve(listen: str, upstream: str, tls: ServerTls | None, parent: int) -> None:
    channel = grpc.aio.insecure_channel(upstream, options=protocol.RELAY_OPTIONS)
    relayer = Relayer(channel)
    relaying = asyncio.create_task(relayer.run(), name="relay")
    try:  # before the port: a front that cannot relay yet must not take callers from its siblings
        await asyncio.wait_for(relayer.connected.wait(), 30)
    except TimeoutError:
        print(f"error: the engine process did not answer on {upstream}", flush=True)
        raise SystemExit(1) from None
    server = grpc.aio.server(options=[("grpc.so_reuseport", 1), *SERVER_OPTIONS])
    server.add_generic_rpc_handlers((FrontHandler(channel, relayer),))
    reloader = CertificateReloader(tls) if tls is not None else None
    try:
        if reloader is not None:
            port = server.add_secure_port(listen, reloader.credentials())
        else:
            port = server.add_insecure_port(listen)
    except RuntimeError:
        print(f"error: cannot listen on {listen}: address in use or not valid", flush=True)
        raise SystemExit(1) from None
    await server.start()
    print(f"ready {port}", flush=True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if reloader is not None:
        loop.add_signal_handler(signal.SIGHUP, reloader.request_reload)

    async def orphaned() -> None:
        while os.getppid() == parent:
            await asyncio.sleep(PARENT_CHECK_S)
        log.warning("the broker's engine process is gone; this front stops")
        stop.set()

    watching = asyncio.create_task(orphaned())
    await stop.wait()
    watching.cancel()
    await server.stop(grace=GRACE_S)
    relaying.cancel()
    await channel.close()


def _die_with_parent() -> None:
    """Linux: the kernel kills this front the moment its engine process dies (a kill -9 too), so
    the public port is free at once for the broker that replaces it. Elsewhere the front
    notices within PARENT_CHECK_S."""
    if sys.platform == "linux":
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


def main(argv: list[str] | None = None) -> None:
    from broker.observability.logs import setup_logging

    parser = argparse.ArgumentParser(prog="python -m broker.relay.front", description=__doc__)
    parser.add_argument("--listen", required=True)
    parser.add_argument("--upstream", required=True, help="the engine process's unix: address")
    parser.add_argument("--tls-cert", type=Path)
    parser.add_argument("--tls-key", type=Path)
    parser.add_argument("--tls-client-ca", type=Path)
    parser.add_argument("--parent-pid", type=int, required=True, help="the engine process (exit with it)")
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--log-format", default="text")
    args = parser.parse_args(argv)
    _die_with_parent()
    setup_logging(args.log_level, args.log_format)
    tls = ServerTls(args.tls_cert, args.tls_key, args.tls_client_ca) if args.tls_cert else None
    eventloop.run(serve(args.listen, args.upstream, tls, args.parent_pid))


if __name__ == "__main__":
    main()

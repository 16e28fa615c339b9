"""The relay's two ends over real gRPC on a Unix socket: a relayed call ends as the handler
ended it (response, code, details, trailing metadata), and a lost engine process is a defined
UNAVAILABLE for the calls in flight, never a hang."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from fedbroker.v1 import relay_service_pb2 as pb
from fedbroker.v1 import relay_service_pb2_grpc
from grpc_health.v1 import health_pb2

from broker import errors
from broker.api.malformed import wrap_handler
from broker.api.status import abort
from broker.relay import protocol
from broker.relay.front import Relayer
from broker.relay.service import RelayService

CHECK = "/grpc.health.v1.Health/Check"


async def _check(request: health_pb2.HealthCheckRequest, context: Any) -> health_pb2.HealthCheckResponse:
    """A handler that uses what the broker's handlers use: metadata, aborts with trailing metadata."""
    metadata = dict(context.invocation_metadata())
    if request.service == "standby":
        await abort(context, errors.Standby("on standby", retry_within_s=2.5))
    if request.service == "bug":
        raise RuntimeError("a bug, with a secret in its words")
    if metadata.get("authorization") != "Bearer ok":
        await abort(context, errors.Unauthenticated("no such token"))
    return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)


HANDLERS = {
    CHECK: wrap_handler(
        grpc.unary_unary_rpc_method_handler(
            _check, health_pb2.HealthCheckRequest.FromString, health_pb2.HealthCheckResponse.SerializeToString
        )
    )
}


def _call(service: str, token: str = "ok", method: str = CHECK, request: bytes | None = None) -> pb.RelayCall:
    body = health_pb2.HealthCheckRequest(service=service).SerializeToString() if request is None else request
    metadata = protocol.to_wire([("authorization", f"Bearer {token}"), ("trace-bin", b"\x00\xff")])
    return pb.RelayCall(id=7, method=method, metadata=metadata, request=body)


def test_a_relayed_call_ends_as_its_handler_ended_it() -> None:
    asyncio.run(_ends_as_its_handler_ended_it())


async def _ends_as_its_handler_ended_it() -> None:
    relay = RelayService(HANDLERS)
    served = await relay.answer(_call("fedbroker"))
    assert (served.id, served.code) == (7, 0)
    assert health_pb2.HealthCheckResponse.FromString(served.response).status == 1

    refused = await relay.answer(_call("fedbroker", token="wrong"))
    assert refused.code == grpc.StatusCode.UNAUTHENTICATED.value[0]
    assert refused.details == "no such token"

    standby = await relay.answer(_call("standby"))
    assert standby.code == grpc.StatusCode.UNAVAILABLE.value[0]
    assert dict(protocol.from_wire(standby.trailing)) == {
        "fedbroker-role": "standby",
        "fedbroker-retry-within-s": "2.5",
    }

    malformed = await relay.answer(_call("", request=b"\xff\xff\xff"))
    assert malformed.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert "not a valid grpc.health.v1.HealthCheckRequest message" in malformed.details

    unknown = await relay.answer(_call("", method="/grpc.health.v1.Health/Nope"))
    assert unknown.code == grpc.StatusCode.UNIMPLEMENTED.value[0]


def test_a_handlers_bug_is_unknown_in_plain_words(caplog: pytest.LogCaptureFixture) -> None:
    reply = asyncio.run(RelayService(HANDLERS).answer(_call("bug")))
    assert reply.code == grpc.StatusCode.UNKNOWN.value[0]
    assert "secret" not in reply.details
    assert "a bug, with a secret" in caplog.text  # logged with its traceback in the engine process


def test_metadata_keeps_text_and_binary_values() -> None:
    pairs = [("authorization", "Bearer é"), ("trace-bin", b"\x00\xff")]
    assert protocol.from_wire(protocol.to_wire(pairs)) == tuple(pairs)


async def _serve(path: Path, servicer: relay_service_pb2_grpc.RelayServiceServicer) -> grpc.aio.Server:
    server = grpc.aio.server()
    relay_service_pb2_grpc.add_RelayServiceServicer_to_server(servicer, server)
    server.add_insecure_port(f"unix:{path}")
    await server.start()
    return server


@contextlib.asynccontextmanager
async def _front(path: Path) -> AsyncIterator[Relayer]:
    """A front's relay to the engine's socket at `path`, connected."""
    channel = grpc.aio.insecure_channel(f"unix:{path}")
    relayer = Relayer(channel)
    relaying = asyncio.create_task(relayer.run())
    try:
        await asyncio.wait_for(relayer.connected.wait(), 10)
        yield relayer
    finally:
        relaying.cancel()
        await channel.close()


def test_calls_in_flight_when_the_engine_goes_get_unavailable(tmp_path: Path) -> None:
    asyncio.run(_in_flight_get_unavailable(tmp_path))


async def _in_flight_get_unavailable(tmp_path: Path) -> None:
    answering = asyncio.Event()

    async def never(request: health_pb2.HealthCheckRequest, context: Any) -> None:
        answering.set()
        await asyncio.Event().wait()  # the engine process is busy, then dies

    stuck = {CHECK: grpc.unary_unary_rpc_method_handler(never, health_pb2.HealthCheckRequest.FromString)}
    socket = tmp_path / "engine.sock"
    servers = [await _serve(socket, RelayService(stuck))]
    try:
        async with _front(socket) as relayer:
            call = asyncio.create_task(relayer.call(CHECK, [], b""))
            await asyncio.wait_for(answering.wait(), 10)
            await servers[0].stop(grace=None)
            reply = await asyncio.wait_for(call, 10)
            assert reply.code == grpc.StatusCode.UNAVAILABLE.value[0]
            assert "engine process is not reachable" in reply.details
            # While it is down, a new call is refused at once rather than queued.
            reply = await asyncio.wait_for(relayer.call(CHECK, [], b""), 2)
            assert reply.code == grpc.StatusCode.UNAVAILABLE.value[0]
            # It comes back (same socket): the front relays again, without a restart of its own.
            servers.append(await _serve(socket, RelayService(HANDLERS)))
            await asyncio.wait_for(relayer.connected.wait(), 10)
            metadata = protocol.to_wire([("authorization", "Bearer ok")])
            reply = await asyncio.wait_for(relayer.call(CHECK, metadata, b""), 10)
            assert reply.code == 0
    finally:
        for server in servers:
            await server.stop(grace=None)


def test_a_callers_deadline_and_cancel_reach_the_handler(tmp_path: Path) -> None:
    """As gRPC stops a direct call's handler when its caller's deadline passes or it cancels,
    the relay stops a relayed one: the handler sees CancelledError, and no work is left behind."""
    asyncio.run(_deadline_and_cancel(tmp_path))


async def _deadline_and_cancel(tmp_path: Path) -> None:
    started: list[str] = []
    stopped: list[str] = []

    async def slow(request: health_pb2.HealthCheckRequest, context: Any) -> None:
        started.append(request.service)
        try:
            await asyncio.Event().wait()
        finally:
            stopped.append(request.service)

    handlers = {CHECK: grpc.unary_unary_rpc_method_handler(slow, health_pb2.HealthCheckRequest.FromString)}
    socket = tmp_path / "engine.sock"
    server = await _serve(socket, RelayService(handlers))
    try:
        async with _front(socket) as relayer:
            timed = health_pb2.HealthCheckRequest(service="timed").SerializeToString()
            reply = await asyncio.wait_for(relayer.call(CHECK, [], timed, timeout_s=0.2), 10)
            assert reply.code == grpc.StatusCode.DEADLINE_EXCEEDED.value[0]
            assert stopped == ["timed"]

            gone = health_pb2.HealthCheckRequest(service="gone").SerializeToString()
            caller = asyncio.create_task(relayer.call(CHECK, [], gone))
            while "gone" not in started:
                await asyncio.sleep(0.01)
            caller.cancel()  # the front's caller went away
            for _ in range(200):
                if "gone" in stopped:
                    break
                await asyncio.sleep(0.01)
            assert stopped == ["timed", "gone"]
    finally:
        await server.stop(grace=None)


def test_trailing_metadata_of_a_successful_call_comes_back() -> None:
    async def with_trailer(
        request: health_pb2.HealthCheckRequest, context: Any
    ) -> health_pb2.HealthCheckResponse:
        context.set_trailing_metadata((("fedbroker-note", "kept"),))
        return health_pb2.HealthCheckResponse()

    handlers = {
        CHECK: grpc.unary_unary_rpc_method_handler(
            with_trailer,
            health_pb2.HealthCheckRequest.FromString,
            health_pb2.HealthCheckResponse.SerializeToString,
        )
    }
    reply = asyncio.run(RelayService(handlers).answer(_call("")))
    assert reply.code == 0
    assert dict(protocol.from_wire(reply.trailing)) == {"fedbroker-note": "kept"}


def test_the_fronts_serve_every_service_the_broker_registers() -> None:
    """A service added to the broker but not to the fronts' list would be UNIMPLEMENTED behind
    fronts only: the two lists must name the same services."""
    from grpc_health.v1 import health
    from grpc_reflection.v1alpha import reflection

    from broker.relay.front import SERVICES
    from broker.server import SERVICE_NAMES

    served = {service.full_name for service in SERVICES}
    assert served == {*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME}

"""gRPC server spans from the OpenTelemetry gRPC instrumentation, for the broker's RPCs.

Installed only when traces are exported: an interceptor on every call is a cost the hot path
should not pay for spans that go nowhere. The agents' `Connect` stream (open for the
agent's lifetime: a span of days that says nothing) and the health and reflection services
(probed every few seconds) are left out.
"""

from __future__ import annotations

from typing import Any

UNTRACED_METHODS = frozenset(
    {
        "/fedbroker.v1.AgentService/Connect",
        "/fedbroker.v1.RelayService/Relay",  # a front's stream of batches: its calls have spans
    }
)
UNTRACED_SERVICES = ("/grpc.health.v1.Health/", "/grpc.reflection.")


def traced(method: str) -> bool:
    """Whether a call of `method` (its full path) gets a server span: here, and for the calls a
    front relays (broker/relay/service.py), one rule."""
    return method not in UNTRACED_METHODS and not method.startswith(UNTRACED_SERVICES)


def instrument_grpc_server() -> None:
    """Patch `grpc.aio.server` so servers created from now on trace each RPC."""
    from opentelemetry.instrumentation.grpc import GrpcAioInstrumentorServer

    def wanted(details: Any) -> bool:  # grpc.aio hands the filter its own HandlerCallDetails
        return traced(details.method)

    GrpcAioInstrumentorServer(filter_=wanted).instrument()

"""gRPC server spans from the OpenTelemetry gRPC instrumentation, for the broker's RPCs.

Installed only when traces are exported: an interceptor on every call is a cost the hot path
should not pay for spans that go nowhere. The agents' `Connect` stream (open for the
agent's lifetime: a span of days that says nothing) and the health and reflection services
(probed every few seconds) are left out.
"""

from __future__ import annotations


def instrument_grpc_server() -> None:
    """Patch `grpc.aio.server` so servers created from now on trace each RPC."""
    from opentelemetry.instrumentation.grpc import GrpcAioInstrumentorServer, filters

    untraced = filters.any_of(
        filters.method_name("Connect"),
        filters.method_name("Relay"),  # a front's stream of batches (broker/relay): its calls have spans
        filters.health_check(),
        filters.service_prefix("grpc.reflection"),
    )
    GrpcAioInstrumentorServer(filter_=filters.negate(untraced)).instrument()

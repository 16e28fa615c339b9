"""OpenTelemetry set-up shared by the broker and the site agents.

Exporters follow the standard variables: ``OTEL_TRACES_EXPORTER`` = ``otlp`` |
``console`` | ``none`` (default ``none`` here, so a laptop demo does not retry a
collector that is not there), and ``OTEL_EXPORTER_OTLP_*`` for OTLP.
Context travels between processes as a W3C ``traceparent`` carrier (a dict).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from opentelemetry import context, propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
)

_configured = False


def setup_tracing(service_name: str) -> None:
    """Install the global tracer provider once per process."""
    global _configured
    if _configured:
        return
    _configured = True
    name = os.environ.get("OTEL_SERVICE_NAME", service_name)
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    for exporter in os.environ.get("OTEL_TRACES_EXPORTER", "none").split(","):
        match exporter.strip():
            case "console":
                provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
            case "otlp":
                from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

                provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
            case _:
                pass
    trace.set_tracer_provider(provider)


def tracer(name: str = "fedbroker") -> trace.Tracer:
    return trace.get_tracer(name)


def inject(span: trace.Span | None = None) -> dict[str, str]:
    """The W3C carrier (``traceparent``, maybe ``tracestate``) for span, or the current one."""
    carrier: dict[str, str] = {}
    ctx = trace.set_span_in_context(span) if span is not None else None
    propagate.inject(carrier, context=ctx)
    return carrier


def extract(carrier: Mapping[str, str]) -> context.Context:
    return propagate.extract(dict(carrier))


def trace_id_hex(span: trace.Span) -> str:
    return format(span.get_span_context().trace_id, "032x")

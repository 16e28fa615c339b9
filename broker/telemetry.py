"""OpenTelemetry set-up shared by the broker and the site agents.

Exporters follow the standard variables: ``OTEL_TRACES_EXPORTER`` = ``otlp`` |
``console`` | ``none`` (default ``none`` here, so a laptop demo does not retry a
collector that is not there), and ``OTEL_EXPORTER_OTLP_*`` for OTLP; an unknown name
raises `TelemetryConfigError` (see `broker.observability.otel_env`). The resource comes
from ``OTEL_SERVICE_NAME`` and ``OTEL_RESOURCE_ATTRIBUTES``.
Context travels between processes as a W3C ``traceparent`` carrier (a dict).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

from opentelemetry import context, propagate, trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
)

from broker.observability import otel_env

_configured = False
_exported = False  # some span exporter is installed (spans go somewhere)


def setup_tracing(service_name: str) -> None:
    """Install the global tracer provider once per process."""
    global _configured, _exported
    if _configured:
        return
    names = otel_env.exporters("OTEL_TRACES_EXPORTER", otel_env.TRACES_EXPORTERS)  # raises on a typo
    _configured, _exported = True, bool(names)
    provider = TracerProvider(resource=otel_env.resource(service_name))
    for exporter in names:
        match exporter:
            case "console":
                provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
            case "otlp":
                from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

                provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)


def tracing_configured() -> bool:
    """Whether `setup_tracing` ran in this process (its provider is the global one)."""
    return _configured


def traces_exported() -> bool:
    """Whether `setup_tracing` installed an exporter (optional spans are worth making)."""
    return _exported


@functools.cache
def tracer(name: str = "fedbroker") -> trace.Tracer:
    # Cached: the API builds a new Tracer on every call, which cost ~5% of a submit.
    return trace.get_tracer(name)


def inject(span: trace.Span | None = None) -> dict[str, str]:
    """The W3C carrier (``traceparent``, maybe ``tracestate``) for span, or the current one."""
    carrier: dict[str, str] = {}
    ctx = trace.set_span_in_context(span) if span is not None else None
    propagate.inject(carrier, context=ctx)
    return carrier


def extract(carrier: Mapping[str, str]) -> context.Context:
    return propagate.extract(dict(carrier))


@functools.lru_cache(maxsize=4096)
def parent(traceparent: str) -> context.Context:
    """The context of a stored W3C ``traceparent``; cached, as a workload's spans share one."""
    return propagate.extract({"traceparent": traceparent})


def trace_id_hex(span: trace.Span) -> str:
    return format(span.get_span_context().trace_id, "032x")

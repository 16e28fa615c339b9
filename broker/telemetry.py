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
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

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


_ids = RandomIdGenerator()


def span_carrier(
    name: str, attributes: Mapping[str, str | int], traceparent: str | None = None
) -> dict[str, str]:
    """The W3C carrier of a new span that starts and ends at once: a child of ``traceparent``,
    or the root of a new trace when it is None.

    When no exporter is installed the span would go nowhere, so only its ids are made (the
    carrier still ties the workload's later spans, the agent's and the job's, to one trace id,
    which logs name): building and ending an SDK span cost ~5% of a submit (bench/e2e.py).
    The ``traceparent`` is W3C trace context version 00, written here in one line."""
    if _exported:
        context = parent(traceparent) if traceparent else _NEW_TRACE
        span = tracer().start_span(name, context=context, attributes=attributes)
        carrier = inject(span)
        span.end()
        return carrier
    trace_id = _trace_id(traceparent) if traceparent else 0
    trace_id = trace_id or _ids.generate_trace_id()
    return {"traceparent": f"00-{trace_id:032x}-{_ids.generate_span_id():016x}-01"}


def _trace_id(traceparent: str) -> int:
    """The trace id of a W3C ``traceparent`` (0 when it is not one)."""
    try:
        return int(traceparent[3:35], 16) if len(traceparent) == 55 else 0
    except ValueError:
        return 0


def carrier_trace_id(carrier: Mapping[str, str]) -> str:
    """The trace id (32 hex digits) of a W3C carrier."""
    return carrier["traceparent"][3:35]


def carrier_span_id(carrier: Mapping[str, str]) -> str:
    """The span id (16 hex digits) of a W3C carrier."""
    return carrier["traceparent"][36:52]


_NEW_TRACE = trace.set_span_in_context(trace.INVALID_SPAN)  # a span started in it starts a new trace

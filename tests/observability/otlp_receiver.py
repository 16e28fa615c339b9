"""A small OTLP/gRPC receiver on the official opentelemetry-proto service definitions.

It stands where an OpenTelemetry Collector would: the broker and agents export to it
over real gRPC (``OTEL_EXPORTER_OTLP_ENDPOINT``), and tests read back what arrived.
"""

from __future__ import annotations

import threading
from concurrent import futures
from dataclasses import dataclass
from typing import Any

import grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue


def value_of(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [value_of(v) for v in value.array_value.values]
    return getattr(value, kind) if kind else None


def attributes(pairs: list[KeyValue] | Any) -> dict[str, Any]:
    return {kv.key: value_of(kv.value) for kv in pairs}


@dataclass(frozen=True)
class ReceivedSpan:
    service: str
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    attributes: dict[str, Any]
    events: list[tuple[str, dict[str, Any]]]
    status_code: int
    kind: int = 0  # opentelemetry.proto.trace.v1.Span.SpanKind: 2 server, 3 client


class OtlpReceiver(
    trace_service_pb2_grpc.TraceServiceServicer, metrics_service_pb2_grpc.MetricsServiceServicer
):
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spans: list[ReceivedSpan] = []
        self._metrics: list[tuple[str, str]] = []  # (service, metric name)
        self._server = grpc.server(futures.ThreadPoolExecutor(4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(self, self._server)
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(self, self._server)
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        self.endpoint = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> OtlpReceiver:
        self._server.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.stop(grace=None)

    def Export(self, request: Any, context: grpc.ServicerContext) -> Any:
        if isinstance(request, trace_service_pb2.ExportTraceServiceRequest):
            self._take_spans(request)
            return trace_service_pb2.ExportTraceServiceResponse()
        self._take_metrics(request)
        return metrics_service_pb2.ExportMetricsServiceResponse()

    def _take_spans(self, request: trace_service_pb2.ExportTraceServiceRequest) -> None:
        received: list[ReceivedSpan] = []
        for resource_spans in request.resource_spans:
            service = attributes(resource_spans.resource.attributes).get("service.name", "")
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    received.append(
                        ReceivedSpan(
                            service=service,
                            name=span.name,
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_span_id=span.parent_span_id.hex(),
                            attributes=attributes(span.attributes),
                            events=[(e.name, attributes(e.attributes)) for e in span.events],
                            status_code=span.status.code,
                            kind=span.kind,
                        )
                    )
        with self._lock:
            self._spans.extend(received)

    def _take_metrics(self, request: metrics_service_pb2.ExportMetricsServiceRequest) -> None:
        received: list[tuple[str, str]] = []
        for resource_metrics in request.resource_metrics:
            service = attributes(resource_metrics.resource.attributes).get("service.name", "")
            for scope_metrics in resource_metrics.scope_metrics:
                received.extend((service, metric.name) for metric in scope_metrics.metrics)
        with self._lock:
            self._metrics.extend(received)

    def spans(self, trace_id: str | None = None) -> list[ReceivedSpan]:
        with self._lock:
            return [s for s in self._spans if trace_id is None or s.trace_id == trace_id]

    def metric_names(self, service: str) -> set[str]:
        with self._lock:
            return {name for svc, name in self._metrics if svc == service}

"""The process's MeterProvider: a Prometheus scrape endpoint and/or OTLP, from flags and ``OTEL_*``.

``--metrics-listen ADDR`` (or ``OTEL_METRICS_EXPORTER=prometheus``, on
``OTEL_EXPORTER_PROMETHEUS_HOST``/``_PORT``) serves ``/metrics`` over HTTP;
``OTEL_METRICS_EXPORTER=otlp`` pushes every ``OTEL_METRIC_EXPORT_INTERVAL`` ms to
``OTEL_EXPORTER_OTLP_ENDPOINT``. With neither, no provider is installed: every instrument
is the API's no-op, and the observable gauges' callbacks never run.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)

from broker.observability import otel_env
from broker.observability.otel_env import TelemetryConfigError

log = logging.getLogger("fedbroker.metrics")


@dataclass
class Metrics:
    """What `setup_metrics` installed: the provider (None: metrics off) and the scrape port."""

    provider: MeterProvider | None
    prometheus_port: int | None = None

    @property
    def enabled(self) -> bool:
        return self.provider is not None

    def shutdown(self) -> None:
        """Flush OTLP and stop the readers (the scrape endpoint's thread is a daemon)."""
        if self.provider is not None:
            self.provider.shutdown()


def parse_listen(addr: str) -> tuple[str, int]:
    """``HOST:PORT``, ``:PORT`` (all interfaces) or ``[V6]:PORT`` into (host, port)."""
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise TelemetryConfigError(f"metrics listen address {addr!r}: expected HOST:PORT")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


def setup_metrics(service_name: str, listen: str | None) -> Metrics:
    """Install the global MeterProvider once; raises TelemetryConfigError (bad names, a taken port)."""
    names = otel_env.exporters("OTEL_METRICS_EXPORTER", otel_env.METRICS_EXPORTERS)
    if "prometheus" in names and listen is None:
        host = os.environ.get("OTEL_EXPORTER_PROMETHEUS_HOST", "localhost")
        listen = f"{host}:{os.environ.get('OTEL_EXPORTER_PROMETHEUS_PORT', '9464')}"
    readers: list[MetricReader] = []
    port: int | None = None
    if listen is not None:
        reader, port = _prometheus(listen)
        readers.append(reader)
    if "otlp" in names:
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

        readers.append(PeriodicExportingMetricReader(OTLPMetricExporter()))
    if "console" in names:
        readers.append(PeriodicExportingMetricReader(ConsoleMetricExporter()))
    if not readers:
        return Metrics(None)
    provider = MeterProvider(metric_readers=readers, resource=otel_env.resource(service_name))
    metrics.set_meter_provider(provider)
    return Metrics(provider, port)


def _prometheus(listen: str) -> tuple[MetricReader, int]:
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from prometheus_client import start_http_server

    host, port = parse_listen(listen)
    try:
        server, _ = start_http_server(port, addr=host)
    except OSError as error:
        raise TelemetryConfigError(f"cannot serve metrics on {listen}: {error.strerror or error}") from None
    bound = int(server.server_port)
    log.info("metrics on http://%s:%d/metrics", host, bound)
    return PrometheusMetricReader(scope_info_enabled=False), bound  # otel_scope_* labels: noise here

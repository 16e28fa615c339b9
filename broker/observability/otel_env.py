"""The standard ``OTEL_*`` variables this project honours, parsed once and checked.

An unknown exporter name is an error at start (`TelemetryConfigError`), not silence: a
typo in ``OTEL_TRACES_EXPORTER=otpl`` would otherwise lose every trace without a word.
Defaults differ from the specification's (``otlp``) on purpose: ``none``, so a laptop
demo does not retry a collector that is not there.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from opentelemetry.sdk.resources import SERVICE_NAME, Resource

TRACES_EXPORTERS = frozenset({"otlp", "console", "none"})
METRICS_EXPORTERS = frozenset({"otlp", "console", "prometheus", "none"})
# Only the gRPC flavour of OTLP is installed (opentelemetry-exporter-otlp-proto-grpc).
OTLP_PROTOCOLS = frozenset({"grpc"})


class TelemetryConfigError(ValueError):
    """An ``OTEL_*`` variable (or --metrics-listen) names something this process cannot do."""


def exporters(variable: str, known: frozenset[str], env: Mapping[str, str] | None = None) -> list[str]:
    """The exporters a comma-separated ``OTEL_*_EXPORTER`` variable names (``none`` dropped)."""
    env = os.environ if env is None else env
    names = [n.strip().lower() for n in env.get(variable, "none").split(",") if n.strip()]
    unknown = sorted(set(names) - known)
    if unknown:
        raise TelemetryConfigError(
            f"{variable}={env.get(variable)!r}: unknown exporter {', '.join(unknown)} "
            f"(known: {', '.join(sorted(known))})"
        )
    if "otlp" in names:
        _check_otlp_protocol(env)
    return [n for n in names if n != "none"]


def _check_otlp_protocol(env: Mapping[str, str]) -> None:
    for variable in (
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
    ):
        protocol = env.get(variable, "grpc").strip().lower()
        if protocol not in OTLP_PROTOCOLS:
            raise TelemetryConfigError(f"{variable}={protocol!r}: only 'grpc' is supported by this build")


def resource(default_service: str, env: Mapping[str, str] | None = None) -> Resource:
    """The process's resource: ``OTEL_RESOURCE_ATTRIBUTES`` and ``OTEL_SERVICE_NAME`` (which wins),
    with `default_service` only when neither names the service."""
    env = os.environ if env is None else env
    detected = Resource.create()  # reads OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME
    named = env.get("OTEL_SERVICE_NAME") or "service.name=" in env.get("OTEL_RESOURCE_ATTRIBUTES", "")
    return detected if named else detected.merge(Resource({SERVICE_NAME: default_service}))

"""Metrics, logs and the OpenTelemetry set-up of the broker and the site agents.

Traces are set up in `broker.telemetry`; everything here reads the standard ``OTEL_*``
variables through `otel_env`, so the two agree on what is a valid configuration.
"""

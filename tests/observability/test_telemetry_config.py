"""OTEL_* and the observability flags: a wrong name or a taken port stops the process at start."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from broker.localfed import EXAMPLES
from broker.observability import otel_env
from broker.observability.metrics_setup import parse_listen
from broker.observability.otel_env import TelemetryConfigError


def start(args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    """Run `fedbroker ...` until it exits (these must exit at once)."""
    return subprocess.run(
        [sys.executable, "-m", "broker", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=60,
    )


def serve_args(tmp_path: Path) -> list[str]:
    return ["serve", "--config", str(EXAMPLES / "federation.yaml"), "--db", f"sqlite:///{tmp_path}/b.db"]


def test_an_unknown_traces_exporter_stops_the_broker(tmp_path: Path) -> None:
    result = start(serve_args(tmp_path), OTEL_TRACES_EXPORTER="otpl")
    assert result.returncode == 2
    assert "OTEL_TRACES_EXPORTER='otpl': unknown exporter otpl" in result.stderr


def test_an_unknown_metrics_exporter_stops_the_agent(tmp_path: Path) -> None:
    config = tmp_path / "agent.yaml"
    config.write_text((EXAMPLES / "agents" / "cyberport.yaml").read_text())
    result = start(
        ["agent", "--config", str(config)], OTEL_METRICS_EXPORTER="statsd", FEDBROKER_AGENT_TOKEN="x"
    )
    assert result.returncode == 2
    assert "OTEL_METRICS_EXPORTER='statsd': unknown exporter statsd" in result.stderr


def test_an_unknown_traces_exporter_stops_a_client_command_before_it_calls() -> None:
    # Port 1: nothing listens, so only the telemetry check can answer before a connection fails.
    result = start(
        ["get", "wl-x", "-o", "json"],
        OTEL_TRACES_EXPORTER="jaegar",
        FEDBROKER_ENDPOINT="127.0.0.1:1",
        FEDBROKER_TOKEN="x",
    )
    assert result.returncode == 2, result.stderr
    assert "OTEL_TRACES_EXPORTER='jaegar': unknown exporter jaegar" in result.stderr


def test_a_taken_metrics_port_stops_the_broker(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = start([*serve_args(tmp_path), "--metrics-listen", f"127.0.0.1:{port}"])
    assert result.returncode == 2
    assert f"cannot serve metrics on 127.0.0.1:{port}" in result.stderr


def test_exporter_names() -> None:
    assert otel_env.exporters("X", otel_env.METRICS_EXPORTERS, {"X": "otlp, prometheus"}) == [
        "otlp",
        "prometheus",
    ]
    assert otel_env.exporters("X", otel_env.TRACES_EXPORTERS, {}) == []  # default: none
    assert otel_env.exporters("X", otel_env.TRACES_EXPORTERS, {"X": "none"}) == []
    with pytest.raises(TelemetryConfigError, match="only 'grpc'"):
        otel_env.exporters(
            "X", otel_env.TRACES_EXPORTERS, {"X": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}
        )


def test_the_service_name_comes_from_otel_variables_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=prod")
    resource = otel_env.resource("fedbroker-broker").attributes
    assert (resource["service.name"], resource["deployment.environment"]) == ("fedbroker-broker", "prod")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "service.name=from-attributes")
    assert otel_env.resource("fedbroker-broker").attributes["service.name"] == "from-attributes"
    monkeypatch.setenv("OTEL_SERVICE_NAME", "broker-hk-1")
    assert otel_env.resource("fedbroker-broker").attributes["service.name"] == "broker-hk-1"


def test_listen_addresses() -> None:
    assert parse_listen("127.0.0.1:9464") == ("127.0.0.1", 9464)
    assert parse_listen(":9464") == ("0.0.0.0", 9464)
    assert parse_listen("[::1]:9464") == ("::1", 9464)
    for bad in ("9464", "host:", "host:http", "host:70000"):
        with pytest.raises(TelemetryConfigError):
            parse_listen(bad)


SDK_USER = """
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from broker.client import Client, ClientError

exported = InMemorySpanExporter()
if {installs}:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exported))
    trace.set_tracer_provider(provider)
with Client("127.0.0.1:1", "x", timeout=2) as client:
    print(type(client._channel).__name__)
    try:
        client.sites()
    except ClientError as error:
        print(error.code.name)
print([(s.name, s.kind.name, s.attributes["rpc.grpc.status_code"]) for s in exported.get_finished_spans()])
"""


@pytest.mark.parametrize("installs", [True, False])
def test_the_sdk_traces_its_calls_when_the_application_installed_a_tracer_provider(installs: bool) -> None:
    """An application's own provider is honoured (port 1: the call fails, its span says so);
    without one the channel has no interceptor at all."""
    result = subprocess.run(
        [sys.executable, "-c", SDK_USER.format(installs=installs)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    channel, code, spans = result.stdout.splitlines()
    assert code == "UNAVAILABLE"
    if installs:
        assert spans == "[('/fedbroker.v1.SiteService/ListSites', 'CLIENT', 14)]"
    else:
        assert (channel, spans) == ("Channel", "[]")  # grpc's own channel: no interceptor per call

"""values.schema.json refuses bad values before anything reaches a cluster (Helm checks it at
install, upgrade, template and lint)."""

from __future__ import annotations

import copy
from typing import Any

import helm_python as helm
import pytest
from chart_render import CHART, VALUE_SETS


def _with(base: str, path: str, value: Any) -> dict[str, Any]:
    values = copy.deepcopy(VALUE_SETS[base])
    node = values
    *parents, leaf = path.split(".")
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = value
    return values


BAD = {
    "replicas as a word": ("broker-only", "broker.replicas", "two"),
    "a misspelt key": ("broker-only", "broker.replcas", 2),
    "an unknown top-level key": ("broker-only", "brokers", {"enabled": True}),
    "SQLite for brokers in two pods": (
        "broker-only",
        "broker.database.url",
        "sqlite:///var/lib/fedbroker.db",
    ),
    "no database at all": ("broker-only", "broker.database", {"url": ""}),
    "a federation without sites": ("broker-only", "broker.federation", {"tenants": []}),
    "TLS files in the federation instead of a Secret": (
        "broker-only",
        "broker.federation.tls",
        {"cert_file": "/x.crt", "key_file": "/x.key"},
    ),
    "TLS without its Secret": ("broker-only", "broker.tls", {"enabled": True}),
    "mutual TLS without the probe's certificate": (
        "broker-only",
        "broker.tls",
        {"enabled": True, "secretName": "t", "clientCaKey": "ca.crt"},
    ),
    "a port out of range": ("broker-only", "broker.grpcPort", 70000),
    "an unknown log level": ("broker-only", "broker.logLevel", "verbose"),
    "negative fronts": ("broker-only", "broker.fronts", -1),
    "root allowed": ("broker-only", "podSecurityContext.runAsNonRoot", False),
    "a writable root filesystem": ("broker-only", "containerSecurityContext.readOnlyRootFilesystem", False),
    "an agent without a token": ("agent-only", "agent.token", {"value": ""}),
    "an agent without a site": ("agent-only", "agent.config.site", ""),
    "the agent token as a file in its config": ("agent-only", "agent.config.token_file", "/token"),
    "an unknown backend": ("agent-only", "agent.config.backend", {"kind": "slurm"}),
    "a client certificate without its key": (
        "agent-only",
        "agent.tls",
        {"secretName": "t", "certKey": "tls.crt"},
    ),
    "a bad image digest": ("broker-only", "image.digest", "sha256:nothex"),
    "a bad OTLP endpoint": ("broker-only", "otel.endpoint", "otel-collector:4317"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_values_are_refused(case: str) -> None:
    base, path, value = BAD[case]
    values = _with(base, path, value)
    with helm.Chart.load(CHART) as chart, pytest.raises(helm.HelmValuesError):
        chart.validate_schema(values)
    # And as `helm lint` (and so `helm install`) reports it: an error, nothing rendered.
    report = helm.lint(CHART, values)
    assert report["errors"] or [m for m in report["messages"] if m["severity"] == 3], report


def test_the_error_names_the_field() -> None:
    with helm.Chart.load(CHART) as chart, pytest.raises(helm.HelmValuesError) as caught:
        chart.validate_schema(_with("broker-only", "broker.replicas", "two"))
    assert "replicas" in str(caught.value)


def test_every_value_set_and_the_defaults_pass() -> None:
    with helm.Chart.load(CHART) as chart:
        chart.validate_schema({})
        for values in VALUE_SETS.values():
            chart.validate_schema(copy.deepcopy(values))
        # values.yaml documents every field the schema knows, and the schema knows every field.
        assert set(chart.values) == set(chart.schema["properties"]) - {"global"}


def test_every_value_is_documented() -> None:
    """Each field in values.yaml has a comment just above it or above a block that holds it."""
    lines = (CHART / "values.yaml").read_text().splitlines()

    def indent(line: str) -> int:
        return len(line) - len(line.lstrip())

    def commented(i: int) -> bool:
        return i > 0 and lines[i - 1].strip().startswith("#")

    def parent(i: int) -> int | None:
        for j in range(i - 1, -1, -1):
            text = lines[j].strip()
            if text and not text.startswith("#") and indent(lines[j]) < indent(lines[i]):
                return j
        return None

    for i, line in enumerate(lines):
        text = line.strip()
        if not text or text.startswith(("#", "-")) or ":" not in text:
            continue
        node: int | None = i
        while node is not None and not commented(node):
            node = parent(node)
        assert node is not None, f"values.yaml:{i + 1}: {line.strip()} has no comment"

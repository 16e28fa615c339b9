"""Render the Helm chart offline (helm-python-sdk: Helm's own Go SDK, no helm binary) and the
value sets the tests render it with: one per way a site deploys it."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import helm_python as helm
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "fedbroker"
RELEASE = "fb"
NAMESPACE = "fedbroker"

# Secret values the value sets carry: none may appear outside a Secret.
DB_PASSWORD = "pw-Zq8vN3kT"
DB_URL = f"postgresql://fedbroker:{DB_PASSWORD}@db.cyberport.internal:5432/fedbroker"
AGENT_TOKEN = "agent-token-Hx2mP9wL"
SECRETS = (DB_PASSWORD, DB_URL, AGENT_TOKEN)


def federation() -> dict[str, Any]:
    """The repository's example federation, as a site would pass it in its values."""
    data: dict[str, Any] = yaml.safe_load((ROOT / "examples" / "federation.yaml").read_text())
    return data


def _broker(**extra: Any) -> dict[str, Any]:
    return {"enabled": True, "database": {"url": DB_URL}, "federation": federation(), **extra}


def _agent(backend: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "enabled": True,
        "token": {"value": AGENT_TOKEN},
        "config": {"site": "cyberport", "datasets": ["cantonese-speech"], "backend": backend},
        **extra,
    }


KUBE_BACKEND = {"kind": "kubernetes", "namespace": "gpu-jobs", "gpu_models": {"NVIDIA-H800": "H800"}}
RAY_BACKEND = {"kind": "ray", "address": "http://ray-head.ray:8265", "default_gpu_model": "L40S"}

VALUE_SETS: dict[str, dict[str, Any]] = {
    # Cyberport: the broker only (its agent in another release).
    "broker-only": {"broker": _broker()},
    # Sandy Ridge: an agent only, reaching Cyberport's broker over mutual TLS.
    "agent-only": {
        "agent": _agent(
            KUBE_BACKEND,
            tls={
                "secretName": "sandy-ridge-agent-tls",
                "caKey": "ca.crt",
                "certKey": "tls.crt",
                "keyKey": "tls.key",
            },
        )
        | {
            "config": {
                "site": "sandy-ridge",
                "broker": "broker.cyberport.example.hk:443",
                "backend": KUBE_BACKEND,
            }
        }
    },
    # Cyberport: broker and agent in one release; the agent dials the broker's Service.
    "both": {"broker": _broker(), "agent": _agent(KUBE_BACKEND, tls={"insecure": True})},
    # A Ray site's agent: no Kubernetes API access at all.
    "agent-ray": {
        "agent": _agent(RAY_BACKEND, tls={"insecure": True})
        | {"config": {"site": "sandy-ridge", "broker": "10.0.0.5:50051", "backend": RAY_BACKEND}}
    },
    # Everything optional on: TLS with mutual TLS, monitoring, a NetworkPolicy, OTLP, a LoadBalancer.
    "production": {
        "image": {"digest": "sha256:" + "a" * 64},
        "broker": _broker(
            fronts=1,
            tls={
                "enabled": True,
                "secretName": "broker-tls",
                "clientCaKey": "ca.crt",
                "probeClientSecretName": "broker-probe-tls",
            },
            service={"type": "LoadBalancer", "port": 443, "loadBalancerSourceRanges": ["203.0.113.0/24"]},
            networkPolicy={
                "enabled": True,
                "metricsFrom": [
                    {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
                ],
            },
        ),
        "agent": _agent(
            KUBE_BACKEND, tls={"secretName": "agent-tls", "certKey": "tls.crt", "keyKey": "tls.key"}
        ),
        "otel": {
            "endpoint": "http://otel-collector.observability:4317",
            "traces": True,
            "metrics": True,
            "headersSecret": "otel-headers",
        },
        "monitoring": {
            "serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
            "prometheusRule": {"enabled": True},
            "dashboards": {"enabled": True, "namespace": "monitoring"},
        },
    },
    # Secrets made outside Helm (e.g. by an external-secrets operator): the chart makes none.
    "existing-secrets": {
        "broker": {
            "enabled": True,
            "federation": federation(),
            "database": {"existingSecret": "fedbroker-db", "existingSecretKey": "dsn"},
            "pdb": {"enabled": False},
            "metricsPort": 0,
        },
        "agent": _agent(KUBE_BACKEND, tls={"insecure": True}, metricsPort=0)
        | {"token": {"existingSecret": "cyberport-agent-token"}},
    },
}


def render(values: dict[str, Any], namespace: str = NAMESPACE) -> dict[str, str]:
    """Template path -> rendered text, after the values pass the chart's schema."""
    with helm.Chart.load(CHART) as chart:
        chart.validate_schema(copy.deepcopy(values))
        return chart.render(copy.deepcopy(values), name=RELEASE, namespace=namespace, is_install=True)


def objects(values: dict[str, Any]) -> list[dict[str, Any]]:
    """Every Kubernetes object the chart renders for these values."""
    found: list[dict[str, Any]] = []
    for path, text in render(values).items():
        if path.endswith("NOTES.txt"):
            continue
        found.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return found


def by_kind(objs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objs if o["kind"] == kind]


def one(objs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    matches = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} found among {[o['kind'] for o in objs]}"
    return matches[0]


def containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    """The containers of a Deployment or Job (init containers too)."""
    spec = obj["spec"]["template"]["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]

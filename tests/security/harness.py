"""Helpers for the hostile-input tests: raw calls that bypass the generated stubs' checks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
import yaml
from fedbroker.v1 import types_pb2
from google.protobuf.internal.encoder import _VarintBytes

from broker.localfed import DEV_TOKENS, EXAMPLES

# Every RPC a client or agent may call, as (service, method, kind).
UNARY = [
    ("WorkloadService", "Submit"),
    ("WorkloadService", "Get"),
    ("WorkloadService", "List"),
    ("WorkloadService", "Cancel"),
    ("WorkloadService", "Explain"),
    ("WorkloadService", "ListEvents"),
    ("SiteService", "ListSites"),
    ("UsageService", "GetUsage"),
    ("OperatorService", "SetPlacementPaused"),
]
SERVER_STREAMS = [
    ("WorkloadService", "Watch"),
    ("WorkloadService", "WatchWorkloads"),
    ("WorkloadService", "Logs"),
]


def token(who: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {DEV_TOKENS[who]}"),)


def raw_unary(channel: grpc.Channel, service: str, method: str) -> Any:
    return channel.unary_unary(
        f"/fedbroker.v1.{service}/{method}", request_serializer=None, response_deserializer=None
    )


def raw_stream(channel: grpc.Channel, service: str, method: str) -> Any:
    return channel.unary_stream(
        f"/fedbroker.v1.{service}/{method}", request_serializer=None, response_deserializer=None
    )


def field_bytes(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field, written by hand (the library refuses to build some)."""
    return _VarintBytes(number << 3 | 2) + _VarintBytes(len(payload)) + payload


def ray_spec(**resources: Any) -> types_pb2.WorkloadSpec:
    spec = types_pb2.WorkloadSpec(
        name="hostile",
        backend="ray",
        resources=types_pb2.Resources(gpus_per_replica=1, gpu_model="H800", **resources),
    )
    spec.ray.entrypoint = "python x.py"
    return spec


def nested(levels: int) -> dict[str, Any]:
    top: dict[str, Any] = {}
    here = top
    for _ in range(levels):
        here["a"] = {}
        here = here["a"]
    return top


def bounded_federation(root: Path, limits: dict[str, Any] | None = None) -> Path:
    """examples/federation.yaml with each site's GPU capacity declared (what its example agent
    has) and, optionally, tighter limits."""
    data = yaml.safe_load((EXAMPLES / "federation.yaml").read_text())
    capacity = {"cyberport": {"H800": 32}, "sandy-ridge": {"H800": 32, "L40S": 16}}
    for site in data["sites"]:
        site["gpu_capacity"] = capacity[site["name"]]
    if limits:
        data["limits"] = limits
    path = root / "federation.yaml"
    path.write_text(yaml.safe_dump(data))
    return path

"""The workload spec a tenant submits: typed, validated, convertible to and from the wire."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Literal

from fedbroker.v1 import types_pb2
from google.protobuf import struct_pb2
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from broker.validation import InvalidInput, check_mapping, describe, read_yaml

# Kubernetes object names: a Job is named after the workload, so keep that shape.
WorkloadName = Annotated[str, Field(min_length=1, max_length=48, pattern=r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")]
Subsidy = Literal["required", "preferred", "none"]

# A spec travels in every assignment; keep it far below gRPC's 4 MiB message limit (agents
# included), so no accepted workload can ever be too large to hand to a site.
MAX_SPEC_BYTES = 64 * 1024
MAX_RUNTIME_ENV_DEPTH = 16

# Bounds on what one workload may hold, each far below MAX_SPEC_BYTES' share, so that no
# field can carry unbounded input into a stored row, an explanation or an error message.
Text = Annotated[str, Field(max_length=16 * 1024)]
ShortText = Annotated[str, Field(min_length=1, max_length=253)]
EnvKey = Annotated[str, Field(min_length=1, max_length=256)]
Env = Annotated[dict[EnvKey, Text], Field(max_length=256)]
Names = Annotated[list[ShortText], Field(max_length=64)]


class _Strict(BaseModel):
    # No NaN or infinity anywhere: such a number cannot be scheduled, priced or stored as JSON.
    # Strict types: `gpus_per_replica: true` or `"8"` is a mistake to report, not a 1 or an 8.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, strict=True)


class RaySection(_Strict):
    entrypoint: Annotated[str, Field(min_length=1, max_length=16 * 1024)]
    runtime_env: dict[str, Any] = {}

    @field_validator("runtime_env")
    @classmethod
    def _plain_json(cls, value: dict[str, Any]) -> dict[str, Any]:
        _check_json(value, 0)
        return value


class KubernetesSection(_Strict):
    image: Annotated[str, Field(min_length=1, max_length=1024)]
    command: Annotated[list[Text], Field(max_length=256)] = []
    env: Env = {}


class Resources(_Strict):
    gpus_per_replica: Annotated[int, Field(gt=0, le=1024)]
    gpu_model: Annotated[str, Field(min_length=1, max_length=64)]
    replicas: Annotated[int, Field(gt=0, le=4096)] = 1
    cpus_per_replica: Annotated[float, Field(ge=0, le=1_000_000)] = 0.0
    memory_gb_per_replica: Annotated[float, Field(ge=0, le=1_000_000_000)] = 0.0

    @property
    def gpus(self) -> int:
        return self.gpus_per_replica * self.replicas


class WorkloadSpec(_Strict):
    name: WorkloadName
    backend: Literal["ray", "kubernetes"]
    ray: RaySection | None = None
    kubernetes: KubernetesSection | None = None
    resources: Resources
    datasets: Names = []
    subsidy: Subsidy = "preferred"
    priority: Annotated[int, Field(ge=-1_000_000, le=1_000_000)] = 0
    estimated_hours: Annotated[float, Field(gt=0, le=100_000)] = 1.0
    sites: Names = []
    # Preferred sites, in order: tried alone for overflow_after_s (else the federation's
    # default) before any allowed site may take it. Empty: the tenant's home site, if any.
    prefer: Names = []
    overflow_after_s: Annotated[float, Field(ge=0, le=30 * 24 * 3600)] | None = None
    max_attempts: Annotated[int, Field(gt=0, le=100)] = 3
    env: Env = {}

    @model_validator(mode="after")
    def _backend_section(self) -> WorkloadSpec:
        other = "kubernetes" if self.backend == "ray" else "ray"
        if getattr(self, self.backend) is None:
            raise ValueError(f"{self.backend}: is required for backend {self.backend}")
        if getattr(self, other) is not None:
            raise ValueError(f"{other}: not allowed for backend {self.backend}")
        return self


def _check_json(value: Any, depth: int) -> None:
    """Finite numbers only, and a bounded depth (it is stored and sent as JSON)."""
    if depth > MAX_RUNTIME_ENV_DEPTH:
        raise ValueError(f"nested deeper than {MAX_RUNTIME_ENV_DEPTH} levels")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("numbers must be finite (no NaN or infinity)")
    if isinstance(value, dict):
        for item in value.values():
            _check_json(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check_json(item, depth + 1)


WORKLOAD_WHAT = "a workload (name, backend, resources, ...)"


def parse_spec(data: object, source: str = "workload") -> WorkloadSpec:
    check_mapping(data, source, WORKLOAD_WHAT)
    try:
        return WorkloadSpec.model_validate(data)
    except ValidationError as error:
        problems = [line.removeprefix("(root): ") for line in describe(error, WorkloadSpec)]
        raise InvalidInput(source, problems) from None


def load_spec(path: str | Path) -> WorkloadSpec:
    path = Path(path)
    data = read_yaml(path)
    return parse_spec(data, str(path))


def spec_to_proto(spec: WorkloadSpec | dict[str, Any]) -> types_pb2.WorkloadSpec:
    """The wire form of a spec, or of one stored as ``model_dump(mode="json")`` (validated
    when it was submitted, so not validated again on every List and dispatch).

    Built field by field rather than through json_format, which cost more than the whole
    placement decision on the submit path."""
    data = spec.model_dump(mode="json") if isinstance(spec, WorkloadSpec) else spec
    message = types_pb2.WorkloadSpec(
        name=data["name"],
        backend=data["backend"],
        resources=types_pb2.Resources(**data["resources"]),
        datasets=data.get("datasets", []),
        subsidy=data.get("subsidy", ""),
        priority=data.get("priority", 0),
        sites=data.get("sites", []),
        env=data.get("env", {}),
        prefer=data.get("prefer", []),
    )
    for optional in ("estimated_hours", "max_attempts", "overflow_after_s"):
        if data.get(optional) is not None:
            setattr(message, optional, data[optional])
    if data.get("ray") is not None:
        message.ray.entrypoint = data["ray"]["entrypoint"]
        if data["ray"].get("runtime_env"):
            message.ray.runtime_env.update(data["ray"]["runtime_env"])
    if data.get("kubernetes") is not None:
        k8s = data["kubernetes"]
        message.kubernetes.CopyFrom(
            types_pb2.KubernetesSpec(
                image=k8s["image"], command=k8s.get("command", []), env=k8s.get("env", {})
            )
        )
    return message


def _struct(struct: struct_pb2.Struct, depth: int) -> dict[str, Any]:
    """A runtime_env from the wire, as plain JSON values; a non-finite number or nesting past
    MAX_RUNTIME_ENV_DEPTH is InvalidInput naming the field (json_format raised ValueError)."""
    return {key: _value(value, depth) for key, value in struct.fields.items()}


def _value(value: struct_pb2.Value, depth: int) -> Any:
    if depth > MAX_RUNTIME_ENV_DEPTH:
        raise InvalidInput("spec", [f"ray.runtime_env: nested deeper than {MAX_RUNTIME_ENV_DEPTH} levels"])
    kind = value.WhichOneof("kind")
    if kind == "number_value":
        if not math.isfinite(value.number_value):
            raise InvalidInput("spec", ["ray.runtime_env: numbers must be finite (no NaN or infinity)"])
        return value.number_value
    if kind == "struct_value":
        return _struct(value.struct_value, depth + 1)
    if kind == "list_value":
        return [_value(item, depth + 1) for item in value.list_value.values]
    if kind in ("string_value", "bool_value"):
        return getattr(value, kind)
    return None


def spec_from_proto(message: types_pb2.WorkloadSpec) -> WorkloadSpec:
    """Validate a spec that came over the wire; absent proto fields take the YAML defaults
    (proto3 cannot tell an absent scalar from a zero one, so zero means "absent" here)."""
    data: dict[str, Any] = {
        k: v
        for k, v in (
            ("name", message.name),
            ("backend", message.backend),
            ("subsidy", message.subsidy),
            ("priority", message.priority),
            ("datasets", list(message.datasets)),
            ("sites", list(message.sites)),
            ("env", dict(message.env)),
            ("prefer", list(message.prefer)),
        )
        if v
    }
    for optional in ("estimated_hours", "max_attempts", "overflow_after_s"):
        if message.HasField(optional):
            data[optional] = getattr(message, optional)
    if message.HasField("resources"):
        r = message.resources
        data["resources"] = {
            k: v
            for k, v in (
                ("gpus_per_replica", r.gpus_per_replica),
                ("gpu_model", r.gpu_model),
                ("replicas", r.replicas),
                ("cpus_per_replica", r.cpus_per_replica),
                ("memory_gb_per_replica", r.memory_gb_per_replica),
            )
            if v
        }
    if message.HasField("ray"):
        ray: dict[str, Any] = {"entrypoint": message.ray.entrypoint} if message.ray.entrypoint else {}
        if message.ray.HasField("runtime_env"):
            ray["runtime_env"] = _struct(message.ray.runtime_env, 1)
        data["ray"] = ray
    if message.HasField("kubernetes"):
        k = message.kubernetes
        data["kubernetes"] = {
            key: v for key, v in (("image", k.image), ("command", list(k.command)), ("env", dict(k.env))) if v
        }
    return parse_spec(data, "spec")

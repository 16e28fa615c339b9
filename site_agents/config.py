"""The agent config (`agent.yaml`) and the agent's token: typed, validated, errors naming the field path.

site: cyberport
broker: 127.0.0.1:50051
heartbeat_s: 2
datasets: [cantonese-speech]
token_file: null
backend: {kind: simulated, time_scale: 0.001, node_groups: [...]}
         | {kind: kubernetes, namespace: ..., kubeconfig: ..., deadline_multiple: 2, ...}
         | {kind: ray, address: http://..., default_gpu_model: ..., ...}
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import InitErrorDetails

from broker import endpoints
from broker.sdk.settings import TlsFiles
from broker.validation import InvalidInput, describe, read_yaml

TOKEN_ENV = "FEDBROKER_AGENT_TOKEN"
BACKEND_KINDS = ("simulated", "kubernetes", "ray")
_HOST_PORT = re.compile(r"^(\[[0-9a-fA-F:]+\]|[^\s:\[\]/]+):\d{1,5}$")

PositiveFloat = Annotated[float, Field(gt=0)]
PositiveInt = Annotated[int, Field(gt=0)]
Name = Annotated[str, Field(min_length=1, pattern=r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NodeGroup(_Strict):
    """`count` identical simulated nodes named `{name_prefix}-{i}`, i from 0."""

    count: PositiveInt
    name_prefix: Name
    gpu_model: Annotated[str, Field(min_length=1)]
    gpus: PositiveInt
    gpu_memory_gb: PositiveFloat
    cpus: PositiveFloat
    memory_gb: PositiveFloat
    labels: dict[str, str] = {}


class SimulatedBackendConfig(_Strict):
    kind: Literal["simulated"]
    # A workload runs estimated_hours x 3600 x time_scale seconds (unless its env says otherwise).
    time_scale: PositiveFloat = 0.001
    node_groups: Annotated[list[NodeGroup], Field(min_length=1)]

    @field_validator("node_groups")
    @classmethod
    def _unique_prefixes(cls, groups: list[NodeGroup]) -> list[NodeGroup]:
        # Distinct prefixes are enough for distinct node names: "{prefix}-{int}" cannot collide.
        seen: set[str] = set()
        for group in groups:
            if group.name_prefix in seen:
                raise ValueError(f"name_prefix {group.name_prefix!r} is used twice: node names would repeat")
            seen.add(group.name_prefix)
        return groups


GpuModel = Annotated[str, Field(min_length=1)]


class Toleration(_Strict):
    """A taint the site's workload pods tolerate; a node with only tolerated taints stays in the inventory."""

    key: Annotated[str, Field(min_length=1)]
    operator: Literal["Exists", "Equal"] = "Exists"
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None


class KubernetesBackendConfig(_Strict):
    kind: Literal["kubernetes"]
    namespace: Name = "fedbroker-workloads"
    kubeconfig: str | None = None  # in-cluster config when omitted
    context: str | None = None  # a kubeconfig context; its current context when omitted
    # activeDeadlineSeconds = estimated_hours x 3600 x this; no deadline for work without an estimate.
    deadline_multiple: PositiveFloat = 2.0
    default_gpu_model: GpuModel = "unknown"  # for nodes without the nvidia.com/gpu.product label
    # nvidia.com/gpu.product label value -> the model name the federation prices, e.g. NVIDIA-H800: H800.
    gpu_models: dict[str, GpuModel] = {}
    # The GPU operator taints GPU nodes nvidia.com/gpu:NoSchedule; workload pods tolerate that by default.
    tolerations: list[Toleration] = [Toleration(key="nvidia.com/gpu", operator="Exists")]
    unschedulable_timeout_s: PositiveFloat = 600.0  # a pod unschedulable this long ends no_capacity
    ttl_after_finished_s: Annotated[int, Field(ge=0)] = 86_400  # ended Jobs (and logs) kept this long
    watch_timeout_s: PositiveInt = 300  # each watch is renewed after this long, as client-go does


class RayBackendConfig(_Strict):
    kind: Literal["ray"]
    address: Annotated[str, Field(pattern=r"^https?://.+")]  # the Ray dashboard (job submission) URL
    default_gpu_model: GpuModel = "unknown"  # for nodes without an accelerator_type:* resource
    gpu_memory_gb: dict[str, PositiveFloat] = {}  # per GPU model: Ray does not report GPU memory
    poll_s: PositiveFloat = 1.0  # how often running jobs' statuses are read (Ray has no watch)
    # A job (or a gang's placement group) not started within this ends no_capacity; Ray's own
    # supervisor start timeout is 900 s.
    start_timeout_s: PositiveFloat = 900.0
    namespace: Name = "fedbroker"  # the Ray namespace of the gangs' placement groups


BackendConfig = Annotated[
    SimulatedBackendConfig | KubernetesBackendConfig | RayBackendConfig, Field(discriminator="kind")
]


class AgentConfig(_Strict):
    site: Name
    # host:port of the broker's gRPC endpoint; with a standby, all of them: a YAML list or
    # "a:1,b:2" (the agent tries each in turn and stays with the one that welcomes it).
    broker: str
    heartbeat_s: PositiveFloat = 2.0
    datasets: list[str] = []
    token_file: str | None = None
    # TLS to the broker: ca_file (else the system's trust store), cert_file and key_file (mutual
    # TLS: the certificate naming this site's agent_cert_san), server_name, insecure (plaintext).
    # Omitted: plaintext to loopback brokers, TLS with the system's trust store to any other.
    tls: TlsFiles | None = None
    backend: BackendConfig

    @field_validator("broker", mode="before")
    @classmethod
    def _host_ports(cls, value: object) -> object:
        if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            value = ",".join(value)
        if not isinstance(value, str):
            return value  # pydantic names the type error
        parts = endpoints.split(value) or [value]  # an empty value is named as it came
        for part in parts:
            if not _HOST_PORT.match(part):
                raise ValueError(f"must be host:port, e.g. 127.0.0.1:50051 (got {part!r})")
        return ",".join(parts)

    @property
    def brokers(self) -> tuple[str, ...]:
        return tuple(endpoints.split(self.broker))


def parse_agent_config(data: object, source: str = "agent config") -> AgentConfig:
    if data is None:
        raise InvalidInput(source, ["(root): is empty; expected the agent settings (site, broker, backend)"])
    if not isinstance(data, dict):
        raise InvalidInput(
            source, ["(root): expected the agent settings (site, broker, backend) as 'key: value' lines"]
        )
    try:
        return AgentConfig.model_validate(data)
    except ValidationError as error:
        raise InvalidInput(source, describe(_untagged(error), AgentConfig)) from None


def load_agent_config(path: str | Path, broker: str | None = None) -> AgentConfig:
    """Read and validate an agent config; InvalidInput names the file and each bad field.

    A relative `token_file` is resolved against the config file's folder, so the
    agent finds it whatever its working directory. `broker` (the --broker flag or
    $FEDBROKER_BROKER) replaces the file's broker address, checked the same way.
    """
    path = Path(path)
    data = read_yaml(path)
    if broker and isinstance(data, dict):
        data = {**data, "broker": broker}
    config = parse_agent_config(data, str(path))
    if config.token_file is not None:
        token_file = Path(config.token_file).expanduser()
        if not token_file.is_absolute():
            token_file = path.parent / token_file
        config = config.model_copy(update={"token_file": str(token_file)})
    if config.tls is not None:  # relative TLS files, too, are the config file's neighbours
        files = {
            key: str(path.parent / Path(value).expanduser()) if value else value
            for key in ("ca_file", "cert_file", "key_file")
            if (value := getattr(config.tls, key))
        }
        config = config.model_copy(update={"tls": config.tls.model_copy(update=files)})
    return config


def with_tls_flags(
    config: AgentConfig, ca_file: str | None, cert_file: str | None, key_file: str | None, insecure: bool
) -> AgentConfig:
    """The config with `fedbroker agent`'s TLS flags (or their environment variables) over its `tls`."""
    flags = {k: v for k, v in (("ca_file", ca_file), ("cert_file", cert_file), ("key_file", key_file)) if v}
    if not flags and not insecure:
        return config
    values = config.tls.model_dump() if config.tls is not None else {}
    values = {"insecure": True} if insecure else {**values, **flags, "insecure": False}
    return config.model_copy(update={"tls": TlsFiles(**values)})


def resolve_token(
    config: AgentConfig, flag: str | None = None, environ: Mapping[str, str] = os.environ
) -> str:
    """The agent's credential: the --token flag, else $FEDBROKER_AGENT_TOKEN, else token_file."""
    if flag:
        return flag
    if environ.get(TOKEN_ENV):
        return environ[TOKEN_ENV]
    if config.token_file is None:
        raise InvalidInput(
            "agent token", [f"none given: pass --token, set {TOKEN_ENV}, or set token_file in the config"]
        )
    try:
        token = Path(config.token_file).read_text().strip()
    except OSError as error:
        raise InvalidInput("token_file", [f"{config.token_file}: cannot read: {error.strerror}"]) from None
    if not token:
        raise InvalidInput("token_file", [f"{config.token_file}: is empty"])
    return token


def _untagged(error: ValidationError) -> ValidationError:
    """Drop pydantic's union tag from paths: `backend.node_groups[0].gpus`, not `backend.simulated....`.

    A missing or unknown `kind` is reported on `backend.kind`, like any other field.
    """
    details: list[InitErrorDetails] = []
    for e in error.errors():
        loc: tuple[int | str, ...] = tuple(e["loc"])
        kind: Any = e["type"]
        ctx: dict[str, Any] = dict(e.get("ctx") or {})
        if loc[:1] == ("backend",):
            if kind == "union_tag_invalid":
                kind, loc, ctx = "literal_error", ("backend", "kind"), {"expected": _kinds()}
            elif kind == "union_tag_not_found":
                kind, loc, ctx = "missing", ("backend", "kind"), {}
            elif len(loc) > 1 and loc[1] in BACKEND_KINDS:
                loc = loc[:1] + loc[2:]
        detail = InitErrorDetails(type=kind, loc=loc, input=e["input"])
        if ctx:
            detail["ctx"] = ctx
        details.append(detail)
    return ValidationError.from_exception_data(error.title, details)


def _kinds() -> str:
    quoted = [repr(k) for k in BACKEND_KINDS]
    return ", ".join(quoted[:-1]) + f" or {quoted[-1]}"

import datetime

from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class WorkloadState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WORKLOAD_STATE_UNSPECIFIED: _ClassVar[WorkloadState]
    WORKLOAD_STATE_QUEUED: _ClassVar[WorkloadState]
    WORKLOAD_STATE_PLACED: _ClassVar[WorkloadState]
    WORKLOAD_STATE_RUNNING: _ClassVar[WorkloadState]
    WORKLOAD_STATE_SUCCEEDED: _ClassVar[WorkloadState]
    WORKLOAD_STATE_FAILED: _ClassVar[WorkloadState]
    WORKLOAD_STATE_CANCELLED: _ClassVar[WorkloadState]
WORKLOAD_STATE_UNSPECIFIED: WorkloadState
WORKLOAD_STATE_QUEUED: WorkloadState
WORKLOAD_STATE_PLACED: WorkloadState
WORKLOAD_STATE_RUNNING: WorkloadState
WORKLOAD_STATE_SUCCEEDED: WorkloadState
WORKLOAD_STATE_FAILED: WorkloadState
WORKLOAD_STATE_CANCELLED: WorkloadState

class Resources(_message.Message):
    __slots__ = ("gpus_per_replica", "gpu_model", "replicas", "cpus_per_replica", "memory_gb_per_replica")
    GPUS_PER_REPLICA_FIELD_NUMBER: _ClassVar[int]
    GPU_MODEL_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    CPUS_PER_REPLICA_FIELD_NUMBER: _ClassVar[int]
    MEMORY_GB_PER_REPLICA_FIELD_NUMBER: _ClassVar[int]
    gpus_per_replica: int
    gpu_model: str
    replicas: int
    cpus_per_replica: float
    memory_gb_per_replica: float
    def __init__(self, gpus_per_replica: _Optional[int] = ..., gpu_model: _Optional[str] = ..., replicas: _Optional[int] = ..., cpus_per_replica: _Optional[float] = ..., memory_gb_per_replica: _Optional[float] = ...) -> None: ...

class RaySpec(_message.Message):
    __slots__ = ("entrypoint", "runtime_env")
    ENTRYPOINT_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_ENV_FIELD_NUMBER: _ClassVar[int]
    entrypoint: str
    runtime_env: _struct_pb2.Struct
    def __init__(self, entrypoint: _Optional[str] = ..., runtime_env: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class KubernetesSpec(_message.Message):
    __slots__ = ("image", "command", "env")
    class EnvEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    image: str
    command: _containers.RepeatedScalarFieldContainer[str]
    env: _containers.ScalarMap[str, str]
    def __init__(self, image: _Optional[str] = ..., command: _Optional[_Iterable[str]] = ..., env: _Optional[_Mapping[str, str]] = ...) -> None: ...

class WorkloadSpec(_message.Message):
    __slots__ = ("name", "backend", "ray", "kubernetes", "resources", "datasets", "subsidy", "priority", "estimated_hours", "sites", "max_attempts", "env", "prefer", "overflow_after_s")
    class EnvEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    RAY_FIELD_NUMBER: _ClassVar[int]
    KUBERNETES_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    DATASETS_FIELD_NUMBER: _ClassVar[int]
    SUBSIDY_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_HOURS_FIELD_NUMBER: _ClassVar[int]
    SITES_FIELD_NUMBER: _ClassVar[int]
    MAX_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    PREFER_FIELD_NUMBER: _ClassVar[int]
    OVERFLOW_AFTER_S_FIELD_NUMBER: _ClassVar[int]
    name: str
    backend: str
    ray: RaySpec
    kubernetes: KubernetesSpec
    resources: Resources
    datasets: _containers.RepeatedScalarFieldContainer[str]
    subsidy: str
    priority: int
    estimated_hours: float
    sites: _containers.RepeatedScalarFieldContainer[str]
    max_attempts: int
    env: _containers.ScalarMap[str, str]
    prefer: _containers.RepeatedScalarFieldContainer[str]
    overflow_after_s: float
    def __init__(self, name: _Optional[str] = ..., backend: _Optional[str] = ..., ray: _Optional[_Union[RaySpec, _Mapping]] = ..., kubernetes: _Optional[_Union[KubernetesSpec, _Mapping]] = ..., resources: _Optional[_Union[Resources, _Mapping]] = ..., datasets: _Optional[_Iterable[str]] = ..., subsidy: _Optional[str] = ..., priority: _Optional[int] = ..., estimated_hours: _Optional[float] = ..., sites: _Optional[_Iterable[str]] = ..., max_attempts: _Optional[int] = ..., env: _Optional[_Mapping[str, str]] = ..., prefer: _Optional[_Iterable[str]] = ..., overflow_after_s: _Optional[float] = ...) -> None: ...

class Workload(_message.Message):
    __slots__ = ("id", "name", "tenant", "state", "site", "attempt", "trace_id", "message", "spec", "created_at", "updated_at", "reason", "infra_requeues", "retry_at", "nodes", "queue_position", "site_unreachable_since", "requeue_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    SITE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    INFRA_REQUEUES_FIELD_NUMBER: _ClassVar[int]
    RETRY_AT_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    QUEUE_POSITION_FIELD_NUMBER: _ClassVar[int]
    SITE_UNREACHABLE_SINCE_FIELD_NUMBER: _ClassVar[int]
    REQUEUE_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    tenant: str
    state: WorkloadState
    site: str
    attempt: int
    trace_id: str
    message: str
    spec: WorkloadSpec
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    reason: str
    infra_requeues: int
    retry_at: _timestamp_pb2.Timestamp
    nodes: _containers.RepeatedScalarFieldContainer[str]
    queue_position: int
    site_unreachable_since: _timestamp_pb2.Timestamp
    requeue_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., tenant: _Optional[str] = ..., state: _Optional[_Union[WorkloadState, str]] = ..., site: _Optional[str] = ..., attempt: _Optional[int] = ..., trace_id: _Optional[str] = ..., message: _Optional[str] = ..., spec: _Optional[_Union[WorkloadSpec, _Mapping]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., reason: _Optional[str] = ..., infra_requeues: _Optional[int] = ..., retry_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., nodes: _Optional[_Iterable[str]] = ..., queue_position: _Optional[int] = ..., site_unreachable_since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., requeue_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Node(_message.Message):
    __slots__ = ("name", "gpu_model", "gpus_allocatable", "gpus_allocated", "gpu_memory_gb", "cpus", "memory_gb", "labels")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    GPU_MODEL_FIELD_NUMBER: _ClassVar[int]
    GPUS_ALLOCATABLE_FIELD_NUMBER: _ClassVar[int]
    GPUS_ALLOCATED_FIELD_NUMBER: _ClassVar[int]
    GPU_MEMORY_GB_FIELD_NUMBER: _ClassVar[int]
    CPUS_FIELD_NUMBER: _ClassVar[int]
    MEMORY_GB_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    name: str
    gpu_model: str
    gpus_allocatable: int
    gpus_allocated: int
    gpu_memory_gb: float
    cpus: float
    memory_gb: float
    labels: _containers.ScalarMap[str, str]
    def __init__(self, name: _Optional[str] = ..., gpu_model: _Optional[str] = ..., gpus_allocatable: _Optional[int] = ..., gpus_allocated: _Optional[int] = ..., gpu_memory_gb: _Optional[float] = ..., cpus: _Optional[float] = ..., memory_gb: _Optional[float] = ..., labels: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ScoreTerms(_message.Message):
    __slots__ = ("locality_hours", "cost_hkd", "load", "locality_part", "cost_part", "load_part", "tenant_hkd", "program_hkd", "total_hkd")
    LOCALITY_HOURS_FIELD_NUMBER: _ClassVar[int]
    COST_HKD_FIELD_NUMBER: _ClassVar[int]
    LOAD_FIELD_NUMBER: _ClassVar[int]
    LOCALITY_PART_FIELD_NUMBER: _ClassVar[int]
    COST_PART_FIELD_NUMBER: _ClassVar[int]
    LOAD_PART_FIELD_NUMBER: _ClassVar[int]
    TENANT_HKD_FIELD_NUMBER: _ClassVar[int]
    PROGRAM_HKD_FIELD_NUMBER: _ClassVar[int]
    TOTAL_HKD_FIELD_NUMBER: _ClassVar[int]
    locality_hours: float
    cost_hkd: float
    load: float
    locality_part: float
    cost_part: float
    load_part: float
    tenant_hkd: float
    program_hkd: float
    total_hkd: float
    def __init__(self, locality_hours: _Optional[float] = ..., cost_hkd: _Optional[float] = ..., load: _Optional[float] = ..., locality_part: _Optional[float] = ..., cost_part: _Optional[float] = ..., load_part: _Optional[float] = ..., tenant_hkd: _Optional[float] = ..., program_hkd: _Optional[float] = ..., total_hkd: _Optional[float] = ...) -> None: ...

class Candidate(_message.Message):
    __slots__ = ("site", "eligible", "reasons", "score", "terms")
    SITE_FIELD_NUMBER: _ClassVar[int]
    ELIGIBLE_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    TERMS_FIELD_NUMBER: _ClassVar[int]
    site: str
    eligible: bool
    reasons: _containers.RepeatedScalarFieldContainer[str]
    score: float
    terms: ScoreTerms
    def __init__(self, site: _Optional[str] = ..., eligible: _Optional[bool] = ..., reasons: _Optional[_Iterable[str]] = ..., score: _Optional[float] = ..., terms: _Optional[_Union[ScoreTerms, _Mapping]] = ...) -> None: ...

class Explanation(_message.Message):
    __slots__ = ("workload", "chosen", "candidates", "summary", "attempt", "decided_at")
    WORKLOAD_FIELD_NUMBER: _ClassVar[int]
    CHOSEN_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    DECIDED_AT_FIELD_NUMBER: _ClassVar[int]
    workload: str
    chosen: str
    candidates: _containers.RepeatedCompositeFieldContainer[Candidate]
    summary: str
    attempt: int
    decided_at: _timestamp_pb2.Timestamp
    def __init__(self, workload: _Optional[str] = ..., chosen: _Optional[str] = ..., candidates: _Optional[_Iterable[_Union[Candidate, _Mapping]]] = ..., summary: _Optional[str] = ..., attempt: _Optional[int] = ..., decided_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

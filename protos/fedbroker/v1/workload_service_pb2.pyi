import datetime

from fedbroker.v1 import types_pb2 as _types_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SubmitRequest(_message.Message):
    __slots__ = ("spec", "dry_run", "request_id")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    spec: _types_pb2.WorkloadSpec
    dry_run: bool
    request_id: str
    def __init__(self, spec: _Optional[_Union[_types_pb2.WorkloadSpec, _Mapping]] = ..., dry_run: _Optional[bool] = ..., request_id: _Optional[str] = ...) -> None: ...

class SubmitResponse(_message.Message):
    __slots__ = ("workload", "explanation", "quotes")
    WORKLOAD_FIELD_NUMBER: _ClassVar[int]
    EXPLANATION_FIELD_NUMBER: _ClassVar[int]
    QUOTES_FIELD_NUMBER: _ClassVar[int]
    workload: _types_pb2.Workload
    explanation: _types_pb2.Explanation
    quotes: _containers.RepeatedCompositeFieldContainer[SiteQuote]
    def __init__(self, workload: _Optional[_Union[_types_pb2.Workload, _Mapping]] = ..., explanation: _Optional[_Union[_types_pb2.Explanation, _Mapping]] = ..., quotes: _Optional[_Iterable[_Union[SiteQuote, _Mapping]]] = ...) -> None: ...

class SiteQuote(_message.Message):
    __slots__ = ("site", "eligible", "reasons", "gpu_model", "gpu_hours", "price_hkd_per_gpu_hour", "total_hkd", "program_hkd", "tenant_hkd", "program", "budget_left_after_hkd", "cap_left_after_hkd")
    SITE_FIELD_NUMBER: _ClassVar[int]
    ELIGIBLE_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    GPU_MODEL_FIELD_NUMBER: _ClassVar[int]
    GPU_HOURS_FIELD_NUMBER: _ClassVar[int]
    PRICE_HKD_PER_GPU_HOUR_FIELD_NUMBER: _ClassVar[int]
    TOTAL_HKD_FIELD_NUMBER: _ClassVar[int]
    PROGRAM_HKD_FIELD_NUMBER: _ClassVar[int]
    TENANT_HKD_FIELD_NUMBER: _ClassVar[int]
    PROGRAM_FIELD_NUMBER: _ClassVar[int]
    BUDGET_LEFT_AFTER_HKD_FIELD_NUMBER: _ClassVar[int]
    CAP_LEFT_AFTER_HKD_FIELD_NUMBER: _ClassVar[int]
    site: str
    eligible: bool
    reasons: _containers.RepeatedScalarFieldContainer[str]
    gpu_model: str
    gpu_hours: float
    price_hkd_per_gpu_hour: float
    total_hkd: float
    program_hkd: float
    tenant_hkd: float
    program: str
    budget_left_after_hkd: float
    cap_left_after_hkd: float
    def __init__(self, site: _Optional[str] = ..., eligible: _Optional[bool] = ..., reasons: _Optional[_Iterable[str]] = ..., gpu_model: _Optional[str] = ..., gpu_hours: _Optional[float] = ..., price_hkd_per_gpu_hour: _Optional[float] = ..., total_hkd: _Optional[float] = ..., program_hkd: _Optional[float] = ..., tenant_hkd: _Optional[float] = ..., program: _Optional[str] = ..., budget_left_after_hkd: _Optional[float] = ..., cap_left_after_hkd: _Optional[float] = ...) -> None: ...

class GetWorkloadRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class ListWorkloadsRequest(_message.Message):
    __slots__ = ("states", "limit", "tenant", "site", "name", "since", "page_token")
    STATES_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    SITE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    states: _containers.RepeatedScalarFieldContainer[_types_pb2.WorkloadState]
    limit: int
    tenant: str
    site: str
    name: str
    since: _timestamp_pb2.Timestamp
    page_token: str
    def __init__(self, states: _Optional[_Iterable[_Union[_types_pb2.WorkloadState, str]]] = ..., limit: _Optional[int] = ..., tenant: _Optional[str] = ..., site: _Optional[str] = ..., name: _Optional[str] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListWorkloadsResponse(_message.Message):
    __slots__ = ("workloads", "event_seq", "next_page_token")
    WORKLOADS_FIELD_NUMBER: _ClassVar[int]
    EVENT_SEQ_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    workloads: _containers.RepeatedCompositeFieldContainer[_types_pb2.Workload]
    event_seq: int
    next_page_token: str
    def __init__(self, workloads: _Optional[_Iterable[_Union[_types_pb2.Workload, _Mapping]]] = ..., event_seq: _Optional[int] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CancelWorkloadRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class WatchWorkloadRequest(_message.Message):
    __slots__ = ("id", "after_seq")
    ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQ_FIELD_NUMBER: _ClassVar[int]
    id: str
    after_seq: int
    def __init__(self, id: _Optional[str] = ..., after_seq: _Optional[int] = ...) -> None: ...

class WatchWorkloadsRequest(_message.Message):
    __slots__ = ("after_seq", "tenant")
    AFTER_SEQ_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    after_seq: int
    tenant: str
    def __init__(self, after_seq: _Optional[int] = ..., tenant: _Optional[str] = ...) -> None: ...

class ListEventsRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class ListEventsResponse(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[WorkloadEvent]
    def __init__(self, events: _Optional[_Iterable[_Union[WorkloadEvent, _Mapping]]] = ...) -> None: ...

class WorkloadEvent(_message.Message):
    __slots__ = ("workload_id", "seq", "state", "site", "attempt", "message", "at", "reason")
    WORKLOAD_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    SITE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    workload_id: str
    seq: int
    state: _types_pb2.WorkloadState
    site: str
    attempt: int
    message: str
    at: _timestamp_pb2.Timestamp
    reason: str
    def __init__(self, workload_id: _Optional[str] = ..., seq: _Optional[int] = ..., state: _Optional[_Union[_types_pb2.WorkloadState, str]] = ..., site: _Optional[str] = ..., attempt: _Optional[int] = ..., message: _Optional[str] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., reason: _Optional[str] = ...) -> None: ...

class ExplainRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class LogsRequest(_message.Message):
    __slots__ = ("id", "attempt", "tail", "follow")
    ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    TAIL_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_FIELD_NUMBER: _ClassVar[int]
    id: str
    attempt: int
    tail: int
    follow: bool
    def __init__(self, id: _Optional[str] = ..., attempt: _Optional[int] = ..., tail: _Optional[int] = ..., follow: _Optional[bool] = ...) -> None: ...

class LogLines(_message.Message):
    __slots__ = ("attempt", "site", "lines")
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    SITE_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    attempt: int
    site: str
    lines: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, attempt: _Optional[int] = ..., site: _Optional[str] = ..., lines: _Optional[_Iterable[str]] = ...) -> None: ...

class QueueRequest(_message.Message):
    __slots__ = ("tenant", "limit")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    limit: int
    def __init__(self, tenant: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class QueueResponse(_message.Message):
    __slots__ = ("workloads", "total", "fair_share")
    WORKLOADS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    FAIR_SHARE_FIELD_NUMBER: _ClassVar[int]
    workloads: _containers.RepeatedCompositeFieldContainer[QueuedWorkload]
    total: int
    fair_share: bool
    def __init__(self, workloads: _Optional[_Iterable[_Union[QueuedWorkload, _Mapping]]] = ..., total: _Optional[int] = ..., fair_share: _Optional[bool] = ...) -> None: ...

class QueuedWorkload(_message.Message):
    __slots__ = ("position", "id", "name", "tenant", "priority", "gpus", "gpu_model", "fair_share", "weight", "preferred_sites", "overflow_at", "reason", "preempted")
    POSITION_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    GPUS_FIELD_NUMBER: _ClassVar[int]
    GPU_MODEL_FIELD_NUMBER: _ClassVar[int]
    FAIR_SHARE_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    PREFERRED_SITES_FIELD_NUMBER: _ClassVar[int]
    OVERFLOW_AT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    PREEMPTED_FIELD_NUMBER: _ClassVar[int]
    position: int
    id: str
    name: str
    tenant: str
    priority: int
    gpus: int
    gpu_model: str
    fair_share: float
    weight: float
    preferred_sites: _containers.RepeatedScalarFieldContainer[str]
    overflow_at: _timestamp_pb2.Timestamp
    reason: str
    preempted: str
    def __init__(self, position: _Optional[int] = ..., id: _Optional[str] = ..., name: _Optional[str] = ..., tenant: _Optional[str] = ..., priority: _Optional[int] = ..., gpus: _Optional[int] = ..., gpu_model: _Optional[str] = ..., fair_share: _Optional[float] = ..., weight: _Optional[float] = ..., preferred_sites: _Optional[_Iterable[str]] = ..., overflow_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., reason: _Optional[str] = ..., preempted: _Optional[str] = ...) -> None: ...

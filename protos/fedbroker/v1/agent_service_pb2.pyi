from fedbroker.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AgentMessage(_message.Message):
    __slots__ = ("hello", "inventory", "update", "ack", "logs", "batch")
    HELLO_FIELD_NUMBER: _ClassVar[int]
    INVENTORY_FIELD_NUMBER: _ClassVar[int]
    UPDATE_FIELD_NUMBER: _ClassVar[int]
    ACK_FIELD_NUMBER: _ClassVar[int]
    LOGS_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    hello: Hello
    inventory: InventoryReport
    update: WorkloadUpdate
    ack: Ack
    logs: LogChunk
    batch: AgentBatch
    def __init__(self, hello: _Optional[_Union[Hello, _Mapping]] = ..., inventory: _Optional[_Union[InventoryReport, _Mapping]] = ..., update: _Optional[_Union[WorkloadUpdate, _Mapping]] = ..., ack: _Optional[_Union[Ack, _Mapping]] = ..., logs: _Optional[_Union[LogChunk, _Mapping]] = ..., batch: _Optional[_Union[AgentBatch, _Mapping]] = ...) -> None: ...

class AgentBatch(_message.Message):
    __slots__ = ("messages",)
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    messages: _containers.RepeatedCompositeFieldContainer[AgentMessage]
    def __init__(self, messages: _Optional[_Iterable[_Union[AgentMessage, _Mapping]]] = ...) -> None: ...

class Hello(_message.Message):
    __slots__ = ("site", "agent_id", "backends", "version")
    SITE_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    BACKENDS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    site: str
    agent_id: str
    backends: _containers.RepeatedScalarFieldContainer[str]
    version: str
    def __init__(self, site: _Optional[str] = ..., agent_id: _Optional[str] = ..., backends: _Optional[_Iterable[str]] = ..., version: _Optional[str] = ...) -> None: ...

class InventoryReport(_message.Message):
    __slots__ = ("seq", "nodes", "datasets", "workloads")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    DATASETS_FIELD_NUMBER: _ClassVar[int]
    WORKLOADS_FIELD_NUMBER: _ClassVar[int]
    seq: int
    nodes: _containers.RepeatedCompositeFieldContainer[_types_pb2.Node]
    datasets: _containers.RepeatedScalarFieldContainer[str]
    workloads: _containers.RepeatedCompositeFieldContainer[RunningWorkload]
    def __init__(self, seq: _Optional[int] = ..., nodes: _Optional[_Iterable[_Union[_types_pb2.Node, _Mapping]]] = ..., datasets: _Optional[_Iterable[str]] = ..., workloads: _Optional[_Iterable[_Union[RunningWorkload, _Mapping]]] = ...) -> None: ...

class RunningWorkload(_message.Message):
    __slots__ = ("workload_id", "attempt", "state", "nodes", "message", "exit_code", "reason")
    WORKLOAD_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    workload_id: str
    attempt: int
    state: _types_pb2.WorkloadState
    nodes: _containers.RepeatedScalarFieldContainer[str]
    message: str
    exit_code: int
    reason: str
    def __init__(self, workload_id: _Optional[str] = ..., attempt: _Optional[int] = ..., state: _Optional[_Union[_types_pb2.WorkloadState, str]] = ..., nodes: _Optional[_Iterable[str]] = ..., message: _Optional[str] = ..., exit_code: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class WorkloadUpdate(_message.Message):
    __slots__ = ("workload_id", "attempt", "state", "message", "exit_code", "reason")
    WORKLOAD_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    workload_id: str
    attempt: int
    state: _types_pb2.WorkloadState
    message: str
    exit_code: int
    reason: str
    def __init__(self, workload_id: _Optional[str] = ..., attempt: _Optional[int] = ..., state: _Optional[_Union[_types_pb2.WorkloadState, str]] = ..., message: _Optional[str] = ..., exit_code: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class Ack(_message.Message):
    __slots__ = ("workload_id", "attempt")
    WORKLOAD_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    workload_id: str
    attempt: int
    def __init__(self, workload_id: _Optional[str] = ..., attempt: _Optional[int] = ...) -> None: ...

class BrokerMessage(_message.Message):
    __slots__ = ("welcome", "assignment", "cancel", "fetch_logs", "stop_logs", "batch")
    WELCOME_FIELD_NUMBER: _ClassVar[int]
    ASSIGNMENT_FIELD_NUMBER: _ClassVar[int]
    CANCEL_FIELD_NUMBER: _ClassVar[int]
    FETCH_LOGS_FIELD_NUMBER: _ClassVar[int]
    STOP_LOGS_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    welcome: Welcome
    assignment: Assignment
    cancel: Cancel
    fetch_logs: FetchLogs
    stop_logs: StopLogs
    batch: BrokerBatch
    def __init__(self, welcome: _Optional[_Union[Welcome, _Mapping]] = ..., assignment: _Optional[_Union[Assignment, _Mapping]] = ..., cancel: _Optional[_Union[Cancel, _Mapping]] = ..., fetch_logs: _Optional[_Union[FetchLogs, _Mapping]] = ..., stop_logs: _Optional[_Union[StopLogs, _Mapping]] = ..., batch: _Optional[_Union[BrokerBatch, _Mapping]] = ...) -> None: ...

class BrokerBatch(_message.Message):
    __slots__ = ("messages",)
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    messages: _containers.RepeatedCompositeFieldContainer[BrokerMessage]
    def __init__(self, messages: _Optional[_Iterable[_Union[BrokerMessage, _Mapping]]] = ...) -> None: ...

class Welcome(_message.Message):
    __slots__ = ("broker_id", "heartbeat_ttl_s", "epoch")
    BROKER_ID_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_TTL_S_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    broker_id: str
    heartbeat_ttl_s: float
    epoch: int
    def __init__(self, broker_id: _Optional[str] = ..., heartbeat_ttl_s: _Optional[float] = ..., epoch: _Optional[int] = ...) -> None: ...

class Assignment(_message.Message):
    __slots__ = ("workload_id", "attempt", "tenant", "spec", "nodes", "trace_context", "epoch")
    class TraceContextEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    WORKLOAD_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    TRACE_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    workload_id: str
    attempt: int
    tenant: str
    spec: _types_pb2.WorkloadSpec
    nodes: _containers.RepeatedScalarFieldContainer[str]
    trace_context: _containers.ScalarMap[str, str]
    epoch: int
    def __init__(self, workload_id: _Optional[str] = ..., attempt: _Optional[int] = ..., tenant: _Optional[str] = ..., spec: _Optional[_Union[_types_pb2.WorkloadSpec, _Mapping]] = ..., nodes: _Optional[_Iterable[str]] = ..., trace_context: _Optional[_Mapping[str, str]] = ..., epoch: _Optional[int] = ...) -> None: ...

class Cancel(_message.Message):
    __slots__ = ("workload_id", "attempt", "reason", "epoch")
    WORKLOAD_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    workload_id: str
    attempt: int
    reason: str
    epoch: int
    def __init__(self, workload_id: _Optional[str] = ..., attempt: _Optional[int] = ..., reason: _Optional[str] = ..., epoch: _Optional[int] = ...) -> None: ...

class FetchLogs(_message.Message):
    __slots__ = ("request_id", "workload_id", "attempt", "tail", "follow")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    WORKLOAD_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    TAIL_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    workload_id: str
    attempt: int
    tail: int
    follow: bool
    def __init__(self, request_id: _Optional[str] = ..., workload_id: _Optional[str] = ..., attempt: _Optional[int] = ..., tail: _Optional[int] = ..., follow: _Optional[bool] = ...) -> None: ...

class StopLogs(_message.Message):
    __slots__ = ("request_id",)
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    def __init__(self, request_id: _Optional[str] = ...) -> None: ...

class LogChunk(_message.Message):
    __slots__ = ("request_id", "lines", "done", "error", "message")
    class Error(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        ERROR_UNSPECIFIED: _ClassVar[LogChunk.Error]
        ERROR_NOT_FOUND: _ClassVar[LogChunk.Error]
        ERROR_NO_LOGS: _ClassVar[LogChunk.Error]
        ERROR_BACKEND: _ClassVar[LogChunk.Error]
    ERROR_UNSPECIFIED: LogChunk.Error
    ERROR_NOT_FOUND: LogChunk.Error
    ERROR_NO_LOGS: LogChunk.Error
    ERROR_BACKEND: LogChunk.Error
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    lines: _containers.RepeatedScalarFieldContainer[str]
    done: bool
    error: LogChunk.Error
    message: str
    def __init__(self, request_id: _Optional[str] = ..., lines: _Optional[_Iterable[str]] = ..., done: _Optional[bool] = ..., error: _Optional[_Union[LogChunk.Error, str]] = ..., message: _Optional[str] = ...) -> None: ...

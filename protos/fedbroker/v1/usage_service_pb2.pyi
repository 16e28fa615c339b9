import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetUsageRequest(_message.Message):
    __slots__ = ("tenant", "site", "since", "until", "by")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    SITE_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    BY_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    site: str
    since: _timestamp_pb2.Timestamp
    until: _timestamp_pb2.Timestamp
    by: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, tenant: _Optional[str] = ..., site: _Optional[str] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., by: _Optional[_Iterable[str]] = ...) -> None: ...

class UsageRow(_message.Message):
    __slots__ = ("tenant", "program", "site", "gpu_hours", "cost_hkd", "tenant_hkd", "program_hkd", "gpu_model", "month", "total_hkd", "gpu_hours_exact", "total_hkd_exact", "program_hkd_exact", "tenant_hkd_exact")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    PROGRAM_FIELD_NUMBER: _ClassVar[int]
    SITE_FIELD_NUMBER: _ClassVar[int]
    GPU_HOURS_FIELD_NUMBER: _ClassVar[int]
    COST_HKD_FIELD_NUMBER: _ClassVar[int]
    TENANT_HKD_FIELD_NUMBER: _ClassVar[int]
    PROGRAM_HKD_FIELD_NUMBER: _ClassVar[int]
    GPU_MODEL_FIELD_NUMBER: _ClassVar[int]
    MONTH_FIELD_NUMBER: _ClassVar[int]
    TOTAL_HKD_FIELD_NUMBER: _ClassVar[int]
    GPU_HOURS_EXACT_FIELD_NUMBER: _ClassVar[int]
    TOTAL_HKD_EXACT_FIELD_NUMBER: _ClassVar[int]
    PROGRAM_HKD_EXACT_FIELD_NUMBER: _ClassVar[int]
    TENANT_HKD_EXACT_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    program: str
    site: str
    gpu_hours: float
    cost_hkd: float
    tenant_hkd: float
    program_hkd: float
    gpu_model: str
    month: str
    total_hkd: float
    gpu_hours_exact: str
    total_hkd_exact: str
    program_hkd_exact: str
    tenant_hkd_exact: str
    def __init__(self, tenant: _Optional[str] = ..., program: _Optional[str] = ..., site: _Optional[str] = ..., gpu_hours: _Optional[float] = ..., cost_hkd: _Optional[float] = ..., tenant_hkd: _Optional[float] = ..., program_hkd: _Optional[float] = ..., gpu_model: _Optional[str] = ..., month: _Optional[str] = ..., total_hkd: _Optional[float] = ..., gpu_hours_exact: _Optional[str] = ..., total_hkd_exact: _Optional[str] = ..., program_hkd_exact: _Optional[str] = ..., tenant_hkd_exact: _Optional[str] = ...) -> None: ...

class TenantBudget(_message.Message):
    __slots__ = ("tenant", "program", "budget_hkd", "spent_hkd", "reserved_hkd", "left_hkd", "month", "cap_hkd", "cap_used_hkd")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    PROGRAM_FIELD_NUMBER: _ClassVar[int]
    BUDGET_HKD_FIELD_NUMBER: _ClassVar[int]
    SPENT_HKD_FIELD_NUMBER: _ClassVar[int]
    RESERVED_HKD_FIELD_NUMBER: _ClassVar[int]
    LEFT_HKD_FIELD_NUMBER: _ClassVar[int]
    MONTH_FIELD_NUMBER: _ClassVar[int]
    CAP_HKD_FIELD_NUMBER: _ClassVar[int]
    CAP_USED_HKD_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    program: str
    budget_hkd: float
    spent_hkd: float
    reserved_hkd: float
    left_hkd: float
    month: str
    cap_hkd: float
    cap_used_hkd: float
    def __init__(self, tenant: _Optional[str] = ..., program: _Optional[str] = ..., budget_hkd: _Optional[float] = ..., spent_hkd: _Optional[float] = ..., reserved_hkd: _Optional[float] = ..., left_hkd: _Optional[float] = ..., month: _Optional[str] = ..., cap_hkd: _Optional[float] = ..., cap_used_hkd: _Optional[float] = ...) -> None: ...

class GetUsageResponse(_message.Message):
    __slots__ = ("rows", "budgets")
    ROWS_FIELD_NUMBER: _ClassVar[int]
    BUDGETS_FIELD_NUMBER: _ClassVar[int]
    rows: _containers.RepeatedCompositeFieldContainer[UsageRow]
    budgets: _containers.RepeatedCompositeFieldContainer[TenantBudget]
    def __init__(self, rows: _Optional[_Iterable[_Union[UsageRow, _Mapping]]] = ..., budgets: _Optional[_Iterable[_Union[TenantBudget, _Mapping]]] = ...) -> None: ...

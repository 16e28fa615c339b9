from fedbroker.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ListSitesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Site(_message.Message):
    __slots__ = ("name", "healthy", "gpus_total", "gpus_allocated", "gpus_reserved", "gpus_free", "backends", "load", "heartbeat_age_s", "datasets", "nodes", "gpu_models")
    NAME_FIELD_NUMBER: _ClassVar[int]
    HEALTHY_FIELD_NUMBER: _ClassVar[int]
    GPUS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    GPUS_ALLOCATED_FIELD_NUMBER: _ClassVar[int]
    GPUS_RESERVED_FIELD_NUMBER: _ClassVar[int]
    GPUS_FREE_FIELD_NUMBER: _ClassVar[int]
    BACKENDS_FIELD_NUMBER: _ClassVar[int]
    LOAD_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_AGE_S_FIELD_NUMBER: _ClassVar[int]
    DATASETS_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    GPU_MODELS_FIELD_NUMBER: _ClassVar[int]
    name: str
    healthy: bool
    gpus_total: int
    gpus_allocated: int
    gpus_reserved: int
    gpus_free: int
    backends: _containers.RepeatedScalarFieldContainer[str]
    load: float
    heartbeat_age_s: float
    datasets: _containers.RepeatedScalarFieldContainer[str]
    nodes: _containers.RepeatedCompositeFieldContainer[_types_pb2.Node]
    gpu_models: _containers.RepeatedCompositeFieldContainer[GpuModelUsage]
    def __init__(self, name: _Optional[str] = ..., healthy: _Optional[bool] = ..., gpus_total: _Optional[int] = ..., gpus_allocated: _Optional[int] = ..., gpus_reserved: _Optional[int] = ..., gpus_free: _Optional[int] = ..., backends: _Optional[_Iterable[str]] = ..., load: _Optional[float] = ..., heartbeat_age_s: _Optional[float] = ..., datasets: _Optional[_Iterable[str]] = ..., nodes: _Optional[_Iterable[_Union[_types_pb2.Node, _Mapping]]] = ..., gpu_models: _Optional[_Iterable[_Union[GpuModelUsage, _Mapping]]] = ...) -> None: ...

class GpuModelUsage(_message.Message):
    __slots__ = ("gpu_model", "gpus_total", "gpus_allocated", "gpus_reserved", "gpus_free", "price_hkd_per_gpu_hour")
    GPU_MODEL_FIELD_NUMBER: _ClassVar[int]
    GPUS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    GPUS_ALLOCATED_FIELD_NUMBER: _ClassVar[int]
    GPUS_RESERVED_FIELD_NUMBER: _ClassVar[int]
    GPUS_FREE_FIELD_NUMBER: _ClassVar[int]
    PRICE_HKD_PER_GPU_HOUR_FIELD_NUMBER: _ClassVar[int]
    gpu_model: str
    gpus_total: int
    gpus_allocated: int
    gpus_reserved: int
    gpus_free: int
    price_hkd_per_gpu_hour: float
    def __init__(self, gpu_model: _Optional[str] = ..., gpus_total: _Optional[int] = ..., gpus_allocated: _Optional[int] = ..., gpus_reserved: _Optional[int] = ..., gpus_free: _Optional[int] = ..., price_hkd_per_gpu_hour: _Optional[float] = ...) -> None: ...

class ListSitesResponse(_message.Message):
    __slots__ = ("sites",)
    SITES_FIELD_NUMBER: _ClassVar[int]
    sites: _containers.RepeatedCompositeFieldContainer[Site]
    def __init__(self, sites: _Optional[_Iterable[_Union[Site, _Mapping]]] = ...) -> None: ...

from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CpuInfo(_message.Message):
    __slots__ = ("arch", "cores_logical", "cores_physical", "max_freq_mhz", "model", "features")
    ARCH_FIELD_NUMBER: _ClassVar[int]
    CORES_LOGICAL_FIELD_NUMBER: _ClassVar[int]
    CORES_PHYSICAL_FIELD_NUMBER: _ClassVar[int]
    MAX_FREQ_MHZ_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    arch: str
    cores_logical: int
    cores_physical: int
    max_freq_mhz: float
    model: str
    features: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, arch: _Optional[str] = ..., cores_logical: _Optional[int] = ..., cores_physical: _Optional[int] = ..., max_freq_mhz: _Optional[float] = ..., model: _Optional[str] = ..., features: _Optional[_Iterable[str]] = ...) -> None: ...

class MemoryInfo(_message.Message):
    __slots__ = ("total_bytes", "available_bytes")
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_BYTES_FIELD_NUMBER: _ClassVar[int]
    total_bytes: int
    available_bytes: int
    def __init__(self, total_bytes: _Optional[int] = ..., available_bytes: _Optional[int] = ...) -> None: ...

class StorageInfo(_message.Message):
    __slots__ = ("path", "total_bytes", "free_bytes")
    PATH_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    FREE_BYTES_FIELD_NUMBER: _ClassVar[int]
    path: str
    total_bytes: int
    free_bytes: int
    def __init__(self, path: _Optional[str] = ..., total_bytes: _Optional[int] = ..., free_bytes: _Optional[int] = ...) -> None: ...

class OsInfo(_message.Message):
    __slots__ = ("system", "kernel", "distro", "hostname", "python")
    SYSTEM_FIELD_NUMBER: _ClassVar[int]
    KERNEL_FIELD_NUMBER: _ClassVar[int]
    DISTRO_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    PYTHON_FIELD_NUMBER: _ClassVar[int]
    system: str
    kernel: str
    distro: str
    hostname: str
    python: str
    def __init__(self, system: _Optional[str] = ..., kernel: _Optional[str] = ..., distro: _Optional[str] = ..., hostname: _Optional[str] = ..., python: _Optional[str] = ...) -> None: ...

class RuntimeInfo(_message.Message):
    __slots__ = ("name", "version", "delegates")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    DELEGATES_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    delegates: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., delegates: _Optional[_Iterable[str]] = ...) -> None: ...

class Accelerator(_message.Message):
    __slots__ = ("kind", "bus", "id", "name", "detail")
    KIND_FIELD_NUMBER: _ClassVar[int]
    BUS_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    kind: str
    bus: str
    id: str
    name: str
    detail: str
    def __init__(self, kind: _Optional[str] = ..., bus: _Optional[str] = ..., id: _Optional[str] = ..., name: _Optional[str] = ..., detail: _Optional[str] = ...) -> None: ...

class PowerSource(_message.Message):
    __slots__ = ("kind", "path", "name", "readable")
    KIND_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    READABLE_FIELD_NUMBER: _ClassVar[int]
    kind: str
    path: str
    name: str
    readable: bool
    def __init__(self, kind: _Optional[str] = ..., path: _Optional[str] = ..., name: _Optional[str] = ..., readable: _Optional[bool] = ...) -> None: ...

class PowerModel(_message.Message):
    __slots__ = ("idle_watts", "active_watts")
    IDLE_WATTS_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_WATTS_FIELD_NUMBER: _ClassVar[int]
    idle_watts: float
    active_watts: float
    def __init__(self, idle_watts: _Optional[float] = ..., active_watts: _Optional[float] = ...) -> None: ...

class HardwareProfile(_message.Message):
    __slots__ = ("cpu", "memory", "storage", "os", "runtime", "accelerators", "power_sources", "power_model", "hardware_class", "profile_name", "simulated", "latency_factor", "overridden")
    CPU_FIELD_NUMBER: _ClassVar[int]
    MEMORY_FIELD_NUMBER: _ClassVar[int]
    STORAGE_FIELD_NUMBER: _ClassVar[int]
    OS_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_FIELD_NUMBER: _ClassVar[int]
    ACCELERATORS_FIELD_NUMBER: _ClassVar[int]
    POWER_SOURCES_FIELD_NUMBER: _ClassVar[int]
    POWER_MODEL_FIELD_NUMBER: _ClassVar[int]
    HARDWARE_CLASS_FIELD_NUMBER: _ClassVar[int]
    PROFILE_NAME_FIELD_NUMBER: _ClassVar[int]
    SIMULATED_FIELD_NUMBER: _ClassVar[int]
    LATENCY_FACTOR_FIELD_NUMBER: _ClassVar[int]
    OVERRIDDEN_FIELD_NUMBER: _ClassVar[int]
    cpu: CpuInfo
    memory: MemoryInfo
    storage: StorageInfo
    os: OsInfo
    runtime: RuntimeInfo
    accelerators: _containers.RepeatedCompositeFieldContainer[Accelerator]
    power_sources: _containers.RepeatedCompositeFieldContainer[PowerSource]
    power_model: PowerModel
    hardware_class: str
    profile_name: str
    simulated: bool
    latency_factor: float
    overridden: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, cpu: _Optional[_Union[CpuInfo, _Mapping]] = ..., memory: _Optional[_Union[MemoryInfo, _Mapping]] = ..., storage: _Optional[_Union[StorageInfo, _Mapping]] = ..., os: _Optional[_Union[OsInfo, _Mapping]] = ..., runtime: _Optional[_Union[RuntimeInfo, _Mapping]] = ..., accelerators: _Optional[_Iterable[_Union[Accelerator, _Mapping]]] = ..., power_sources: _Optional[_Iterable[_Union[PowerSource, _Mapping]]] = ..., power_model: _Optional[_Union[PowerModel, _Mapping]] = ..., hardware_class: _Optional[str] = ..., profile_name: _Optional[str] = ..., simulated: _Optional[bool] = ..., latency_factor: _Optional[float] = ..., overridden: _Optional[_Iterable[str]] = ...) -> None: ...

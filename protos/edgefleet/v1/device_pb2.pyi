from edgefleet.v1 import hardware_pb2 as _hardware_pb2
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DeviceState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DEVICE_STATE_UNSPECIFIED: _ClassVar[DeviceState]
    DEVICE_STATE_REGISTERED: _ClassVar[DeviceState]
    DEVICE_STATE_ONLINE: _ClassVar[DeviceState]
    DEVICE_STATE_OFFLINE: _ClassVar[DeviceState]
    DEVICE_STATE_STOPPED: _ClassVar[DeviceState]
DEVICE_STATE_UNSPECIFIED: DeviceState
DEVICE_STATE_REGISTERED: DeviceState
DEVICE_STATE_ONLINE: DeviceState
DEVICE_STATE_OFFLINE: DeviceState
DEVICE_STATE_STOPPED: DeviceState

class Status(_message.Message):
    __slots__ = ("state", "reason", "agent_version")
    STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    state: DeviceState
    reason: str
    agent_version: str
    def __init__(self, state: _Optional[_Union[DeviceState, str]] = ..., reason: _Optional[str] = ..., agent_version: _Optional[str] = ...) -> None: ...

class ActiveModel(_message.Message):
    __slots__ = ("model", "version", "variant_id", "sha256", "sequence")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    VARIANT_ID_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: str
    variant_id: str
    sha256: str
    sequence: int
    def __init__(self, model: _Optional[str] = ..., version: _Optional[str] = ..., variant_id: _Optional[str] = ..., sha256: _Optional[str] = ..., sequence: _Optional[int] = ...) -> None: ...

class Hello(_message.Message):
    __slots__ = ("hardware", "agent_version", "protocol_version", "active_model", "last_manifest_sequence")
    HARDWARE_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_MODEL_FIELD_NUMBER: _ClassVar[int]
    LAST_MANIFEST_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    hardware: _hardware_pb2.HardwareProfile
    agent_version: str
    protocol_version: int
    active_model: ActiveModel
    last_manifest_sequence: int
    def __init__(self, hardware: _Optional[_Union[_hardware_pb2.HardwareProfile, _Mapping]] = ..., agent_version: _Optional[str] = ..., protocol_version: _Optional[int] = ..., active_model: _Optional[_Union[ActiveModel, _Mapping]] = ..., last_manifest_sequence: _Optional[int] = ...) -> None: ...

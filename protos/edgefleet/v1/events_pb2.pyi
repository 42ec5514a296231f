from edgefleet.v1 import device_pb2 as _device_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class InstallState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    INSTALL_STATE_UNSPECIFIED: _ClassVar[InstallState]
    INSTALL_STATE_DOWNLOADING: _ClassVar[InstallState]
    INSTALL_STATE_VERIFYING: _ClassVar[InstallState]
    INSTALL_STATE_STAGED: _ClassVar[InstallState]
    INSTALL_STATE_TRIAL: _ClassVar[InstallState]
    INSTALL_STATE_COMMITTED: _ClassVar[InstallState]
    INSTALL_STATE_ROLLED_BACK: _ClassVar[InstallState]
    INSTALL_STATE_FAILED: _ClassVar[InstallState]
INSTALL_STATE_UNSPECIFIED: InstallState
INSTALL_STATE_DOWNLOADING: InstallState
INSTALL_STATE_VERIFYING: InstallState
INSTALL_STATE_STAGED: InstallState
INSTALL_STATE_TRIAL: InstallState
INSTALL_STATE_COMMITTED: InstallState
INSTALL_STATE_ROLLED_BACK: InstallState
INSTALL_STATE_FAILED: InstallState

class Event(_message.Message):
    __slots__ = ("install", "profile_result", "rejected", "notice")
    INSTALL_FIELD_NUMBER: _ClassVar[int]
    PROFILE_RESULT_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    NOTICE_FIELD_NUMBER: _ClassVar[int]
    install: InstallProgress
    profile_result: ProfileResult
    rejected: CommandRejected
    notice: AgentNotice
    def __init__(self, install: _Optional[_Union[InstallProgress, _Mapping]] = ..., profile_result: _Optional[_Union[ProfileResult, _Mapping]] = ..., rejected: _Optional[_Union[CommandRejected, _Mapping]] = ..., notice: _Optional[_Union[AgentNotice, _Mapping]] = ...) -> None: ...

class InstallProgress(_message.Message):
    __slots__ = ("rollout_id", "model", "version", "variant_id", "sequence", "state", "bytes_done", "bytes_total", "reason", "figures", "active_model")
    class FiguresEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    ROLLOUT_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    VARIANT_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    BYTES_DONE_FIELD_NUMBER: _ClassVar[int]
    BYTES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    FIGURES_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_MODEL_FIELD_NUMBER: _ClassVar[int]
    rollout_id: str
    model: str
    version: str
    variant_id: str
    sequence: int
    state: InstallState
    bytes_done: int
    bytes_total: int
    reason: str
    figures: _containers.ScalarMap[str, float]
    active_model: _device_pb2.ActiveModel
    def __init__(self, rollout_id: _Optional[str] = ..., model: _Optional[str] = ..., version: _Optional[str] = ..., variant_id: _Optional[str] = ..., sequence: _Optional[int] = ..., state: _Optional[_Union[InstallState, str]] = ..., bytes_done: _Optional[int] = ..., bytes_total: _Optional[int] = ..., reason: _Optional[str] = ..., figures: _Optional[_Mapping[str, float]] = ..., active_model: _Optional[_Union[_device_pb2.ActiveModel, _Mapping]] = ...) -> None: ...

class ProfileResult(_message.Message):
    __slots__ = ("request_id", "variant_id", "load_ms", "p50_ms", "p95_ms", "peak_rss_bytes", "error", "simulated")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    VARIANT_ID_FIELD_NUMBER: _ClassVar[int]
    LOAD_MS_FIELD_NUMBER: _ClassVar[int]
    P50_MS_FIELD_NUMBER: _ClassVar[int]
    P95_MS_FIELD_NUMBER: _ClassVar[int]
    PEAK_RSS_BYTES_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    SIMULATED_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    variant_id: str
    load_ms: float
    p50_ms: float
    p95_ms: float
    peak_rss_bytes: int
    error: str
    simulated: bool
    def __init__(self, request_id: _Optional[str] = ..., variant_id: _Optional[str] = ..., load_ms: _Optional[float] = ..., p50_ms: _Optional[float] = ..., p95_ms: _Optional[float] = ..., peak_rss_bytes: _Optional[int] = ..., error: _Optional[str] = ..., simulated: _Optional[bool] = ...) -> None: ...

class CommandRejected(_message.Message):
    __slots__ = ("command_id", "reason")
    COMMAND_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    command_id: str
    reason: str
    def __init__(self, command_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class AgentNotice(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: str
    message: str
    def __init__(self, code: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

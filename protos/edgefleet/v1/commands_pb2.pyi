from edgefleet.v1 import manifest_pb2 as _manifest_pb2
from edgefleet.v1 import transfer_pb2 as _transfer_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Command(_message.Message):
    __slots__ = ("command_id", "deploy", "rollback", "profile", "config", "ping")
    COMMAND_ID_FIELD_NUMBER: _ClassVar[int]
    DEPLOY_FIELD_NUMBER: _ClassVar[int]
    ROLLBACK_FIELD_NUMBER: _ClassVar[int]
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    PING_FIELD_NUMBER: _ClassVar[int]
    command_id: str
    deploy: Deploy
    rollback: Rollback
    profile: ProfileRequest
    config: ConfigUpdate
    ping: Ping
    def __init__(self, command_id: _Optional[str] = ..., deploy: _Optional[_Union[Deploy, _Mapping]] = ..., rollback: _Optional[_Union[Rollback, _Mapping]] = ..., profile: _Optional[_Union[ProfileRequest, _Mapping]] = ..., config: _Optional[_Union[ConfigUpdate, _Mapping]] = ..., ping: _Optional[_Union[Ping, _Mapping]] = ...) -> None: ...

class Deploy(_message.Message):
    __slots__ = ("manifest", "broadcasts")
    MANIFEST_FIELD_NUMBER: _ClassVar[int]
    BROADCASTS_FIELD_NUMBER: _ClassVar[int]
    manifest: _manifest_pb2.SignedManifest
    broadcasts: _containers.RepeatedCompositeFieldContainer[_transfer_pb2.BlobBroadcast]
    def __init__(self, manifest: _Optional[_Union[_manifest_pb2.SignedManifest, _Mapping]] = ..., broadcasts: _Optional[_Iterable[_Union[_transfer_pb2.BlobBroadcast, _Mapping]]] = ...) -> None: ...

class RollbackOrder(_message.Message):
    __slots__ = ("device_id", "rollout_id", "sequence", "reason")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    ROLLOUT_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    rollout_id: str
    sequence: int
    reason: str
    def __init__(self, device_id: _Optional[str] = ..., rollout_id: _Optional[str] = ..., sequence: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class Rollback(_message.Message):
    __slots__ = ("order", "signature", "key_id")
    ORDER_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    order: bytes
    signature: bytes
    key_id: str
    def __init__(self, order: _Optional[bytes] = ..., signature: _Optional[bytes] = ..., key_id: _Optional[str] = ...) -> None: ...

class ProfileRequest(_message.Message):
    __slots__ = ("request_id", "candidates", "warmup", "runs")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    WARMUP_FIELD_NUMBER: _ClassVar[int]
    RUNS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    candidates: _containers.RepeatedCompositeFieldContainer[_manifest_pb2.SignedManifest]
    warmup: int
    runs: int
    def __init__(self, request_id: _Optional[str] = ..., candidates: _Optional[_Iterable[_Union[_manifest_pb2.SignedManifest, _Mapping]]] = ..., warmup: _Optional[int] = ..., runs: _Optional[int] = ...) -> None: ...

class ConfigUpdate(_message.Message):
    __slots__ = ("telemetry_interval_s", "num_threads", "extra")
    class ExtraEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TELEMETRY_INTERVAL_S_FIELD_NUMBER: _ClassVar[int]
    NUM_THREADS_FIELD_NUMBER: _ClassVar[int]
    EXTRA_FIELD_NUMBER: _ClassVar[int]
    telemetry_interval_s: int
    num_threads: int
    extra: _containers.ScalarMap[str, str]
    def __init__(self, telemetry_interval_s: _Optional[int] = ..., num_threads: _Optional[int] = ..., extra: _Optional[_Mapping[str, str]] = ...) -> None: ...

class Ping(_message.Message):
    __slots__ = ("nonce",)
    NONCE_FIELD_NUMBER: _ClassVar[int]
    nonce: str
    def __init__(self, nonce: _Optional[str] = ...) -> None: ...

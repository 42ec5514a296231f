from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class BlobRequest(_message.Message):
    __slots__ = ("sha256", "offsets", "chunk_size", "transfer_id", "ready")
    SHA256_FIELD_NUMBER: _ClassVar[int]
    OFFSETS_FIELD_NUMBER: _ClassVar[int]
    CHUNK_SIZE_FIELD_NUMBER: _ClassVar[int]
    TRANSFER_ID_FIELD_NUMBER: _ClassVar[int]
    READY_FIELD_NUMBER: _ClassVar[int]
    sha256: str
    offsets: _containers.RepeatedScalarFieldContainer[int]
    chunk_size: int
    transfer_id: str
    ready: bool
    def __init__(self, sha256: _Optional[str] = ..., offsets: _Optional[_Iterable[int]] = ..., chunk_size: _Optional[int] = ..., transfer_id: _Optional[str] = ..., ready: _Optional[bool] = ...) -> None: ...

class BlobChunk(_message.Message):
    __slots__ = ("sha256", "offset", "data", "total_size", "error", "transfer_id", "end")
    SHA256_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    TRANSFER_ID_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    sha256: str
    offset: int
    data: bytes
    total_size: int
    error: str
    transfer_id: str
    end: bool
    def __init__(self, sha256: _Optional[str] = ..., offset: _Optional[int] = ..., data: _Optional[bytes] = ..., total_size: _Optional[int] = ..., error: _Optional[str] = ..., transfer_id: _Optional[str] = ..., end: _Optional[bool] = ...) -> None: ...

class BlobBroadcast(_message.Message):
    __slots__ = ("sha256", "transfer_id", "key", "chunk_size")
    SHA256_FIELD_NUMBER: _ClassVar[int]
    TRANSFER_ID_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    CHUNK_SIZE_FIELD_NUMBER: _ClassVar[int]
    sha256: str
    transfer_id: str
    key: bytes
    chunk_size: int
    def __init__(self, sha256: _Optional[str] = ..., transfer_id: _Optional[str] = ..., key: _Optional[bytes] = ..., chunk_size: _Optional[int] = ...) -> None: ...

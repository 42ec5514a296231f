import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from edgefleet.v1 import commands_pb2 as _commands_pb2
from edgefleet.v1 import device_pb2 as _device_pb2
from edgefleet.v1 import events_pb2 as _events_pb2
from edgefleet.v1 import telemetry_pb2 as _telemetry_pb2
from edgefleet.v1 import transfer_pb2 as _transfer_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Envelope(_message.Message):
    __slots__ = ("message_id", "sent_at", "device_id", "protocol_version", "hello", "status", "command", "event", "telemetry", "blob_request", "blob_chunk")
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    SENT_AT_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    HELLO_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    TELEMETRY_FIELD_NUMBER: _ClassVar[int]
    BLOB_REQUEST_FIELD_NUMBER: _ClassVar[int]
    BLOB_CHUNK_FIELD_NUMBER: _ClassVar[int]
    message_id: str
    sent_at: _timestamp_pb2.Timestamp
    device_id: str
    protocol_version: int
    hello: _device_pb2.Hello
    status: _device_pb2.Status
    command: _commands_pb2.Command
    event: _events_pb2.Event
    telemetry: _telemetry_pb2.Telemetry
    blob_request: _transfer_pb2.BlobRequest
    blob_chunk: _transfer_pb2.BlobChunk
    def __init__(self, message_id: _Optional[str] = ..., sent_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., device_id: _Optional[str] = ..., protocol_version: _Optional[int] = ..., hello: _Optional[_Union[_device_pb2.Hello, _Mapping]] = ..., status: _Optional[_Union[_device_pb2.Status, _Mapping]] = ..., command: _Optional[_Union[_commands_pb2.Command, _Mapping]] = ..., event: _Optional[_Union[_events_pb2.Event, _Mapping]] = ..., telemetry: _Optional[_Union[_telemetry_pb2.Telemetry, _Mapping]] = ..., blob_request: _Optional[_Union[_transfer_pb2.BlobRequest, _Mapping]] = ..., blob_chunk: _Optional[_Union[_transfer_pb2.BlobChunk, _Mapping]] = ...) -> None: ...

from edgefleet.v1 import device_pb2 as _device_pb2
from edgefleet.v1 import manifest_pb2 as _manifest_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Tensor(_message.Message):
    __slots__ = ("name", "shape", "dtype", "data", "shared")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    SHARED_FIELD_NUMBER: _ClassVar[int]
    name: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    dtype: str
    data: bytes
    shared: SharedSlice
    def __init__(self, name: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ..., dtype: _Optional[str] = ..., data: _Optional[bytes] = ..., shared: _Optional[_Union[SharedSlice, _Mapping]] = ...) -> None: ...

class SharedSlice(_message.Message):
    __slots__ = ("region_id", "offset", "length")
    REGION_ID_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    region_id: int
    offset: int
    length: int
    def __init__(self, region_id: _Optional[int] = ..., offset: _Optional[int] = ..., length: _Optional[int] = ...) -> None: ...

class PredictRequest(_message.Message):
    __slots__ = ("model", "inputs", "outputs_to")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_TO_FIELD_NUMBER: _ClassVar[int]
    model: str
    inputs: _containers.RepeatedCompositeFieldContainer[Tensor]
    outputs_to: SharedSlice
    def __init__(self, model: _Optional[str] = ..., inputs: _Optional[_Iterable[_Union[Tensor, _Mapping]]] = ..., outputs_to: _Optional[_Union[SharedSlice, _Mapping]] = ...) -> None: ...

class PredictResponse(_message.Message):
    __slots__ = ("request_id", "outputs", "model", "latency_ms")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    outputs: _containers.RepeatedCompositeFieldContainer[Tensor]
    model: _device_pb2.ActiveModel
    latency_ms: float
    def __init__(self, request_id: _Optional[str] = ..., outputs: _Optional[_Iterable[_Union[Tensor, _Mapping]]] = ..., model: _Optional[_Union[_device_pb2.ActiveModel, _Mapping]] = ..., latency_ms: _Optional[float] = ...) -> None: ...

class ListLocalModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListLocalModelsResponse(_message.Message):
    __slots__ = ("models", "active_variant_id")
    MODELS_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_VARIANT_ID_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[_device_pb2.ActiveModel]
    active_variant_id: str
    def __init__(self, models: _Optional[_Iterable[_Union[_device_pb2.ActiveModel, _Mapping]]] = ..., active_variant_id: _Optional[str] = ...) -> None: ...

class DescribeModelRequest(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: str
    def __init__(self, model: _Optional[str] = ...) -> None: ...

class DescribeModelResponse(_message.Message):
    __slots__ = ("model", "inputs", "outputs", "runtime", "delegate", "delegate_reason")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_FIELD_NUMBER: _ClassVar[int]
    DELEGATE_FIELD_NUMBER: _ClassVar[int]
    DELEGATE_REASON_FIELD_NUMBER: _ClassVar[int]
    model: _device_pb2.ActiveModel
    inputs: _containers.RepeatedCompositeFieldContainer[_manifest_pb2.TensorSpec]
    outputs: _containers.RepeatedCompositeFieldContainer[_manifest_pb2.TensorSpec]
    runtime: str
    delegate: str
    delegate_reason: str
    def __init__(self, model: _Optional[_Union[_device_pb2.ActiveModel, _Mapping]] = ..., inputs: _Optional[_Iterable[_Union[_manifest_pb2.TensorSpec, _Mapping]]] = ..., outputs: _Optional[_Iterable[_Union[_manifest_pb2.TensorSpec, _Mapping]]] = ..., runtime: _Optional[str] = ..., delegate: _Optional[str] = ..., delegate_reason: _Optional[str] = ...) -> None: ...

class FeedbackRequest(_message.Message):
    __slots__ = ("request_id", "label", "target")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    label: int
    target: float
    def __init__(self, request_id: _Optional[str] = ..., label: _Optional[int] = ..., target: _Optional[float] = ...) -> None: ...

class FeedbackResponse(_message.Message):
    __slots__ = ("matched",)
    MATCHED_FIELD_NUMBER: _ClassVar[int]
    matched: bool
    def __init__(self, matched: _Optional[bool] = ...) -> None: ...

class RegisterRegionRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class RegisterRegionResponse(_message.Message):
    __slots__ = ("region_id", "size")
    REGION_ID_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    region_id: int
    size: int
    def __init__(self, region_id: _Optional[int] = ..., size: _Optional[int] = ...) -> None: ...

class UnregisterRegionRequest(_message.Message):
    __slots__ = ("region_id",)
    REGION_ID_FIELD_NUMBER: _ClassVar[int]
    region_id: int
    def __init__(self, region_id: _Optional[int] = ...) -> None: ...

class UnregisterRegionResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class HealthRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class HealthResponse(_message.Message):
    __slots__ = ("status", "detail")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    status: str
    detail: str
    def __init__(self, status: _Optional[str] = ..., detail: _Optional[str] = ...) -> None: ...

from edgefleet.v1 import device_pb2 as _device_pb2
from edgefleet.v1 import manifest_pb2 as _manifest_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Tensor(_message.Message):
    __slots__ = ("name", "shape", "dtype", "data")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    name: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    dtype: str
    data: bytes
    def __init__(self, name: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ..., dtype: _Optional[str] = ..., data: _Optional[bytes] = ...) -> None: ...

class PredictRequest(_message.Message):
    __slots__ = ("model", "inputs")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    model: str
    inputs: _containers.RepeatedCompositeFieldContainer[Tensor]
    def __init__(self, model: _Optional[str] = ..., inputs: _Optional[_Iterable[_Union[Tensor, _Mapping]]] = ...) -> None: ...

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

import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TensorSpec(_message.Message):
    __slots__ = ("name", "shape", "dtype", "scale", "zero_point")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SCALE_FIELD_NUMBER: _ClassVar[int]
    ZERO_POINT_FIELD_NUMBER: _ClassVar[int]
    name: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    dtype: str
    scale: float
    zero_point: int
    def __init__(self, name: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ..., dtype: _Optional[str] = ..., scale: _Optional[float] = ..., zero_point: _Optional[int] = ...) -> None: ...

class FeatureStats(_message.Message):
    __slots__ = ("bin_edges", "expected_fractions", "mean", "std")
    BIN_EDGES_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_FRACTIONS_FIELD_NUMBER: _ClassVar[int]
    MEAN_FIELD_NUMBER: _ClassVar[int]
    STD_FIELD_NUMBER: _ClassVar[int]
    bin_edges: _containers.RepeatedScalarFieldContainer[float]
    expected_fractions: _containers.RepeatedScalarFieldContainer[float]
    mean: float
    std: float
    def __init__(self, bin_edges: _Optional[_Iterable[float]] = ..., expected_fractions: _Optional[_Iterable[float]] = ..., mean: _Optional[float] = ..., std: _Optional[float] = ...) -> None: ...

class CalibrationStats(_message.Message):
    __slots__ = ("features",)
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    features: _containers.RepeatedCompositeFieldContainer[FeatureStats]
    def __init__(self, features: _Optional[_Iterable[_Union[FeatureStats, _Mapping]]] = ...) -> None: ...

class GoldenSet(_message.Message):
    __slots__ = ("sha256", "size_bytes", "count")
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    sha256: str
    size_bytes: int
    count: int
    def __init__(self, sha256: _Optional[str] = ..., size_bytes: _Optional[int] = ..., count: _Optional[int] = ...) -> None: ...

class AcceptanceThresholds(_message.Message):
    __slots__ = ("min_metric", "max_metric", "max_p95_ms", "max_error_rate")
    MIN_METRIC_FIELD_NUMBER: _ClassVar[int]
    MAX_METRIC_FIELD_NUMBER: _ClassVar[int]
    MAX_P95_MS_FIELD_NUMBER: _ClassVar[int]
    MAX_ERROR_RATE_FIELD_NUMBER: _ClassVar[int]
    min_metric: float
    max_metric: float
    max_p95_ms: float
    max_error_rate: float
    def __init__(self, min_metric: _Optional[float] = ..., max_metric: _Optional[float] = ..., max_p95_ms: _Optional[float] = ..., max_error_rate: _Optional[float] = ...) -> None: ...

class TrialPolicy(_message.Message):
    __slots__ = ("inferences", "seconds", "thresholds", "min_online_metric", "max_restarts")
    INFERENCES_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    THRESHOLDS_FIELD_NUMBER: _ClassVar[int]
    MIN_ONLINE_METRIC_FIELD_NUMBER: _ClassVar[int]
    MAX_RESTARTS_FIELD_NUMBER: _ClassVar[int]
    inferences: int
    seconds: int
    thresholds: AcceptanceThresholds
    min_online_metric: float
    max_restarts: int
    def __init__(self, inferences: _Optional[int] = ..., seconds: _Optional[int] = ..., thresholds: _Optional[_Union[AcceptanceThresholds, _Mapping]] = ..., min_online_metric: _Optional[float] = ..., max_restarts: _Optional[int] = ...) -> None: ...

class ModelManifest(_message.Message):
    __slots__ = ("device_id", "model", "version", "variant_id", "technique", "sha256", "size_bytes", "chunk_size", "sequence", "task", "inputs", "outputs", "input_features", "golden", "acceptance", "trial", "calibration", "rollout_id", "requires_delegate", "issued_at")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    VARIANT_ID_FIELD_NUMBER: _ClassVar[int]
    TECHNIQUE_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    CHUNK_SIZE_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    INPUT_FEATURES_FIELD_NUMBER: _ClassVar[int]
    GOLDEN_FIELD_NUMBER: _ClassVar[int]
    ACCEPTANCE_FIELD_NUMBER: _ClassVar[int]
    TRIAL_FIELD_NUMBER: _ClassVar[int]
    CALIBRATION_FIELD_NUMBER: _ClassVar[int]
    ROLLOUT_ID_FIELD_NUMBER: _ClassVar[int]
    REQUIRES_DELEGATE_FIELD_NUMBER: _ClassVar[int]
    ISSUED_AT_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    model: str
    version: str
    variant_id: str
    technique: str
    sha256: str
    size_bytes: int
    chunk_size: int
    sequence: int
    task: str
    inputs: _containers.RepeatedCompositeFieldContainer[TensorSpec]
    outputs: _containers.RepeatedCompositeFieldContainer[TensorSpec]
    input_features: _containers.RepeatedScalarFieldContainer[int]
    golden: GoldenSet
    acceptance: AcceptanceThresholds
    trial: TrialPolicy
    calibration: CalibrationStats
    rollout_id: str
    requires_delegate: str
    issued_at: _timestamp_pb2.Timestamp
    def __init__(self, device_id: _Optional[str] = ..., model: _Optional[str] = ..., version: _Optional[str] = ..., variant_id: _Optional[str] = ..., technique: _Optional[str] = ..., sha256: _Optional[str] = ..., size_bytes: _Optional[int] = ..., chunk_size: _Optional[int] = ..., sequence: _Optional[int] = ..., task: _Optional[str] = ..., inputs: _Optional[_Iterable[_Union[TensorSpec, _Mapping]]] = ..., outputs: _Optional[_Iterable[_Union[TensorSpec, _Mapping]]] = ..., input_features: _Optional[_Iterable[int]] = ..., golden: _Optional[_Union[GoldenSet, _Mapping]] = ..., acceptance: _Optional[_Union[AcceptanceThresholds, _Mapping]] = ..., trial: _Optional[_Union[TrialPolicy, _Mapping]] = ..., calibration: _Optional[_Union[CalibrationStats, _Mapping]] = ..., rollout_id: _Optional[str] = ..., requires_delegate: _Optional[str] = ..., issued_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class SignedManifest(_message.Message):
    __slots__ = ("manifest", "signature", "key_id")
    MANIFEST_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    manifest: bytes
    signature: bytes
    key_id: str
    def __init__(self, manifest: _Optional[bytes] = ..., signature: _Optional[bytes] = ..., key_id: _Optional[str] = ...) -> None: ...

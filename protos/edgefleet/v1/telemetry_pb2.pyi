import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class LatencyHistogram(_message.Message):
    __slots__ = ("bounds_ms", "counts", "sum_ms")
    BOUNDS_MS_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    SUM_MS_FIELD_NUMBER: _ClassVar[int]
    bounds_ms: _containers.RepeatedScalarFieldContainer[float]
    counts: _containers.RepeatedScalarFieldContainer[int]
    sum_ms: float
    def __init__(self, bounds_ms: _Optional[_Iterable[float]] = ..., counts: _Optional[_Iterable[int]] = ..., sum_ms: _Optional[float] = ...) -> None: ...

class PowerFigures(_message.Message):
    __slots__ = ("source", "avg_watts", "energy_per_inference_mj")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    AVG_WATTS_FIELD_NUMBER: _ClassVar[int]
    ENERGY_PER_INFERENCE_MJ_FIELD_NUMBER: _ClassVar[int]
    source: str
    avg_watts: float
    energy_per_inference_mj: float
    def __init__(self, source: _Optional[str] = ..., avg_watts: _Optional[float] = ..., energy_per_inference_mj: _Optional[float] = ...) -> None: ...

class AccuracyFigures(_message.Message):
    __slots__ = ("golden_metric", "golden_count", "online_metric", "online_count", "mean_confidence")
    GOLDEN_METRIC_FIELD_NUMBER: _ClassVar[int]
    GOLDEN_COUNT_FIELD_NUMBER: _ClassVar[int]
    ONLINE_METRIC_FIELD_NUMBER: _ClassVar[int]
    ONLINE_COUNT_FIELD_NUMBER: _ClassVar[int]
    MEAN_CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    golden_metric: float
    golden_count: int
    online_metric: float
    online_count: int
    mean_confidence: float
    def __init__(self, golden_metric: _Optional[float] = ..., golden_count: _Optional[int] = ..., online_metric: _Optional[float] = ..., online_count: _Optional[int] = ..., mean_confidence: _Optional[float] = ...) -> None: ...

class DriftFigures(_message.Message):
    __slots__ = ("method", "max_score", "per_feature", "samples")
    METHOD_FIELD_NUMBER: _ClassVar[int]
    MAX_SCORE_FIELD_NUMBER: _ClassVar[int]
    PER_FEATURE_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    method: str
    max_score: float
    per_feature: _containers.RepeatedScalarFieldContainer[float]
    samples: int
    def __init__(self, method: _Optional[str] = ..., max_score: _Optional[float] = ..., per_feature: _Optional[_Iterable[float]] = ..., samples: _Optional[int] = ...) -> None: ...

class ModelTelemetry(_message.Message):
    __slots__ = ("model", "version", "variant_id", "requests", "errors", "latency", "p50_ms", "p95_ms", "p99_ms", "inferences_per_s", "power", "accuracy", "drift")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    VARIANT_ID_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_FIELD_NUMBER: _ClassVar[int]
    P50_MS_FIELD_NUMBER: _ClassVar[int]
    P95_MS_FIELD_NUMBER: _ClassVar[int]
    P99_MS_FIELD_NUMBER: _ClassVar[int]
    INFERENCES_PER_S_FIELD_NUMBER: _ClassVar[int]
    POWER_FIELD_NUMBER: _ClassVar[int]
    ACCURACY_FIELD_NUMBER: _ClassVar[int]
    DRIFT_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: str
    variant_id: str
    requests: int
    errors: int
    latency: LatencyHistogram
    p50_ms: float
    p95_ms: float
    p99_ms: float
    inferences_per_s: float
    power: PowerFigures
    accuracy: AccuracyFigures
    drift: DriftFigures
    def __init__(self, model: _Optional[str] = ..., version: _Optional[str] = ..., variant_id: _Optional[str] = ..., requests: _Optional[int] = ..., errors: _Optional[int] = ..., latency: _Optional[_Union[LatencyHistogram, _Mapping]] = ..., p50_ms: _Optional[float] = ..., p95_ms: _Optional[float] = ..., p99_ms: _Optional[float] = ..., inferences_per_s: _Optional[float] = ..., power: _Optional[_Union[PowerFigures, _Mapping]] = ..., accuracy: _Optional[_Union[AccuracyFigures, _Mapping]] = ..., drift: _Optional[_Union[DriftFigures, _Mapping]] = ...) -> None: ...

class SystemTelemetry(_message.Message):
    __slots__ = ("cpu_percent", "rss_bytes", "has_temperature", "temperature_c", "memory_available_bytes", "storage_free_bytes")
    CPU_PERCENT_FIELD_NUMBER: _ClassVar[int]
    RSS_BYTES_FIELD_NUMBER: _ClassVar[int]
    HAS_TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_C_FIELD_NUMBER: _ClassVar[int]
    MEMORY_AVAILABLE_BYTES_FIELD_NUMBER: _ClassVar[int]
    STORAGE_FREE_BYTES_FIELD_NUMBER: _ClassVar[int]
    cpu_percent: float
    rss_bytes: int
    has_temperature: bool
    temperature_c: float
    memory_available_bytes: int
    storage_free_bytes: int
    def __init__(self, cpu_percent: _Optional[float] = ..., rss_bytes: _Optional[int] = ..., has_temperature: _Optional[bool] = ..., temperature_c: _Optional[float] = ..., memory_available_bytes: _Optional[int] = ..., storage_free_bytes: _Optional[int] = ...) -> None: ...

class Telemetry(_message.Message):
    __slots__ = ("window_start", "window_end", "system", "models", "outbox_dropped", "sequence")
    WINDOW_START_FIELD_NUMBER: _ClassVar[int]
    WINDOW_END_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    OUTBOX_DROPPED_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    window_start: _timestamp_pb2.Timestamp
    window_end: _timestamp_pb2.Timestamp
    system: SystemTelemetry
    models: _containers.RepeatedCompositeFieldContainer[ModelTelemetry]
    outbox_dropped: int
    sequence: int
    def __init__(self, window_start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., window_end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., system: _Optional[_Union[SystemTelemetry, _Mapping]] = ..., models: _Optional[_Iterable[_Union[ModelTelemetry, _Mapping]]] = ..., outbox_dropped: _Optional[int] = ..., sequence: _Optional[int] = ...) -> None: ...

import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from edgefleet.v1 import device_pb2 as _device_pb2
from edgefleet.v1 import events_pb2 as _events_pb2
from edgefleet.v1 import hardware_pb2 as _hardware_pb2
from edgefleet.v1 import manifest_pb2 as _manifest_pb2
from edgefleet.v1 import telemetry_pb2 as _telemetry_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TelemetryView(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TELEMETRY_VIEW_LATEST: _ClassVar[TelemetryView]
    TELEMETRY_VIEW_SUMMARY: _ClassVar[TelemetryView]
    TELEMETRY_VIEW_SERIES: _ClassVar[TelemetryView]
TELEMETRY_VIEW_LATEST: TelemetryView
TELEMETRY_VIEW_SUMMARY: TelemetryView
TELEMETRY_VIEW_SERIES: TelemetryView

class EnrollRequest(_message.Message):
    __slots__ = ("token", "hardware", "agent_version")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    HARDWARE_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    token: str
    hardware: _hardware_pb2.HardwareProfile
    agent_version: str
    def __init__(self, token: _Optional[str] = ..., hardware: _Optional[_Union[_hardware_pb2.HardwareProfile, _Mapping]] = ..., agent_version: _Optional[str] = ...) -> None: ...

class MqttSettings(_message.Message):
    __slots__ = ("url", "client_id", "username", "password", "protocol", "keepalive_s", "session_expiry_s")
    URL_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    KEEPALIVE_S_FIELD_NUMBER: _ClassVar[int]
    SESSION_EXPIRY_S_FIELD_NUMBER: _ClassVar[int]
    url: str
    client_id: str
    username: str
    password: str
    protocol: str
    keepalive_s: int
    session_expiry_s: int
    def __init__(self, url: _Optional[str] = ..., client_id: _Optional[str] = ..., username: _Optional[str] = ..., password: _Optional[str] = ..., protocol: _Optional[str] = ..., keepalive_s: _Optional[int] = ..., session_expiry_s: _Optional[int] = ...) -> None: ...

class EnrollResponse(_message.Message):
    __slots__ = ("device_id", "device_name", "mqtt", "coordinator_public_key", "key_id")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    DEVICE_NAME_FIELD_NUMBER: _ClassVar[int]
    MQTT_FIELD_NUMBER: _ClassVar[int]
    COORDINATOR_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    device_name: str
    mqtt: MqttSettings
    coordinator_public_key: bytes
    key_id: str
    def __init__(self, device_id: _Optional[str] = ..., device_name: _Optional[str] = ..., mqtt: _Optional[_Union[MqttSettings, _Mapping]] = ..., coordinator_public_key: _Optional[bytes] = ..., key_id: _Optional[str] = ...) -> None: ...

class Device(_message.Message):
    __slots__ = ("id", "name", "labels", "state", "last_seen", "hardware", "created_at", "enrolled_at", "active_model", "agent_version", "hardware_history", "model_history", "latest_telemetry")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_FIELD_NUMBER: _ClassVar[int]
    HARDWARE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    ENROLLED_AT_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_MODEL_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    HARDWARE_HISTORY_FIELD_NUMBER: _ClassVar[int]
    MODEL_HISTORY_FIELD_NUMBER: _ClassVar[int]
    LATEST_TELEMETRY_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    labels: _containers.ScalarMap[str, str]
    state: _device_pb2.DeviceState
    last_seen: _timestamp_pb2.Timestamp
    hardware: _hardware_pb2.HardwareProfile
    created_at: _timestamp_pb2.Timestamp
    enrolled_at: _timestamp_pb2.Timestamp
    active_model: _device_pb2.ActiveModel
    agent_version: str
    hardware_history: _containers.RepeatedCompositeFieldContainer[ProfileChange]
    model_history: _containers.RepeatedCompositeFieldContainer[ModelHistoryEntry]
    latest_telemetry: _telemetry_pb2.ModelTelemetry
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., state: _Optional[_Union[_device_pb2.DeviceState, str]] = ..., last_seen: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., hardware: _Optional[_Union[_hardware_pb2.HardwareProfile, _Mapping]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., enrolled_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., active_model: _Optional[_Union[_device_pb2.ActiveModel, _Mapping]] = ..., agent_version: _Optional[str] = ..., hardware_history: _Optional[_Iterable[_Union[ProfileChange, _Mapping]]] = ..., model_history: _Optional[_Iterable[_Union[ModelHistoryEntry, _Mapping]]] = ..., latest_telemetry: _Optional[_Union[_telemetry_pb2.ModelTelemetry, _Mapping]] = ...) -> None: ...

class ProfileChange(_message.Message):
    __slots__ = ("at", "changed", "hardware")
    AT_FIELD_NUMBER: _ClassVar[int]
    CHANGED_FIELD_NUMBER: _ClassVar[int]
    HARDWARE_FIELD_NUMBER: _ClassVar[int]
    at: _timestamp_pb2.Timestamp
    changed: _containers.RepeatedScalarFieldContainer[str]
    hardware: _hardware_pb2.HardwareProfile
    def __init__(self, at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., changed: _Optional[_Iterable[str]] = ..., hardware: _Optional[_Union[_hardware_pb2.HardwareProfile, _Mapping]] = ...) -> None: ...

class ModelHistoryEntry(_message.Message):
    __slots__ = ("at", "model", "state", "rollout_id", "reason")
    AT_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ROLLOUT_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    at: _timestamp_pb2.Timestamp
    model: _device_pb2.ActiveModel
    state: _events_pb2.InstallState
    rollout_id: str
    reason: str
    def __init__(self, at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., model: _Optional[_Union[_device_pb2.ActiveModel, _Mapping]] = ..., state: _Optional[_Union[_events_pb2.InstallState, str]] = ..., rollout_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class RegisterDeviceRequest(_message.Message):
    __slots__ = ("name", "labels", "token_ttl_s")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    TOKEN_TTL_S_FIELD_NUMBER: _ClassVar[int]
    name: str
    labels: _containers.ScalarMap[str, str]
    token_ttl_s: int
    def __init__(self, name: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., token_ttl_s: _Optional[int] = ...) -> None: ...

class RegisterDeviceResponse(_message.Message):
    __slots__ = ("device", "enrollment_token", "token_expires_at", "enroll_command")
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    ENROLLMENT_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOKEN_EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    ENROLL_COMMAND_FIELD_NUMBER: _ClassVar[int]
    device: Device
    enrollment_token: str
    token_expires_at: _timestamp_pb2.Timestamp
    enroll_command: str
    def __init__(self, device: _Optional[_Union[Device, _Mapping]] = ..., enrollment_token: _Optional[str] = ..., token_expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., enroll_command: _Optional[str] = ...) -> None: ...

class ListDevicesRequest(_message.Message):
    __slots__ = ("selector",)
    SELECTOR_FIELD_NUMBER: _ClassVar[int]
    selector: str
    def __init__(self, selector: _Optional[str] = ...) -> None: ...

class ListDevicesResponse(_message.Message):
    __slots__ = ("devices",)
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    devices: _containers.RepeatedCompositeFieldContainer[Device]
    def __init__(self, devices: _Optional[_Iterable[_Union[Device, _Mapping]]] = ...) -> None: ...

class GetDeviceRequest(_message.Message):
    __slots__ = ("ref",)
    REF_FIELD_NUMBER: _ClassVar[int]
    ref: str
    def __init__(self, ref: _Optional[str] = ...) -> None: ...

class LabelDeviceRequest(_message.Message):
    __slots__ = ("ref", "set", "remove")
    class SetEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    REF_FIELD_NUMBER: _ClassVar[int]
    SET_FIELD_NUMBER: _ClassVar[int]
    REMOVE_FIELD_NUMBER: _ClassVar[int]
    ref: str
    set: _containers.ScalarMap[str, str]
    remove: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, ref: _Optional[str] = ..., set: _Optional[_Mapping[str, str]] = ..., remove: _Optional[_Iterable[str]] = ...) -> None: ...

class RemoveDeviceRequest(_message.Message):
    __slots__ = ("ref",)
    REF_FIELD_NUMBER: _ClassVar[int]
    ref: str
    def __init__(self, ref: _Optional[str] = ...) -> None: ...

class RemoveDeviceResponse(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class PushModelChunk(_message.Message):
    __slots__ = ("header", "model", "data", "recipe", "spec")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    RECIPE_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    header: PushModelHeader
    model: FileChunk
    data: FileChunk
    recipe: FileChunk
    spec: FileChunk
    def __init__(self, header: _Optional[_Union[PushModelHeader, _Mapping]] = ..., model: _Optional[_Union[FileChunk, _Mapping]] = ..., data: _Optional[_Union[FileChunk, _Mapping]] = ..., recipe: _Optional[_Union[FileChunk, _Mapping]] = ..., spec: _Optional[_Union[FileChunk, _Mapping]] = ...) -> None: ...

class PushModelHeader(_message.Message):
    __slots__ = ("name", "version", "filename", "task", "recipe", "data_filename", "recipe_filename", "spec_filename")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    RECIPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FILENAME_FIELD_NUMBER: _ClassVar[int]
    RECIPE_FILENAME_FIELD_NUMBER: _ClassVar[int]
    SPEC_FILENAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    filename: str
    task: str
    recipe: str
    data_filename: str
    recipe_filename: str
    spec_filename: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., filename: _Optional[str] = ..., task: _Optional[str] = ..., recipe: _Optional[str] = ..., data_filename: _Optional[str] = ..., recipe_filename: _Optional[str] = ..., spec_filename: _Optional[str] = ...) -> None: ...

class FileChunk(_message.Message):
    __slots__ = ("data",)
    DATA_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    def __init__(self, data: _Optional[bytes] = ...) -> None: ...

class PushModelResponse(_message.Message):
    __slots__ = ("model", "version", "job_id", "existing")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    EXISTING_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: str
    job_id: str
    existing: bool
    def __init__(self, model: _Optional[str] = ..., version: _Optional[str] = ..., job_id: _Optional[str] = ..., existing: _Optional[bool] = ...) -> None: ...

class WatchJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class JobProgress(_message.Message):
    __slots__ = ("job_id", "state", "step", "done", "total", "message", "variant")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    VARIANT_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    state: str
    step: str
    done: int
    total: int
    message: str
    variant: Variant
    def __init__(self, job_id: _Optional[str] = ..., state: _Optional[str] = ..., step: _Optional[str] = ..., done: _Optional[int] = ..., total: _Optional[int] = ..., message: _Optional[str] = ..., variant: _Optional[_Union[Variant, _Mapping]] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelVersion]
    def __init__(self, models: _Optional[_Iterable[_Union[ModelVersion, _Mapping]]] = ...) -> None: ...

class GetModelRequest(_message.Message):
    __slots__ = ("ref",)
    REF_FIELD_NUMBER: _ClassVar[int]
    ref: str
    def __init__(self, ref: _Optional[str] = ...) -> None: ...

class ModelVersion(_message.Message):
    __slots__ = ("name", "version", "sha256", "task", "metric_name", "state", "created_at", "variants", "source_format", "job_id", "error", "recipe", "data_sha256", "baseline_id", "notes", "model_bytes", "model_flavor", "model_filename")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    METRIC_NAME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    VARIANTS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FORMAT_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    RECIPE_FIELD_NUMBER: _ClassVar[int]
    DATA_SHA256_FIELD_NUMBER: _ClassVar[int]
    BASELINE_ID_FIELD_NUMBER: _ClassVar[int]
    NOTES_FIELD_NUMBER: _ClassVar[int]
    MODEL_BYTES_FIELD_NUMBER: _ClassVar[int]
    MODEL_FLAVOR_FIELD_NUMBER: _ClassVar[int]
    MODEL_FILENAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    sha256: str
    task: str
    metric_name: str
    state: str
    created_at: _timestamp_pb2.Timestamp
    variants: _containers.RepeatedCompositeFieldContainer[Variant]
    source_format: str
    job_id: str
    error: str
    recipe: str
    data_sha256: str
    baseline_id: str
    notes: _containers.RepeatedScalarFieldContainer[str]
    model_bytes: int
    model_flavor: str
    model_filename: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., sha256: _Optional[str] = ..., task: _Optional[str] = ..., metric_name: _Optional[str] = ..., state: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., variants: _Optional[_Iterable[_Union[Variant, _Mapping]]] = ..., source_format: _Optional[str] = ..., job_id: _Optional[str] = ..., error: _Optional[str] = ..., recipe: _Optional[str] = ..., data_sha256: _Optional[str] = ..., baseline_id: _Optional[str] = ..., notes: _Optional[_Iterable[str]] = ..., model_bytes: _Optional[int] = ..., model_flavor: _Optional[str] = ..., model_filename: _Optional[str] = ...) -> None: ...

class EdgeTpuFit(_message.Message):
    __slots__ = ("status", "detail", "mapped_fraction", "compiled_sha256")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    MAPPED_FRACTION_FIELD_NUMBER: _ClassVar[int]
    COMPILED_SHA256_FIELD_NUMBER: _ClassVar[int]
    status: str
    detail: str
    mapped_fraction: float
    compiled_sha256: str
    def __init__(self, status: _Optional[str] = ..., detail: _Optional[str] = ..., mapped_fraction: _Optional[float] = ..., compiled_sha256: _Optional[str] = ...) -> None: ...

class Variant(_message.Message):
    __slots__ = ("id", "technique", "sha256", "size_bytes", "gzip_bytes", "metric", "latency_p50_ms", "latency_p95_ms", "peak_memory_bytes", "ops", "input_dtype", "output_dtype", "edgetpu", "figures", "error", "skipped", "input_features", "inputs", "outputs", "params")
    class FiguresEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class ParamsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    TECHNIQUE_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    GZIP_BYTES_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    LATENCY_P50_MS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_P95_MS_FIELD_NUMBER: _ClassVar[int]
    PEAK_MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    OPS_FIELD_NUMBER: _ClassVar[int]
    INPUT_DTYPE_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_DTYPE_FIELD_NUMBER: _ClassVar[int]
    EDGETPU_FIELD_NUMBER: _ClassVar[int]
    FIGURES_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    INPUT_FEATURES_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    id: str
    technique: str
    sha256: str
    size_bytes: int
    gzip_bytes: int
    metric: float
    latency_p50_ms: float
    latency_p95_ms: float
    peak_memory_bytes: int
    ops: _containers.RepeatedScalarFieldContainer[str]
    input_dtype: str
    output_dtype: str
    edgetpu: EdgeTpuFit
    figures: _containers.ScalarMap[str, float]
    error: str
    skipped: str
    input_features: _containers.RepeatedScalarFieldContainer[int]
    inputs: _containers.RepeatedCompositeFieldContainer[_manifest_pb2.TensorSpec]
    outputs: _containers.RepeatedCompositeFieldContainer[_manifest_pb2.TensorSpec]
    params: _containers.ScalarMap[str, str]
    def __init__(self, id: _Optional[str] = ..., technique: _Optional[str] = ..., sha256: _Optional[str] = ..., size_bytes: _Optional[int] = ..., gzip_bytes: _Optional[int] = ..., metric: _Optional[float] = ..., latency_p50_ms: _Optional[float] = ..., latency_p95_ms: _Optional[float] = ..., peak_memory_bytes: _Optional[int] = ..., ops: _Optional[_Iterable[str]] = ..., input_dtype: _Optional[str] = ..., output_dtype: _Optional[str] = ..., edgetpu: _Optional[_Union[EdgeTpuFit, _Mapping]] = ..., figures: _Optional[_Mapping[str, float]] = ..., error: _Optional[str] = ..., skipped: _Optional[str] = ..., input_features: _Optional[_Iterable[int]] = ..., inputs: _Optional[_Iterable[_Union[_manifest_pb2.TensorSpec, _Mapping]]] = ..., outputs: _Optional[_Iterable[_Union[_manifest_pb2.TensorSpec, _Mapping]]] = ..., params: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ExportVariantRequest(_message.Message):
    __slots__ = ("ref", "variant_id")
    REF_FIELD_NUMBER: _ClassVar[int]
    VARIANT_ID_FIELD_NUMBER: _ClassVar[int]
    ref: str
    variant_id: str
    def __init__(self, ref: _Optional[str] = ..., variant_id: _Optional[str] = ...) -> None: ...

class ProfileModelRequest(_message.Message):
    __slots__ = ("ref", "selector", "per_class")
    REF_FIELD_NUMBER: _ClassVar[int]
    SELECTOR_FIELD_NUMBER: _ClassVar[int]
    PER_CLASS_FIELD_NUMBER: _ClassVar[int]
    ref: str
    selector: str
    per_class: int
    def __init__(self, ref: _Optional[str] = ..., selector: _Optional[str] = ..., per_class: _Optional[int] = ...) -> None: ...

class ProfileModelResponse(_message.Message):
    __slots__ = ("device_ids", "request_id")
    DEVICE_IDS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    device_ids: _containers.RepeatedScalarFieldContainer[str]
    request_id: str
    def __init__(self, device_ids: _Optional[_Iterable[str]] = ..., request_id: _Optional[str] = ...) -> None: ...

class RolloutSpec(_message.Message):
    __slots__ = ("ref", "selector", "canary_percent", "canary_count", "waves", "min_metric", "max_p95_ms", "rate_per_minute", "device_timeout_s", "max_failure_percent", "min_devices_for_abort", "observe_s", "trial_inferences", "trial_seconds", "max_metric", "max_error_rate", "memory_fraction", "reason", "min_online_metric")
    REF_FIELD_NUMBER: _ClassVar[int]
    SELECTOR_FIELD_NUMBER: _ClassVar[int]
    CANARY_PERCENT_FIELD_NUMBER: _ClassVar[int]
    CANARY_COUNT_FIELD_NUMBER: _ClassVar[int]
    WAVES_FIELD_NUMBER: _ClassVar[int]
    MIN_METRIC_FIELD_NUMBER: _ClassVar[int]
    MAX_P95_MS_FIELD_NUMBER: _ClassVar[int]
    RATE_PER_MINUTE_FIELD_NUMBER: _ClassVar[int]
    DEVICE_TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    MAX_FAILURE_PERCENT_FIELD_NUMBER: _ClassVar[int]
    MIN_DEVICES_FOR_ABORT_FIELD_NUMBER: _ClassVar[int]
    OBSERVE_S_FIELD_NUMBER: _ClassVar[int]
    TRIAL_INFERENCES_FIELD_NUMBER: _ClassVar[int]
    TRIAL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MAX_METRIC_FIELD_NUMBER: _ClassVar[int]
    MAX_ERROR_RATE_FIELD_NUMBER: _ClassVar[int]
    MEMORY_FRACTION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MIN_ONLINE_METRIC_FIELD_NUMBER: _ClassVar[int]
    ref: str
    selector: str
    canary_percent: float
    canary_count: int
    waves: int
    min_metric: float
    max_p95_ms: float
    rate_per_minute: int
    device_timeout_s: int
    max_failure_percent: float
    min_devices_for_abort: int
    observe_s: int
    trial_inferences: int
    trial_seconds: int
    max_metric: float
    max_error_rate: float
    memory_fraction: float
    reason: str
    min_online_metric: float
    def __init__(self, ref: _Optional[str] = ..., selector: _Optional[str] = ..., canary_percent: _Optional[float] = ..., canary_count: _Optional[int] = ..., waves: _Optional[int] = ..., min_metric: _Optional[float] = ..., max_p95_ms: _Optional[float] = ..., rate_per_minute: _Optional[int] = ..., device_timeout_s: _Optional[int] = ..., max_failure_percent: _Optional[float] = ..., min_devices_for_abort: _Optional[int] = ..., observe_s: _Optional[int] = ..., trial_inferences: _Optional[int] = ..., trial_seconds: _Optional[int] = ..., max_metric: _Optional[float] = ..., max_error_rate: _Optional[float] = ..., memory_fraction: _Optional[float] = ..., reason: _Optional[str] = ..., min_online_metric: _Optional[float] = ...) -> None: ...

class DevicePlan(_message.Message):
    __slots__ = ("device_id", "device_name", "hardware_class", "variant_id", "reason", "excluded", "wave")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    DEVICE_NAME_FIELD_NUMBER: _ClassVar[int]
    HARDWARE_CLASS_FIELD_NUMBER: _ClassVar[int]
    VARIANT_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    EXCLUDED_FIELD_NUMBER: _ClassVar[int]
    WAVE_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    device_name: str
    hardware_class: str
    variant_id: str
    reason: str
    excluded: bool
    wave: int
    def __init__(self, device_id: _Optional[str] = ..., device_name: _Optional[str] = ..., hardware_class: _Optional[str] = ..., variant_id: _Optional[str] = ..., reason: _Optional[str] = ..., excluded: _Optional[bool] = ..., wave: _Optional[int] = ...) -> None: ...

class RolloutPlan(_message.Message):
    __slots__ = ("devices", "ref", "waves")
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    REF_FIELD_NUMBER: _ClassVar[int]
    WAVES_FIELD_NUMBER: _ClassVar[int]
    devices: _containers.RepeatedCompositeFieldContainer[DevicePlan]
    ref: str
    waves: int
    def __init__(self, devices: _Optional[_Iterable[_Union[DevicePlan, _Mapping]]] = ..., ref: _Optional[str] = ..., waves: _Optional[int] = ...) -> None: ...

class RolloutDevice(_message.Message):
    __slots__ = ("device_id", "device_name", "wave", "variant_id", "state", "install_state", "detail", "bytes_done", "bytes_total", "rollback", "updated_at", "sequence")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    DEVICE_NAME_FIELD_NUMBER: _ClassVar[int]
    WAVE_FIELD_NUMBER: _ClassVar[int]
    VARIANT_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    INSTALL_STATE_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    BYTES_DONE_FIELD_NUMBER: _ClassVar[int]
    BYTES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    ROLLBACK_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    device_name: str
    wave: int
    variant_id: str
    state: str
    install_state: _events_pb2.InstallState
    detail: str
    bytes_done: int
    bytes_total: int
    rollback: str
    updated_at: _timestamp_pb2.Timestamp
    sequence: int
    def __init__(self, device_id: _Optional[str] = ..., device_name: _Optional[str] = ..., wave: _Optional[int] = ..., variant_id: _Optional[str] = ..., state: _Optional[str] = ..., install_state: _Optional[_Union[_events_pb2.InstallState, str]] = ..., detail: _Optional[str] = ..., bytes_done: _Optional[int] = ..., bytes_total: _Optional[int] = ..., rollback: _Optional[str] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., sequence: _Optional[int] = ...) -> None: ...

class Rollout(_message.Message):
    __slots__ = ("id", "spec", "state", "current_wave", "devices", "device_states", "reason", "created_at", "updated_at", "progress", "waves", "finished_at", "counts")
    class DeviceStatesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class CountsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CURRENT_WAVE_FIELD_NUMBER: _ClassVar[int]
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    DEVICE_STATES_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    WAVES_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    id: str
    spec: RolloutSpec
    state: str
    current_wave: int
    devices: _containers.RepeatedCompositeFieldContainer[DevicePlan]
    device_states: _containers.ScalarMap[str, str]
    reason: str
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    progress: _containers.RepeatedCompositeFieldContainer[RolloutDevice]
    waves: int
    finished_at: _timestamp_pb2.Timestamp
    counts: _containers.ScalarMap[str, int]
    def __init__(self, id: _Optional[str] = ..., spec: _Optional[_Union[RolloutSpec, _Mapping]] = ..., state: _Optional[str] = ..., current_wave: _Optional[int] = ..., devices: _Optional[_Iterable[_Union[DevicePlan, _Mapping]]] = ..., device_states: _Optional[_Mapping[str, str]] = ..., reason: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., progress: _Optional[_Iterable[_Union[RolloutDevice, _Mapping]]] = ..., waves: _Optional[int] = ..., finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., counts: _Optional[_Mapping[str, int]] = ...) -> None: ...

class GetRolloutRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class ListRolloutsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListRolloutsResponse(_message.Message):
    __slots__ = ("rollouts",)
    ROLLOUTS_FIELD_NUMBER: _ClassVar[int]
    rollouts: _containers.RepeatedCompositeFieldContainer[Rollout]
    def __init__(self, rollouts: _Optional[_Iterable[_Union[Rollout, _Mapping]]] = ...) -> None: ...

class ControlRolloutRequest(_message.Message):
    __slots__ = ("id", "action", "reason")
    ID_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    id: str
    action: str
    reason: str
    def __init__(self, id: _Optional[str] = ..., action: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class TelemetryQuery(_message.Message):
    __slots__ = ("selector", "model", "since", "until", "device", "view", "limit", "include_histograms")
    SELECTOR_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    VIEW_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_HISTOGRAMS_FIELD_NUMBER: _ClassVar[int]
    selector: str
    model: str
    since: _timestamp_pb2.Timestamp
    until: _timestamp_pb2.Timestamp
    device: str
    view: TelemetryView
    limit: int
    include_histograms: bool
    def __init__(self, selector: _Optional[str] = ..., model: _Optional[str] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., device: _Optional[str] = ..., view: _Optional[_Union[TelemetryView, str]] = ..., limit: _Optional[int] = ..., include_histograms: _Optional[bool] = ...) -> None: ...

class TelemetryRow(_message.Message):
    __slots__ = ("device_id", "device_name", "at", "model", "system", "window_start", "windows", "outbox_dropped", "rolled_up")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    DEVICE_NAME_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_FIELD_NUMBER: _ClassVar[int]
    WINDOW_START_FIELD_NUMBER: _ClassVar[int]
    WINDOWS_FIELD_NUMBER: _ClassVar[int]
    OUTBOX_DROPPED_FIELD_NUMBER: _ClassVar[int]
    ROLLED_UP_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    device_name: str
    at: _timestamp_pb2.Timestamp
    model: _telemetry_pb2.ModelTelemetry
    system: _telemetry_pb2.SystemTelemetry
    window_start: _timestamp_pb2.Timestamp
    windows: int
    outbox_dropped: int
    rolled_up: bool
    def __init__(self, device_id: _Optional[str] = ..., device_name: _Optional[str] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., model: _Optional[_Union[_telemetry_pb2.ModelTelemetry, _Mapping]] = ..., system: _Optional[_Union[_telemetry_pb2.SystemTelemetry, _Mapping]] = ..., window_start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., windows: _Optional[int] = ..., outbox_dropped: _Optional[int] = ..., rolled_up: _Optional[bool] = ...) -> None: ...

class FleetModelTelemetry(_message.Message):
    __slots__ = ("model", "version", "devices", "requests", "errors", "inferences_per_s", "p50_ms", "p95_ms", "p99_ms", "energy_per_inference_mj", "energy_devices", "golden_accuracy", "golden_count", "online_accuracy", "online_count", "mean_confidence", "drift_max")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    INFERENCES_PER_S_FIELD_NUMBER: _ClassVar[int]
    P50_MS_FIELD_NUMBER: _ClassVar[int]
    P95_MS_FIELD_NUMBER: _ClassVar[int]
    P99_MS_FIELD_NUMBER: _ClassVar[int]
    ENERGY_PER_INFERENCE_MJ_FIELD_NUMBER: _ClassVar[int]
    ENERGY_DEVICES_FIELD_NUMBER: _ClassVar[int]
    GOLDEN_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    GOLDEN_COUNT_FIELD_NUMBER: _ClassVar[int]
    ONLINE_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    ONLINE_COUNT_FIELD_NUMBER: _ClassVar[int]
    MEAN_CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    DRIFT_MAX_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: str
    devices: int
    requests: int
    errors: int
    inferences_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    energy_per_inference_mj: float
    energy_devices: int
    golden_accuracy: float
    golden_count: int
    online_accuracy: float
    online_count: int
    mean_confidence: float
    drift_max: float
    def __init__(self, model: _Optional[str] = ..., version: _Optional[str] = ..., devices: _Optional[int] = ..., requests: _Optional[int] = ..., errors: _Optional[int] = ..., inferences_per_s: _Optional[float] = ..., p50_ms: _Optional[float] = ..., p95_ms: _Optional[float] = ..., p99_ms: _Optional[float] = ..., energy_per_inference_mj: _Optional[float] = ..., energy_devices: _Optional[int] = ..., golden_accuracy: _Optional[float] = ..., golden_count: _Optional[int] = ..., online_accuracy: _Optional[float] = ..., online_count: _Optional[int] = ..., mean_confidence: _Optional[float] = ..., drift_max: _Optional[float] = ...) -> None: ...

class TelemetryResponse(_message.Message):
    __slots__ = ("rows", "fleet")
    ROWS_FIELD_NUMBER: _ClassVar[int]
    FLEET_FIELD_NUMBER: _ClassVar[int]
    rows: _containers.RepeatedCompositeFieldContainer[TelemetryRow]
    fleet: _containers.RepeatedCompositeFieldContainer[FleetModelTelemetry]
    def __init__(self, rows: _Optional[_Iterable[_Union[TelemetryRow, _Mapping]]] = ..., fleet: _Optional[_Iterable[_Union[FleetModelTelemetry, _Mapping]]] = ...) -> None: ...

"""Typed coordinator configuration: a TOML file, then EDGEFLEET_* environment variables over it.

Environment variables name a section and a key joined by a double underscore, e.g.
EDGEFLEET_STORE__URL=postgresql+psycopg://127.0.0.1/test or EDGEFLEET_MQTT__PASSWORD=...;
top-level keys have no section: EDGEFLEET_DATA_DIR. Unknown keys are errors that name the key.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ENV_PREFIX = "EDGEFLEET_"


class ConfigError(ValueError):
    """The configuration is unusable; the message names the key and what is wrong."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ServerConfig(_Section):
    grpc_address: str = Field("127.0.0.1:7400", description="host:port for the admin and enrollment gRPC API")
    public_address: str = Field("", description="host:port devices use to reach the gRPC API (printed in enroll commands); defaults to grpc_address")
    metrics_address: str = Field("127.0.0.1:7401", description="host:port for Prometheus /metrics; empty disables it")


class StoreConfig(_Section):
    url: str = Field("", description="SQLAlchemy URL; empty means a SQLite file in data_dir. postgresql+psycopg://... for PostgreSQL")

    @field_validator("url")
    @classmethod
    def _known_backend(cls, v: str) -> str:
        if v and not v.startswith(("sqlite", "postgresql")):
            raise ValueError("only sqlite:// and postgresql:// URLs are supported")
        return v


class MqttConfig(_Section):
    url: str = Field("mqtt://127.0.0.1:1883", description="broker the coordinator connects to")
    device_url: str = Field("", description="broker URL handed to devices at enrollment; defaults to url")
    protocol: Literal["5", "3.1.1"] = Field("5", description="MQTT protocol version, for the coordinator and the devices it enrolls")
    client_id: str = Field("", description="coordinator client id; defaults to edgefleet-coordinator-<hostname>")
    username: str = Field("", description="coordinator broker username")
    password: str = Field("", description="coordinator broker password (set it through EDGEFLEET_MQTT__PASSWORD)")
    keepalive_s: int = Field(30, ge=5, le=3600, description="coordinator keepalive")
    session_expiry_s: int = Field(86400, ge=1, description="persistent session lifetime on the broker")
    device_keepalive_s: int = Field(30, ge=1, le=3600, description="keepalive given to devices: a dead device shows offline within 1.5x this")
    share_group: str = Field("coordinators", description="shared-subscription group of the coordinator replicas; \"\" subscribes without sharing (for brokers without shared subscriptions, e.g. amqtt): then run one coordinator only")
    receive_maximum: int = Field(
        10_000,
        ge=1,
        le=65535,
        description="MQTT 5: QoS 1 messages the broker may send the coordinator before it acknowledges them (it acknowledges after storing); keep it several times telemetry.batch_size",
    )


class EnrollmentConfig(_Section):
    token_ttl_s: int = Field(86400, ge=60, description="lifetime of an enrollment token")


class BrokerAuthConfig(_Section):
    mode: Literal["none", "dynsec", "password_file"] = Field(
        "none",
        description="how device credentials reach the broker: none (anonymous broker), dynsec (mosquitto dynamic security plugin) or password_file (mosquitto password_file + reload)",
    )
    admin_username: str = Field("", description="dynsec admin user")
    admin_password: str = Field("", description="dynsec admin password (EDGEFLEET_BROKER_AUTH__ADMIN_PASSWORD)")
    timeout_s: float = Field(10.0, gt=0, description="how long to wait for the broker to apply a credentials change")
    password_file: str = Field("", description="password_file mode: the mosquitto password_file the coordinator rewrites")
    reload_pid_file: str = Field("", description="password_file mode: mosquitto's pid_file; the coordinator sends it SIGHUP to reload")
    reload_command: str = Field("", description="password_file mode: command that makes mosquitto reload, e.g. 'systemctl reload mosquitto'")


class ModelsConfig(_Section):
    max_model_bytes: int = Field(512 * 1024**2, ge=1, description="largest model upload accepted (a SavedModel counts zipped); checked while receiving, before any worker runs")
    max_data_bytes: int = Field(2 * 1024**3, ge=1, description="largest .npz data upload accepted")
    workers: int = Field(1, ge=1, le=64, description="optimization jobs run at the same time (each is a TensorFlow process)")
    job_timeout_s: float = Field(3 * 3600.0, gt=0, description="an optimization job still running after this long is killed and marked failed")
    artifacts_dir: str = Field("", description="content-addressed store of uploads and variants; empty means <data_dir>/artifacts (share it between replicas)")
    worker_command: str = Field("", description="command line of the optimizer worker; empty means '<this python> -m coordinator.optimize.worker'")


class TelemetryConfig(_Section):
    """Telemetry ingest and retention (see docs/telemetry.md and coordinator/telemetry/retention.py)."""

    ingest_process: bool = Field(
        True, description="decode, validate and write telemetry in a child process (its own core and GIL; the MQTT side keeps the coordinator's)"
    )
    batch_size: int = Field(500, ge=1, le=100_000, description="telemetry rows written per transaction (a writer that is behind takes up to 4x this at once)")
    flush_interval_s: float = Field(0.5, gt=0, le=60, description="longest a received report waits before it is written")
    queue_size: int = Field(100_000, ge=100, description="reports waiting for the writer; when full, ingest waits (nothing is dropped)")
    raw_retention_h: float = Field(48.0, gt=0, description="raw windows older than this are rolled up (when rollup_interval_s > 0) and deleted")
    rollup_interval_s: int = Field(300, ge=0, description="length of a downsampled rollup bucket; 0 keeps no rollups (raw rows past retention are just deleted)")
    rollup_retention_h: float = Field(24.0 * 90, gt=0, description="rollups older than this are deleted")
    maintenance_interval_s: float = Field(60.0, gt=0, description="how often the writer rolls up and deletes old telemetry")
    max_future_s: float = Field(300.0, ge=0, description="reports whose window ends further in the future than this (device clock skew) are dropped")
    live_window_s: float = Field(300.0, gt=0, description="/metrics fleet gauges count a device's latest report only when it ended within this many seconds")


class RolloutsConfig(_Section):
    """Defaults of the rollout engine (see docs/rollouts.md); a rollout's own options override them."""

    canary_percent: float = Field(10.0, ge=0, le=100, description="share of a rollout's devices in the canary wave when neither --canary N nor N% is given")
    waves: int = Field(1, ge=1, le=100, description="waves after the canary when --waves is not given")
    rate_per_minute: int = Field(0, ge=0, description="devices sent a deploy per minute, per rollout; 0 = no limit")
    device_timeout_s: float = Field(900.0, gt=0, description="a device that says nothing about its install for this long is marked timed_out (counts as a failure)")
    rollback_timeout_s: float = Field(300.0, gt=0, description="after an abort, how long to wait for each device to report it rolled back")
    resend_s: float = Field(120.0, gt=0, description="a deploy or rollback the device has not answered is published again (same command id: the agent runs it once) after this long")
    max_failure_percent: float = Field(20.0, ge=0, le=100, description="abort when more than this share of finished devices failed, rolled back or timed out ...")
    min_devices_for_abort: int = Field(3, ge=1, description="... once at least this many devices have finished")
    observe_s: float = Field(0.0, ge=0, description="after each wave, watch the telemetry of its devices this long before the next wave (0 = go on at once)")
    memory_fraction: float = Field(0.5, gt=0, le=1, description="selection: model bytes + arena must fit in this share of the device's available memory")
    storage_margin_bytes: int = Field(16 * 1024**2, ge=0, description="selection: free storage to leave after the new slot is written")
    chunk_size: int = Field(128 * 1024, ge=4096, le=1024**2, description="chunk size of model transfers (bytes)")
    golden_samples: int = Field(256, ge=1, le=100_000, description="validation samples of the uploaded data shipped to devices as the golden set for the acceptance test")
    trial_inferences: int = Field(0, ge=0, description="default trial length on the device in inferences (0: the trial ends on time alone)")
    trial_seconds: int = Field(60, ge=0, description="default trial length on the device in seconds; with trial_inferences 0 too, no trial: the agent commits right after the acceptance test")
    tick_interval_s: float = Field(0.5, gt=0, le=60, description="how often the engine looks at running rollouts (it also wakes whenever a device finishes)")
    lease_s: float = Field(30.0, gt=0, description="a coordinator drives a rollout under a lease renewed every tick; another replica takes over after it lapses")


class CoordinatorConfig(_Section):
    data_dir: Path = Field(Path("~/.local/share/edgefleet/coordinator"), description="admin token, signing key, SQLite store, artifacts")
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="log level")
    server: ServerConfig = Field(default_factory=ServerConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    enrollment: EnrollmentConfig = Field(default_factory=EnrollmentConfig)
    broker_auth: BrokerAuthConfig = Field(default_factory=BrokerAuthConfig)
    models: ModelsConfig = Field(default_factory=ModelsConfig)
    telemetry: TelemetryConfig = Field(default_factory=TelemetryConfig)
    rollouts: RolloutsConfig = Field(default_factory=RolloutsConfig)

    @property
    def data_path(self) -> Path:
        return self.data_dir.expanduser()

    @property
    def store_url(self) -> str:
        return self.store.url or f"sqlite:///{self.data_path / 'edgefleet.db'}"

    @property
    def public_grpc_address(self) -> str:
        return self.server.public_address or self.server.grpc_address


def _env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    sections = {name for name, f in CoordinatorConfig.model_fields.items() if isinstance(f.default_factory, type)}
    top = set(CoordinatorConfig.model_fields) - sections
    out: dict[str, Any] = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        key = name[len(ENV_PREFIX):].lower()
        if "__" in key:
            section, _, field = key.partition("__")
            if section not in sections:
                raise ConfigError(f"unknown config section {section!r} in environment variable {name}")
            out.setdefault(section, {})[field] = value
        elif key in top:
            out[key] = value
        # Other EDGEFLEET_* variables (EDGEFLEET_TOKEN, EDGEFLEET_COORDINATOR) belong to edgectl.
    return out


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(merged.get(k), dict):
            merged[k] = _merge(merged[k], v)
        else:
            merged[k] = v
    return merged


def _describe(err: ValidationError, source: str) -> str:
    parts = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"])
        if e["type"] == "extra_forbidden":
            parts.append(f"unknown key '{loc}'")
        else:
            parts.append(f"'{loc}': {e['msg']}")
    return f"invalid configuration ({source}): " + "; ".join(parts)


def load_config(path: Path | None = None, environ: Mapping[str, str] | None = None) -> CoordinatorConfig:
    environ = os.environ if environ is None else environ
    data: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        try:
            data = tomllib.loads(Path(path).read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
        source = str(path)
    data = _merge(data, _env_overrides(environ))
    try:
        return CoordinatorConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, source + " + environment")) from None

"""Tables for telemetry (imported by store/db.py so that create_all sees them).

Three tables hold the same figures at three grains (coordinator/telemetry/retention.py has the policy):

  telemetry_samples   one row per report window and model version, as received (raw, kept raw_retention_h)
  telemetry_rollups   raw rows past retention merged per device, model version and rollup bucket
  telemetry_latest    each device's newest window per model version: the live view, GetDevice and /metrics

A report without any model (nothing loaded on the device) is stored with model = version = variant_id = ""
so that its system figures (CPU, RSS, temperature) are kept too.

Latency histograms travel inside `detail` (the serialized ModelTelemetry) without their bucket bounds: the
bounds are the same for almost every report, so they are stored once in telemetry_bucket_layouts and named
by a digest in `hist_layout`. Device rows are not foreign keys: telemetry of a removed device is ignored by
queries and leaves with retention, and a batch never fails because a device was removed meanwhile.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, DateTime, Float, Index, Integer, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from coordinator.store.schema import Base

# Longest strings accepted from a device (validation refuses longer ones, so a batch never hits a column limit).
MESSAGE_ID_LEN = 64
MODEL_LEN = 128
VERSION_LEN = 64
VARIANT_LEN = 128
SHORT_LEN = 32  # power source, drift method

_ID = BigInteger().with_variant(Integer, "sqlite")  # SQLite: an alias of the rowid, so it autoincrements


class _Figures:
    """Columns shared by the three tables: what queries filter, sort and aggregate on."""

    device_id: Mapped[str] = mapped_column(String(64), nullable=False)
    model: Mapped[str] = mapped_column(String(MODEL_LEN), nullable=False, default="")
    version: Mapped[str] = mapped_column(String(VERSION_LEN), nullable=False, default="")
    variant_id: Mapped[str] = mapped_column(String(VARIANT_LEN), nullable=False, default="")
    window_start: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    window_end: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    windows: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    covered_s: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)  # summed window lengths
    requests: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    errors: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    p50_ms: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    p95_ms: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    p99_ms: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    inferences_per_s: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    power_source: Mapped[str] = mapped_column(String(SHORT_LEN), nullable=False, default="")
    avg_watts: Mapped[float | None] = mapped_column(Float)
    energy_mj: Mapped[float | None] = mapped_column(Float)  # per inference
    golden_metric: Mapped[float | None] = mapped_column(Float)
    golden_count: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    online_metric: Mapped[float | None] = mapped_column(Float)
    online_count: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    mean_confidence: Mapped[float | None] = mapped_column(Float)
    drift_method: Mapped[str] = mapped_column(String(SHORT_LEN), nullable=False, default="")
    drift_max: Mapped[float | None] = mapped_column(Float)
    cpu_percent: Mapped[float | None] = mapped_column(Float)
    rss_bytes: Mapped[int | None] = mapped_column(BigInteger)
    temperature_c: Mapped[float | None] = mapped_column(Float)
    memory_available_bytes: Mapped[int | None] = mapped_column(BigInteger)
    storage_free_bytes: Mapped[int | None] = mapped_column(BigInteger)
    outbox_dropped: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    hist_layout: Mapped[str] = mapped_column(String(16), nullable=False, default="")
    detail: Mapped[bytes | None] = mapped_column(LargeBinary)  # ModelTelemetry, histogram bounds left out


class TelemetrySampleRow(_Figures, Base):
    __tablename__ = "telemetry_samples"

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    message_id: Mapped[str] = mapped_column(String(MESSAGE_ID_LEN), nullable=False)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)  # when its batch was written
    sequence: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)

    __table_args__ = (
        # A QoS 1 redelivery carries the same message id: the second insert does nothing.
        UniqueConstraint("device_id", "message_id", "model", "version", "variant_id", name="uq_telemetry_samples_message"),
        # Few indexes: every one costs each insert. A device's rows are found through the unique index's
        # device_id prefix; time ranges and retention through window_end.
        Index("ix_telemetry_samples_end", "window_end"),
    )


class TelemetryRollupRow(_Figures, Base):
    __tablename__ = "telemetry_rollups"

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    bucket_start: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    bucket_s: Mapped[int] = mapped_column(Integer, nullable=False)

    __table_args__ = (
        UniqueConstraint("device_id", "model", "version", "variant_id", "bucket_start", name="uq_telemetry_rollups_bucket"),
        Index("ix_telemetry_rollups_device_end", "device_id", "window_end"),
        Index("ix_telemetry_rollups_end", "window_end"),
    )


class TelemetryLatestRow(_Figures, Base):
    __tablename__ = "telemetry_latest"

    # The composite key is the upsert target: one row per device and model version.
    device_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    model: Mapped[str] = mapped_column(String(MODEL_LEN), primary_key=True, default="")
    version: Mapped[str] = mapped_column(String(VERSION_LEN), primary_key=True, default="")
    variant_id: Mapped[str] = mapped_column(String(VARIANT_LEN), primary_key=True, default="")
    message_id: Mapped[str] = mapped_column(String(MESSAGE_ID_LEN), nullable=False)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    sequence: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    # No index on window_end: one row per device and model version, which the live view and /metrics read
    # whole, while every batch rewrites hundreds of them.


class TelemetryBucketLayoutRow(Base):
    """Latency-histogram bucket bounds, stored once and named by a digest (see coordinator/telemetry/layouts.py)."""

    __tablename__ = "telemetry_bucket_layouts"

    digest: Mapped[str] = mapped_column(String(16), primary_key=True)
    bounds_ms: Mapped[list] = mapped_column(JSON, nullable=False)


# Columns of _Figures, in declaration order: the writer, the rollup job and the queries copy these.
FIGURE_COLUMNS: tuple[str, ...] = tuple(c.name for c in TelemetryRollupRow.__table__.columns if c.name in _Figures.__annotations__)

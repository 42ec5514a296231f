"""Tables for rollouts (imported by store/db.py so that create_all sees them)."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, Boolean, DateTime, Float, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from coordinator.store.schema import Base

# ---------------------------------------------------------------------------------------------------
# Transfer and on-device profiling (coordinator/transfer/, coordinator/profiling/).
# Keyed by device id and artifact sha256 only, with no foreign keys to the model or device tables, so
# that these subsystems stay independent of how models are stored.


class DeviceSequenceRow(Base):
    """The last manifest/rollback sequence issued to a device: the agent refuses anything lower."""

    __tablename__ = "device_sequences"

    device_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    last_sequence: Mapped[int] = mapped_column(BigInteger, nullable=False)


class BlobGrantRow(Base):
    """A blob (model artifact, golden set) a device may fetch: written when a manifest naming it is issued."""

    __tablename__ = "blob_grants"

    device_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    granted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    sequence: Mapped[int] = mapped_column(BigInteger, nullable=False)  # of the first manifest that granted it


class ProfileRequestRow(Base):
    """A batch of candidate variants sent to a few devices to be benchmarked without activation."""

    __tablename__ = "profile_requests"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    model: Mapped[str] = mapped_column(String(128), default="", nullable=False)
    version: Mapped[str] = mapped_column(String(64), default="", nullable=False)
    device_ids: Mapped[list] = mapped_column(JSON, default=list, nullable=False)
    # [{variant_id, sha256, host_p50_ms, host_p95_ms}]: results name the variant id only.
    candidates: Mapped[list] = mapped_column(JSON, default=list, nullable=False)


class ProfileResultRow(Base):
    """One ProfileResult event as the agent sent it; message_id makes a QoS 1 redelivery a no-op."""

    __tablename__ = "profile_results"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    message_id: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    request_id: Mapped[str] = mapped_column(String(64), nullable=False)
    device_id: Mapped[str] = mapped_column(String(64), nullable=False)
    hardware_class: Mapped[str] = mapped_column(String(128), default="", nullable=False)
    variant_id: Mapped[str] = mapped_column(String(128), nullable=False)
    sha256: Mapped[str] = mapped_column(String(64), default="", nullable=False)
    load_ms: Mapped[float | None] = mapped_column(Float)
    p50_ms: Mapped[float | None] = mapped_column(Float)
    p95_ms: Mapped[float | None] = mapped_column(Float)
    peak_rss_bytes: Mapped[int | None] = mapped_column(BigInteger)
    error: Mapped[str] = mapped_column(Text, default="", nullable=False)
    simulated: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)

    __table_args__ = (Index("ix_profile_results_request", "request_id"),)


class MeasuredLatencyRow(Base):
    """Latest latency of one artifact measured on devices of one hardware class (what selection reads)."""

    __tablename__ = "measured_latency"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    hardware_class: Mapped[str] = mapped_column(String(128), primary_key=True)
    variant_id: Mapped[str] = mapped_column(String(128), default="", nullable=False)
    count: Mapped[int] = mapped_column(Integer, default=0, nullable=False)  # successful results
    error_count: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    p50_ms: Mapped[float | None] = mapped_column(Float)
    p95_ms: Mapped[float | None] = mapped_column(Float)
    load_ms: Mapped[float | None] = mapped_column(Float)
    peak_rss_bytes: Mapped[int | None] = mapped_column(BigInteger)
    simulated: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)
    last_error: Mapped[str] = mapped_column(Text, default="", nullable=False)
    host_p50_ms: Mapped[float | None] = mapped_column(Float)  # the coordinator's own figure, for speed factors
    host_p95_ms: Mapped[float | None] = mapped_column(Float)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


# ---------------------------------------------------------------------------------------------------
# Rollouts (the rollout engine) below.

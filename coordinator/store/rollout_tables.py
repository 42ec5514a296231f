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
from sqlalchemy import LargeBinary  # noqa: E402 - kept below the marker: the tables above belong to transfer/profiling

# The engine's state lives here, not in memory: a coordinator killed mid-rollout carries on from these
# rows when it starts again (coordinator/rollouts/). Timestamps come from the engine's injectable clock.


class RolloutRow(Base):
    """One rollout: its spec, its state (pending | running | paused | aborting | aborted | done) and wave."""

    __tablename__ = "rollouts"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    model: Mapped[str] = mapped_column(String(128), nullable=False)
    version: Mapped[str] = mapped_column(String(64), nullable=False)
    selector: Mapped[str] = mapped_column(Text, default="", nullable=False)
    # The rollout's parameters once defaults were applied (coordinator/rollouts/spec.py RolloutParams),
    # and per variant the golden set made for it.
    params: Mapped[dict] = mapped_column(JSON, default=dict, nullable=False)
    golden: Mapped[dict] = mapped_column(JSON, default=dict, nullable=False)
    state: Mapped[str] = mapped_column(String(16), nullable=False)
    reason: Mapped[str] = mapped_column(Text, default="", nullable=False)
    waves: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    current_wave: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    wave_started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    wave_done_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # every device of the wave finished
    abort_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Which coordinator drives it: renewed every tick, taken over by another replica once lapsed.
    lease_owner: Mapped[str] = mapped_column(String(64), default="", nullable=False)
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revision: Mapped[int] = mapped_column(BigInteger, default=0, nullable=False)  # bumped on every change (watchers)

    __table_args__ = (Index("ix_rollouts_state", "state"),)


class RolloutDeviceRow(Base):
    """One device of a rollout: pending -> sent -> installing -> committed | failed | rolled_back | timed_out,
    or skipped (excluded by selection, or never reached before an abort)."""

    __tablename__ = "rollout_devices"

    rollout_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    device_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, nullable=False)  # send order within the rollout
    device_name: Mapped[str] = mapped_column(String(128), default="", nullable=False)
    hardware_class: Mapped[str] = mapped_column(String(128), default="", nullable=False)
    wave: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    variant_id: Mapped[str] = mapped_column(String(128), default="", nullable=False)
    sha256: Mapped[str] = mapped_column(String(64), default="", nullable=False)
    choice: Mapped[str] = mapped_column(Text, default="", nullable=False)  # selection's reason
    state: Mapped[str] = mapped_column(String(16), nullable=False)
    install_state: Mapped[int] = mapped_column(Integer, default=0, nullable=False)  # events_pb2.InstallState
    detail: Mapped[str] = mapped_column(Text, default="", nullable=False)
    bytes_done: Mapped[int] = mapped_column(BigInteger, default=0, nullable=False)
    bytes_total: Mapped[int] = mapped_column(BigInteger, default=0, nullable=False)
    # The deploy exactly as published: a resend after a timeout or a restart publishes these bytes again,
    # and the agent runs a command id once.
    sequence: Mapped[int] = mapped_column(BigInteger, default=0, nullable=False)
    command_id: Mapped[str] = mapped_column(String(64), default="", nullable=False)
    command: Mapped[bytes | None] = mapped_column(LargeBinary)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    resent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_event_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # After an abort: "" | pending | sent | done | timed_out | rejected, with the signed order as published.
    rollback: Mapped[str] = mapped_column(String(16), default="", nullable=False)
    rollback_sequence: Mapped[int] = mapped_column(BigInteger, default=0, nullable=False)
    rollback_command_id: Mapped[str] = mapped_column(String(64), default="", nullable=False)
    rollback_command: Mapped[bytes | None] = mapped_column(LargeBinary)
    rollback_sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    rollback_resent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    revision: Mapped[int] = mapped_column(BigInteger, default=0, nullable=False)  # compare-and-set of concurrent writers

    __table_args__ = (
        Index("ix_rollout_devices_device", "device_id"),
        Index("ix_rollout_devices_command", "command_id"),
        Index("ix_rollout_devices_rollback_command", "rollback_command_id"),
    )


class RolloutClaimRow(Base):
    """A device in an unfinished rollout. The primary key makes a second rollout to it fail, even when two
    are created at once on two replicas; the claims go when the rollout ends."""

    __tablename__ = "rollout_claims"

    device_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    rollout_id: Mapped[str] = mapped_column(String(32), nullable=False)

    __table_args__ = (Index("ix_rollout_claims_rollout", "rollout_id"),)


class ModelHistoryRow(Base):
    """What a device ran and why it changed: every activation, commit, rollback and failed install it reported."""

    __tablename__ = "model_history"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    message_id: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)  # a QoS 1 redelivery is a no-op
    device_id: Mapped[str] = mapped_column(String(64), nullable=False)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    state: Mapped[int] = mapped_column(Integer, nullable=False)  # events_pb2.InstallState
    rollout_id: Mapped[str] = mapped_column(String(32), default="", nullable=False)
    sequence: Mapped[int] = mapped_column(BigInteger, default=0, nullable=False)
    model: Mapped[str] = mapped_column(String(128), default="", nullable=False)  # what the install was about
    version: Mapped[str] = mapped_column(String(64), default="", nullable=False)
    variant_id: Mapped[str] = mapped_column(String(128), default="", nullable=False)
    active: Mapped[bytes | None] = mapped_column(LargeBinary)  # ActiveModel: what runs after the change
    reason: Mapped[str] = mapped_column(Text, default="", nullable=False)

    __table_args__ = (Index("ix_model_history_device", "device_id", "id"),)

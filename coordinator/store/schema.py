"""Tables of the coordinator's store. Protobuf messages are kept as serialized bytes beside the columns queries need."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, DateTime, ForeignKey, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class DeviceRow(Base):
    __tablename__ = "devices"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True, nullable=False)
    labels: Mapped[dict] = mapped_column(JSON, default=dict, nullable=False)
    state: Mapped[str] = mapped_column(String(16), default="registered", nullable=False)
    last_seen: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    enrolled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    state_changed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    hardware: Mapped[bytes | None] = mapped_column(LargeBinary)       # HardwareProfile
    hardware_class: Mapped[str] = mapped_column(String(128), default="", nullable=False)
    agent_version: Mapped[str] = mapped_column(String(64), default="", nullable=False)
    active_model: Mapped[bytes | None] = mapped_column(LargeBinary)   # ActiveModel
    mqtt_username: Mapped[str] = mapped_column(String(128), default="", nullable=False)
    # Highest manifest sequence the device says it accepted (hello): new manifests must go above it.
    manifest_sequence: Mapped[int] = mapped_column(BigInteger, default=0, nullable=False)


class EnrollmentTokenRow(Base):
    __tablename__ = "enrollment_tokens"

    token_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"), nullable=False)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class HardwareHistoryRow(Base):
    __tablename__ = "hardware_history"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"), nullable=False)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    changed: Mapped[list] = mapped_column(JSON, default=list, nullable=False)
    hardware: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)

    __table_args__ = (Index("ix_hardware_history_device_at", "device_id", "at"),)


class StatusHistoryRow(Base):
    __tablename__ = "status_history"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"), nullable=False)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    state: Mapped[str] = mapped_column(String(16), nullable=False)
    reason: Mapped[str] = mapped_column(Text, default="", nullable=False)

    __table_args__ = (Index("ix_status_history_device_at", "device_id", "at"),)

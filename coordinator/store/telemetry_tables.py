"""Tables for telemetry (imported by store/db.py so that create_all sees them)."""
from __future__ import annotations

from coordinator.store.schema import Base  # noqa: F401

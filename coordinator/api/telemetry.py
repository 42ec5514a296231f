"""Admin API, telemetry. A mixin of AdminService (coordinator/api/admin.py); uses self.ctx."""
from __future__ import annotations

from coordinator.service.context import ServiceContext


class TelemetryAdmin:
    ctx: ServiceContext

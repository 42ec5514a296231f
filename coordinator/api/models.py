"""Admin API, models. A mixin of AdminService (coordinator/api/admin.py); uses self.ctx."""
from __future__ import annotations

from coordinator.service.context import ServiceContext


class ModelAdmin:
    ctx: ServiceContext

"""The Admin gRPC service behind edgectl, composed of one mixin per area.

Each area lives in its own module (devices.py, and models/rollouts/telemetry as they land) as a
mixin using `self.ctx` (a ServiceContext). Methods no mixin implements answer UNIMPLEMENTED through
the generated base class. An area that runs background work defines `start_<area>()` and
`stop_<area>()`; start() and stop() call them in order.
"""
from __future__ import annotations

from coordinator.api.devices import DeviceAdmin
from coordinator.api.models import ModelAdmin
from coordinator.api.rollouts import RolloutAdmin
from coordinator.api.telemetry import TelemetryAdmin
from coordinator.service.context import ServiceContext
from edgefleet.v1 import admin_pb2_grpc

AREAS = (DeviceAdmin, ModelAdmin, RolloutAdmin, TelemetryAdmin)


class AdminService(*AREAS, admin_pb2_grpc.AdminServicer):
    def __init__(self, ctx: ServiceContext):
        self.ctx = ctx
        for area in AREAS:
            setup = getattr(area, "setup_area", None)
            if setup is not None:
                setup(self)

    def _hooks(self, prefix: str):
        for area in AREAS:
            for name, fn in vars(area).items():
                if name.startswith(prefix) and callable(fn):
                    yield fn

    def start(self) -> None:
        for fn in self._hooks("start_"):
            fn(self)

    def stop(self) -> None:
        for fn in reversed(list(self._hooks("stop_"))):
            fn(self)

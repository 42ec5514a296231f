"""Admin API, telemetry: ingest wiring, the writer's lifecycle, and QueryTelemetry.

A mixin of AdminService (coordinator/api/admin.py); uses self.ctx. setup_area registers the telemetry
handler with ingest and the fleet collector with /metrics; start/stop run the batch writer (stop writes
everything queued).
"""
from __future__ import annotations

from datetime import timezone

import grpc

from coordinator.service.context import ServiceContext
from coordinator.store.devices import DeviceNotFound
from coordinator.telemetry.queries import QueryError, TelemetryFilter
from coordinator.telemetry.service import TelemetryService
from edgefleet.labels import LabelError, parse_selector
from edgefleet.v1 import admin_pb2

VIEW_NAMES = {
    admin_pb2.TELEMETRY_VIEW_LATEST: "latest",
    admin_pb2.TELEMETRY_VIEW_SUMMARY: "summary",
    admin_pb2.TELEMETRY_VIEW_SERIES: "series",
}


class TelemetryAdmin:
    ctx: ServiceContext
    telemetry_service: TelemetryService

    def setup_area(self) -> None:
        ctx = self.ctx
        self.telemetry_service = TelemetryService(
            ctx.store, ctx.registry, ctx.metrics, ctx.cfg.telemetry, limiter=ctx.ingest.limiter, clock=ctx.clock,
            process=ctx.cfg.telemetry.ingest_process,
        )
        self.telemetry_service.attach(ctx.ingest)
        ctx.metrics.registry.register(self.telemetry_service.collector)

    def start_telemetry(self) -> None:
        self.telemetry_service.start()

    def stop_telemetry(self) -> None:
        self.telemetry_service.stop()

    def QueryTelemetry(self, request, context):
        view = VIEW_NAMES.get(request.view)
        if view is None:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"unknown telemetry view {request.view}")
        try:
            f = TelemetryFilter(
                device=request.device.strip(),
                selector=parse_selector(request.selector),
                model=request.model.strip(),
                since=request.since.ToDatetime(tzinfo=timezone.utc) if request.HasField("since") else None,
                until=request.until.ToDatetime(tzinfo=timezone.utc) if request.HasField("until") else None,
                view=view,
                limit=request.limit,
            )
            rows, fleet = self.telemetry_service.query(f)
        except (LabelError, QueryError) as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except DeviceNotFound as exc:
            context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
        if not request.include_histograms:
            for row in rows:  # ~1 KB each: most callers want the figures, not the buckets
                if row.HasField("model"):
                    row.model.ClearField("latency")
        return admin_pb2.TelemetryResponse(rows=rows, fleet=fleet)

"""Admin API, rollouts: plan, create, get, list, watch, pause / resume / abort.

A mixin of AdminService (coordinator/api/admin.py); uses self.ctx and the models area's artifact store
(self.model_service: ModelAdmin's setup_area runs before this one). setup_area also wires what getting
a model onto a device needs on the coordinator's side: the blob server (chunk requests), on-device
profiling results (read by selection), and install / rejected events (read by the engine).
"""
from __future__ import annotations

import logging
from pathlib import Path

import grpc

from coordinator.models.artifacts import ArtifactError
from coordinator.models.records import BadRef, ModelNotFound
from coordinator.profiling.results import ProfileResults, setup_profiling
from coordinator.rollouts.observe import TelemetryObserver
from coordinator.rollouts.planner import RolloutRefused
from coordinator.rollouts.repository import RolloutNotFound
from coordinator.rollouts.service import RolloutConflict, RolloutService
from coordinator.rollouts.spec import BadRolloutSpec
from coordinator.api.errors import abort_mapped
from coordinator.service.context import ServiceContext
from coordinator.transfer.blobs import BlobServer, setup_blob_server
from edgefleet.labels import LabelError

log = logging.getLogger(__name__)

_CODES = (
    (BadRolloutSpec, grpc.StatusCode.INVALID_ARGUMENT),
    (BadRef, grpc.StatusCode.INVALID_ARGUMENT),
    (LabelError, grpc.StatusCode.INVALID_ARGUMENT),
    (ModelNotFound, grpc.StatusCode.NOT_FOUND),
    (RolloutNotFound, grpc.StatusCode.NOT_FOUND),
    (RolloutRefused, grpc.StatusCode.FAILED_PRECONDITION),
    (RolloutConflict, grpc.StatusCode.FAILED_PRECONDITION),
)


def _abort(context, exc: Exception):
    abort_mapped(context, exc, _CODES)


class RolloutAdmin:
    ctx: ServiceContext
    rollout_service: RolloutService
    profile_results: ProfileResults
    blob_server: BlobServer

    def setup_area(self) -> None:
        ctx = self.ctx
        models = self.model_service  # ModelAdmin.setup_area ran first (AREAS order)
        artifacts = models.artifacts

        def resolve(sha256: str) -> Path | None:
            try:
                return artifacts.path(sha256) if artifacts.has(sha256) else None
            except ArtifactError:
                return None

        self.blob_server = setup_blob_server(ctx, resolve)
        self.profile_results = setup_profiling(ctx)
        self.rollout_service = RolloutService(
            store=ctx.store,
            registry=ctx.registry,
            signer=ctx.signer,
            publish=ctx.link.publish,
            cfg=ctx.cfg.rollouts,
            models=models.repository,
            artifacts=artifacts,
            measured=self.profile_results.measured,
            # The telemetry area sets itself up after this one: look it up when a wave is observed.
            observe=TelemetryObserver(lambda: getattr(self, "telemetry_service", None)),
            owner=models.node,
            clock=ctx.clock,
            limiter=ctx.ingest.limiter,
            broadcast=self.blob_server.open_broadcast,
        )
        self.rollout_service.register(ctx.ingest, ctx.metrics.registry)

    def start_rollouts(self) -> None:
        self.rollout_service.start()

    def stop_rollouts(self) -> None:
        self.rollout_service.stop()
        self.blob_server.close()

    def PlanRollout(self, request, context):
        try:
            return self.rollout_service.plan(request)
        except Exception as exc:  # noqa: BLE001 - mapped to a status, or re-raised
            _abort(context, exc)

    def CreateRollout(self, request, context):
        try:
            return self.rollout_service.create(request)
        except Exception as exc:  # noqa: BLE001
            _abort(context, exc)

    def GetRollout(self, request, context):
        try:
            return self.rollout_service.get(request.id)
        except Exception as exc:  # noqa: BLE001
            _abort(context, exc)

    def ListRollouts(self, request, context):
        try:
            return self.rollout_service.list()
        except Exception as exc:  # noqa: BLE001
            _abort(context, exc)

    def WatchRollout(self, request, context):
        try:
            yield from self.rollout_service.watch(request.id, context.is_active)
        except Exception as exc:  # noqa: BLE001
            _abort(context, exc)

    def ControlRollout(self, request, context):
        try:
            return self.rollout_service.control(request.id, request.action, request.reason)
        except Exception as exc:  # noqa: BLE001
            _abort(context, exc)

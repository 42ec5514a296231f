"""Admin API, models: push (upload + optimization job), watch a job, list, show, plot and export.

A mixin of AdminService (coordinator/api/admin.py); uses self.ctx. The work is in coordinator/models/
(ModelService); this module maps it onto gRPC: errors become status codes with one-line messages.
"""
from __future__ import annotations

import logging

import grpc

from coordinator.models import convert
from coordinator.models.artifacts import CHUNK, ArtifactError
from coordinator.models.records import BadRef, JobNotFound, ModelNotFound, VariantNotFound, VersionConflict
from coordinator.models.service import ModelService, NothingToPlot, VariantUnavailable
from coordinator.models.upload import UploadRejected, UploadTooLarge
from coordinator.api.errors import abort_mapped
from coordinator.service.context import ServiceContext
from edgefleet.v1 import admin_pb2

log = logging.getLogger(__name__)

_CODES = (
    (UploadTooLarge, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (UploadRejected, grpc.StatusCode.INVALID_ARGUMENT),
    (BadRef, grpc.StatusCode.INVALID_ARGUMENT),
    (VersionConflict, grpc.StatusCode.ALREADY_EXISTS),
    (ModelNotFound, grpc.StatusCode.NOT_FOUND),
    (VariantNotFound, grpc.StatusCode.NOT_FOUND),
    (JobNotFound, grpc.StatusCode.NOT_FOUND),
    (NothingToPlot, grpc.StatusCode.FAILED_PRECONDITION),
    (VariantUnavailable, grpc.StatusCode.FAILED_PRECONDITION),
    (ArtifactError, grpc.StatusCode.DATA_LOSS),
)


def _abort(context, exc: Exception):
    abort_mapped(context, exc, _CODES)


def _file_chunks(data: bytes):
    for i in range(0, len(data), CHUNK):
        yield admin_pb2.FileChunk(data=data[i : i + CHUNK])


class ModelAdmin:
    ctx: ServiceContext
    model_service: ModelService

    def setup_area(self) -> None:
        self.model_service = ModelService(self.ctx.cfg, self.ctx.store, clock=self.ctx.clock)

    def start_models(self) -> None:
        self.model_service.start()

    def stop_models(self) -> None:
        self.model_service.stop()

    def PushModel(self, request_iterator, context):
        try:
            outcome = self.model_service.push(request_iterator)
        except grpc.RpcError:
            # The client went away mid-upload (Ctrl-C, lost link): what it sent was discarded.
            log.info("a model upload was cancelled by the client; nothing was stored")
            context.abort(grpc.StatusCode.CANCELLED, "the upload was cancelled; nothing was stored")
        except Exception as exc:  # noqa: BLE001 - mapped to a status, or re-raised
            _abort(context, exc)
        v = outcome.version
        if outcome.existing:
            log.info("push of %s: the same files are version %s already (%s)", v.name, v.version, v.state)
        else:
            log.info("pushed %s (%s, %s bytes): job %s queued", v.ref, v.model_filename, v.model_bytes, outcome.job_id)
        return admin_pb2.PushModelResponse(model=v.name, version=v.version, job_id=outcome.job_id, existing=outcome.existing)

    def WatchJob(self, request, context):
        service = self.model_service
        try:
            last = None
            for job, variant in service.watch(request.job_id, context.is_active):
                last = job
                yield convert.job_progress(job, variant)
        except Exception as exc:  # noqa: BLE001
            _abort(context, exc)
        if last is not None and not last.finished and context.is_active():
            context.abort(grpc.StatusCode.UNAVAILABLE, f"the coordinator is stopping; job {request.job_id} resumes or fails when it starts again")

    def ListModels(self, request, context):
        try:
            versions = self.model_service.repository.list_versions(request.name.strip() or None)
        except Exception as exc:  # noqa: BLE001
            _abort(context, exc)
        return admin_pb2.ListModelsResponse(models=[convert.model_version(v) for v in versions])

    def GetModel(self, request, context):
        try:
            return convert.model_version(self.model_service.repository.get(request.ref))
        except Exception as exc:  # noqa: BLE001
            _abort(context, exc)

    def ExportVariant(self, request, context):
        try:
            _, variant = self.model_service.export(request.ref, request.variant_id)
            for chunk in self.model_service.artifacts.read_chunks(variant.sha256, CHUNK):
                yield admin_pb2.FileChunk(data=chunk)
        except Exception as exc:  # noqa: BLE001
            _abort(context, exc)

    def ProfileModel(self, request, context):
        """Benchmark a version's variants on a few devices of each hardware class (coordinator/profiling/).
        The results arrive as events and are stored by the profiling results the rollouts area set up."""
        from coordinator.profiling.api import ProfileRefused, profile_model
        from coordinator.rollouts.candidates import profile_variants

        try:
            version = self.model_service.repository.get(request.ref)
            if version.state != "ready":
                context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"{version.ref} is {version.state}; only a ready version can be profiled")
            variants = profile_variants(version, self.model_service.artifacts)
            return profile_model(
                self.ctx, variants, request, model=version.name, version=version.version, results=getattr(self, "profile_results", None)
            )
        except ProfileRefused as exc:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, " ".join(str(exc).split()))
        except Exception as exc:  # noqa: BLE001
            _abort(context, exc)

    def PlotModel(self, request, context):
        try:
            png = self.model_service.plot_png(request.ref)
        except Exception as exc:  # noqa: BLE001
            _abort(context, exc)
        yield from _file_chunks(png)

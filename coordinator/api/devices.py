"""Admin API, devices: register, list, show, label, remove."""
from __future__ import annotations

import logging

import grpc

from coordinator.api import convert
from coordinator.service.context import ServiceContext
from coordinator.store.devices import DeviceExists, DeviceNotFound
from edgefleet.labels import LabelError, check_label, parse_selector
from edgefleet.v1 import admin_pb2

log = logging.getLogger(__name__)


class DeviceAdmin:
    """Mixin of AdminService (coordinator/api/admin.py); uses self.ctx."""

    ctx: ServiceContext

    @property
    def registry(self):
        return self.ctx.registry

    def RegisterDevice(self, request, context):
        labels = dict(request.labels)
        try:
            for k, v in labels.items():
                check_label(k, v)
            reg = self.registry.register(request.name, labels, request.token_ttl_s or self.ctx.cfg.enrollment.token_ttl_s)
        except LabelError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except DeviceExists as exc:
            context.abort(grpc.StatusCode.ALREADY_EXISTS, str(exc))
        resp = admin_pb2.RegisterDeviceResponse(
            device=convert.device(reg.device),
            enrollment_token=reg.token,
            enroll_command=f"edge-agent enroll --coordinator {self.ctx.enroll_address()} --token {reg.token}",
        )
        resp.token_expires_at.CopyFrom(convert.ts(reg.expires_at))
        log.info("registered device %s (%s)", reg.device.name, reg.device.id)
        return resp

    def ListDevices(self, request, context):
        try:
            selector = parse_selector(request.selector)
        except LabelError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        return admin_pb2.ListDevicesResponse(devices=[convert.device(r) for r in self.registry.list(selector)])

    def GetDevice(self, request, context):
        row = self._get_device(request.ref, context)
        msg = convert.device(row)
        msg.hardware_history.extend(convert.hardware_change(h) for h in self.registry.hardware_history(row.id))
        rollouts = getattr(self, "rollout_service", None)  # the rollouts area (api/rollouts.py): install events it stored
        if rollouts is not None:
            msg.model_history.extend(rollouts.history(row.id))
        telemetry = getattr(self, "telemetry_service", None)  # the telemetry area (api/telemetry.py)
        if telemetry is not None:
            latest = telemetry.queries.latest_model(row.id)
            if latest is not None:
                msg.latest_telemetry.CopyFrom(latest)
        return msg

    def LabelDevice(self, request, context):
        try:
            for k, v in request.set.items():
                check_label(k, v)
            row = self.registry.label(request.ref, dict(request.set), list(request.remove))
        except LabelError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except DeviceNotFound as exc:
            context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
        return convert.device(row)

    def RemoveDevice(self, request, context):
        try:
            row = self.registry.remove(request.ref)
        except DeviceNotFound as exc:
            context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
        try:
            self.ctx.broker_auth.revoke(row.id)
        except Exception as exc:  # noqa: BLE001 - the device is gone from the registry either way
            log.warning("could not revoke broker credentials of %s: %s", row.id, exc)
        self.ctx.link.clear_retained(row.id)
        log.info("removed device %s (%s)", row.name, row.id)
        return admin_pb2.RemoveDeviceResponse(id=row.id)

    def _get_device(self, ref: str, context):
        try:
            return self.registry.get(ref)
        except DeviceNotFound as exc:
            context.abort(grpc.StatusCode.NOT_FOUND, str(exc))

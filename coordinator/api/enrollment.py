"""The Enrollment gRPC service: a one-time token in, the device's identity out."""
from __future__ import annotations

import logging
import secrets

import grpc

from coordinator.broker import BrokerAuth, BrokerAuthError
from coordinator.config import MqttConfig
from coordinator.signing import Signer
from coordinator.store.devices import DeviceRegistry, TokenRejected
from edgefleet.v1 import admin_pb2, admin_pb2_grpc

log = logging.getLogger(__name__)


class EnrollmentService(admin_pb2_grpc.EnrollmentServicer):
    def __init__(self, registry: DeviceRegistry, mqtt: MqttConfig, signer: Signer, broker_auth: BrokerAuth):
        self.registry = registry
        self.mqtt = mqtt
        self.signer = signer
        self.broker_auth = broker_auth

    def Enroll(self, request, context):
        password = secrets.token_urlsafe(24)
        hardware = request.hardware if request.HasField("hardware") else None
        try:
            row = self.registry.enroll(
                request.token, hardware, request.agent_version, before_commit=lambda r: self.broker_auth.provision(r.id, password)  # dynsec binds the client id to it
            )
        except TokenRejected as exc:
            log.warning("enrollment refused: %s", exc)
            context.abort(grpc.StatusCode.PERMISSION_DENIED, str(exc))
        except BrokerAuthError as exc:
            # The token was not spent: the device can enroll again once the broker is back.
            context.abort(grpc.StatusCode.UNAVAILABLE, f"the broker refused the device's credentials: {exc}")
        log.info("enrolled device %s (%s)", row.name, row.id)
        return admin_pb2.EnrollResponse(
            device_id=row.id,
            device_name=row.name,
            mqtt=admin_pb2.MqttSettings(
                url=self.mqtt.device_url or self.mqtt.url,
                client_id=row.id,
                username=row.mqtt_username,
                password=password,
                protocol=self.mqtt.protocol,
                keepalive_s=self.mqtt.device_keepalive_s,
                session_expiry_s=self.mqtt.session_expiry_s,
            ),
            coordinator_public_key=self.signer.public_raw,
            key_id=self.signer.key_id,
        )

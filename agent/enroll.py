"""Exchange an enrollment token for this device's identity over gRPC."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import grpc

from agent.identity import IDENTITY_FILE, Identity, MqttIdentity, prepare_state_dir, save_identity
from agent.version import AGENT_VERSION
from edgefleet.v1 import admin_pb2, admin_pb2_grpc, hardware_pb2


class EnrollError(RuntimeError):
    pass


def enroll(coordinator: str, token: str, state_dir: Path, hardware: hardware_pb2.HardwareProfile, *, force: bool = False, timeout_s: float = 15.0) -> Identity:
    state_dir = prepare_state_dir(state_dir)
    if (state_dir / IDENTITY_FILE).exists() and not force:
        raise EnrollError(f"this state directory is already enrolled ({state_dir / IDENTITY_FILE}); use --force to replace it")
    with grpc.insecure_channel(coordinator) as channel:
        stub = admin_pb2_grpc.EnrollmentStub(channel)
        try:
            resp = stub.Enroll(admin_pb2.EnrollRequest(token=token, hardware=hardware, agent_version=AGENT_VERSION), timeout=timeout_s)
        except grpc.RpcError as exc:
            code = exc.code()
            if (exc.details() or "").startswith("the broker refused"):
                raise EnrollError(f"the coordinator could not create this device's broker account: {exc.details()}") from None
            if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise EnrollError(f"cannot reach the coordinator at {coordinator}: {exc.details()}") from None
            raise EnrollError(f"the coordinator refused enrollment: {exc.details()}") from None
    m = resp.mqtt
    ident = Identity(
        device_id=resp.device_id,
        device_name=resp.device_name,
        coordinator=coordinator,
        mqtt=MqttIdentity(
            url=m.url,
            client_id=m.client_id,
            username=m.username,
            password=m.password,
            protocol=m.protocol or "5",
            keepalive_s=m.keepalive_s or 30,
            session_expiry_s=m.session_expiry_s or 86400,
        ),
        public_key_hex=resp.coordinator_public_key.hex(),
        key_id=resp.key_id,
        enrolled_at=datetime.now(timezone.utc).isoformat(),
    )
    save_identity(state_dir, ident)
    return ident

"""A fake coordinator Admin service for edgectl tests and bench/cli_startup.py.

It checks the admin token like the real one (metadata `authorization: Bearer <token>`), keeps a small
in-memory fleet built from the real protobuf messages, and records every request so that tests can see
exactly what edgectl sent.
"""
from __future__ import annotations

import threading
import time
import uuid
from concurrent import futures
from dataclasses import dataclass, field

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from edgefleet.v1 import admin_pb2, admin_pb2_grpc, device_pb2, events_pb2, hardware_pb2, telemetry_pb2

GIB = 1024**3


def _ts(epoch_s: float) -> Timestamp:
    ts = Timestamp()
    ts.FromNanoseconds(int(epoch_s * 1e9))
    return ts


def _hardware(kind: str) -> hardware_pb2.HardwareProfile:
    if kind == "raspberry-pi-4":
        return hardware_pb2.HardwareProfile(
            cpu=hardware_pb2.CpuInfo(arch="aarch64", cores_logical=4, cores_physical=4, max_freq_mhz=1800, model="Cortex-A72", features=["neon", "asimd"]),
            memory=hardware_pb2.MemoryInfo(total_bytes=8 * GIB, available_bytes=6 * GIB),
            storage=hardware_pb2.StorageInfo(path="/var/lib/edge-agent", total_bytes=64 * GIB, free_bytes=40 * GIB),
            os=hardware_pb2.OsInfo(system="Linux", kernel="6.1.0-rpi7", distro="Debian GNU/Linux 12 (bookworm)", hostname="cam-01", python="3.11.2"),
            runtime=hardware_pb2.RuntimeInfo(name="ai-edge-litert", version="2.3.0", delegates=["xnnpack"]),
            power_sources=[hardware_pb2.PowerSource(kind="hwmon", path="/sys/class/hwmon/hwmon0", name="rpi_volt", readable=True)],
            hardware_class="raspberry-pi-4", profile_name="raspberry-pi-4", simulated=True, latency_factor=4.0,
            overridden=["cpu.arch", "memory.total_bytes"],
        )
    if kind == "coral-dev-board":
        return hardware_pb2.HardwareProfile(
            cpu=hardware_pb2.CpuInfo(arch="aarch64", cores_logical=4, cores_physical=4, max_freq_mhz=1500),
            memory=hardware_pb2.MemoryInfo(total_bytes=1 * GIB, available_bytes=600 * 1024**2),
            storage=hardware_pb2.StorageInfo(path="/var/lib/edge-agent", total_bytes=8 * GIB, free_bytes=3 * GIB),
            os=hardware_pb2.OsInfo(system="Linux", kernel="4.14.98-imx", distro="Mendel GNU/Linux 5"),
            runtime=hardware_pb2.RuntimeInfo(name="tflite_runtime", version="2.5.0", delegates=["xnnpack", "edgetpu"]),
            accelerators=[hardware_pb2.Accelerator(kind="edgetpu", bus="pcie", id="/dev/apex_0", name="Coral Edge TPU")],
            hardware_class="coral-dev-board", profile_name="coral-dev-board", simulated=True, latency_factor=2.5,
        )
    return hardware_pb2.HardwareProfile(
        cpu=hardware_pb2.CpuInfo(arch="x86_64", cores_logical=2, cores_physical=2, max_freq_mhz=2900, features=["avx2", "fma"]),
        # Above 2**53 on purpose: JSON output must keep 64-bit integers exact and as numbers.
        memory=hardware_pb2.MemoryInfo(total_bytes=2**53 + 1, available_bytes=3 * GIB),
        storage=hardware_pb2.StorageInfo(path="/var/lib/edge-agent", total_bytes=100 * GIB, free_bytes=70 * GIB),
        os=hardware_pb2.OsInfo(system="Linux", kernel="6.8.0", distro="Ubuntu 24.04 LTS"),
        runtime=hardware_pb2.RuntimeInfo(name="ai-edge-litert", version="2.3.0"),
        accelerators=[hardware_pb2.Accelerator(kind="gpu", bus="pcie", id="/dev/nvidia0", name="NVIDIA T4")],
        hardware_class="x86_64-2c-avx2",
    )


def sample_fleet(now: float | None = None) -> list[admin_pb2.Device]:
    """Four devices in every state, three with hardware, one only registered."""
    now = time.time() if now is None else now
    rpi = admin_pb2.Device(
        id="d-rpi4-0001", name="cam-01", labels={"site": "lab", "class": "rpi4"}, state=device_pb2.DEVICE_STATE_ONLINE,
        last_seen=_ts(now - 12), hardware=_hardware("raspberry-pi-4"), created_at=_ts(now - 86400), enrolled_at=_ts(now - 86000),
        agent_version="0.1.0",
        active_model=device_pb2.ActiveModel(model="digits", version="3", variant_id="int8", sha256="ab" * 32, sequence=7),
    )
    rpi.hardware_history.add(at=_ts(now - 86000), changed=[], hardware=_hardware("raspberry-pi-4"))
    rpi.hardware_history.add(at=_ts(now - 3600), changed=["memory.available_bytes"], hardware=_hardware("raspberry-pi-4"))
    rpi.model_history.add(
        at=_ts(now - 1800), model=rpi.active_model, state=events_pb2.INSTALL_STATE_COMMITTED, rollout_id="r-1", reason="",
    )
    rpi.latest_telemetry.CopyFrom(telemetry_pb2.ModelTelemetry(
        model="digits", version="3", variant_id="int8", requests=12000, errors=3, p50_ms=1.2, p95_ms=2.5, p99_ms=4.0,
        inferences_per_s=20.0, power=telemetry_pb2.PowerFigures(source="estimate", avg_watts=3.1, energy_per_inference_mj=150.0),
    ))
    coral = admin_pb2.Device(
        id="d-coral-0002", name="coral-07", labels={"site": "lab", "class": "coral"}, state=device_pb2.DEVICE_STATE_OFFLINE,
        last_seen=_ts(now - 7200), hardware=_hardware("coral-dev-board"), created_at=_ts(now - 90000), agent_version="0.1.0",
    )
    gateway = admin_pb2.Device(
        id="d-x86-0003", name="gw-1", labels={"site": "plant"}, state=device_pb2.DEVICE_STATE_STOPPED,
        last_seen=_ts(now - 300), hardware=_hardware("x86-gateway"), created_at=_ts(now - 5000), agent_version="0.1.0",
    )
    fresh = admin_pb2.Device(
        id="d-new-0004", name="new-1", labels={"site": "lab"}, state=device_pb2.DEVICE_STATE_REGISTERED, created_at=_ts(now - 60),
    )
    return [rpi, coral, gateway, fresh]


def _matches(labels: dict[str, str], selector: str) -> bool:
    for term in filter(None, selector.split(",")):
        key, _, value = term.partition("=")
        if labels.get(key) != value:
            return False
    return True


@dataclass
class FakeAdmin(admin_pb2_grpc.AdminServicer):
    token: str
    address: str = ""
    devices: list[admin_pb2.Device] = field(default_factory=sample_fleet)
    requests: list[tuple[str, object]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _check(self, method: str, request: object, context: grpc.ServicerContext) -> None:
        metadata = dict(context.invocation_metadata())
        with self.lock:
            self.requests.append((method, request))
        got = metadata.get("authorization", "")
        if not got:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing admin token (the coordinator keeps it in /srv/ef/admin.token)")
        if got != f"Bearer {self.token}":
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "invalid admin token (the coordinator keeps it in /srv/ef/admin.token)")

    def _find(self, ref: str, context: grpc.ServicerContext) -> admin_pb2.Device:
        for device in self.devices:
            if ref in (device.id, device.name):
                return device
        context.abort(grpc.StatusCode.NOT_FOUND, f"no device named or with id {ref!r}")
        raise AssertionError("unreachable")  # abort raises

    def calls(self, method: str) -> list[object]:
        with self.lock:
            return [request for name, request in self.requests if name == method]

    def ListDevices(self, request, context):
        self._check("ListDevices", request, context)
        with self.lock:
            found = [d for d in self.devices if _matches(dict(d.labels), request.selector)]
        listed = []
        for device in found:
            copy = admin_pb2.Device()
            copy.CopyFrom(device)
            # Like the real service: history and telemetry only through GetDevice.
            for name in ("hardware_history", "model_history", "latest_telemetry"):
                copy.ClearField(name)
            listed.append(copy)
        return admin_pb2.ListDevicesResponse(devices=listed)

    def GetDevice(self, request, context):
        self._check("GetDevice", request, context)
        with self.lock:
            return self._find(request.ref, context)

    def RegisterDevice(self, request, context):
        self._check("RegisterDevice", request, context)
        with self.lock:
            if any(d.name == request.name for d in self.devices):
                context.abort(grpc.StatusCode.ALREADY_EXISTS, f"a device named {request.name!r} already exists")
            now = time.time()
            device = admin_pb2.Device(
                id=f"d-{uuid.uuid4().hex[:12]}", name=request.name, labels=dict(request.labels),
                state=device_pb2.DEVICE_STATE_REGISTERED, created_at=_ts(now),
            )
            self.devices.append(device)
        token = f"enr-{uuid.uuid4().hex}"
        return admin_pb2.RegisterDeviceResponse(
            device=device,
            enrollment_token=token,
            token_expires_at=_ts(now + (request.token_ttl_s or 86400)),
            enroll_command=f"edge-agent enroll --coordinator {self.address} --token {token}",
        )

    def LabelDevice(self, request, context):
        self._check("LabelDevice", request, context)
        with self.lock:
            device = self._find(request.ref, context)
            for key in request.remove:
                device.labels.pop(key, None)
            device.labels.update(request.set)
            return device

    def RemoveDevice(self, request, context):
        self._check("RemoveDevice", request, context)
        with self.lock:
            device = self._find(request.ref, context)
            self.devices.remove(device)
            return admin_pb2.RemoveDeviceResponse(id=device.id)


def start_fake_coordinator(token: str, host: str = "127.0.0.1") -> tuple[grpc.Server, FakeAdmin, str]:
    """Start the fake Admin service on a free port; returns (server, servicer, "HOST:PORT")."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    servicer = FakeAdmin(token=token)
    admin_pb2_grpc.add_AdminServicer_to_server(servicer, server)
    port = server.add_insecure_port(f"{host}:0")
    servicer.address = f"{host}:{port}"
    server.start()
    return server, servicer, servicer.address

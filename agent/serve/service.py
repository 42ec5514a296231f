"""Everything that serves and watches the active model, assembled for AgentDaemon in one object:

    service = LocalModelService(state_dir, socket_path, device_id, hardware, emit_telemetry=publisher.put_telemetry,
                                golden=...)
    deployer = Deployer(..., on_active_changed=service.on_active_changed, auto_end_trial=False)
    service.supervise(deployer)        # the trial monitor ends every trial through deployer.commit/rollback
    service.start()                    # socket, telemetry loop, trial loop
    ...
    service.stop()                     # a last (partial) telemetry window goes out, then the socket closes

Parts: ModelHost (agent.serve.host), InferenceServer (gRPC on the unix socket) and FastServer (the same
API as frames on `<socket>` with `.fast` before the suffix, agent.serve.fast), TelemetryCollector with the
system sampler and the best power source of this device (agent.telemetry), TrialSupervisor (agent.trial).
Latencies of a simulated device are scaled by its profile's latency_factor, as the install path's
acceptance test does.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Callable, Sequence

from agent.client import fast_socket_path as beside
from agent.serve.fast import DEFAULT_MAX_CONNECTIONS, FastServer
from agent.serve.host import ModelHost, ModelKey, ServedModel, active_from_manifest
from agent.serve.server import DEFAULT_MAX_REQUEST_BYTES, DEFAULT_MAX_WAITING, MAX_SOCKET_PATH, InferenceServer
from agent.telemetry.collector import DEFAULT_GOLDEN_EVERY_S, DEFAULT_INTERVAL_S, GoldenSource, TelemetryCollector
from agent.telemetry.power import PowerSampler, power_meters
from agent.telemetry.system import SystemSampler
from agent.trial import TrialDeployer, TrialSupervisor
from edgefleet.v1 import device_pb2, hardware_pb2, manifest_pb2, telemetry_pb2

log = logging.getLogger(__name__)

SEQUENCE_FILE = "telemetry.seq"


class LocalModelService:
    def __init__(
        self,
        state_dir: Path,
        socket_path: Path | str,
        hardware: hardware_pb2.HardwareProfile,
        *,
        emit_telemetry: Callable[[telemetry_pb2.Telemetry], object],
        golden: GoldenSource | None = None,
        accepted: Callable[[ServedModel], tuple[float, int] | None] | None = None,
        interval_s: float = DEFAULT_INTERVAL_S,
        golden_every_s: float = DEFAULT_GOLDEN_EVERY_S,
        max_waiting: int = DEFAULT_MAX_WAITING,
        max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
        socket_group: str | None = None,
        fast_socket_path: Path | str | None = None,
        max_fast_connections: int = DEFAULT_MAX_CONNECTIONS,
        num_threads: int | None = None,
        preferred_backend: str | None = None,
        installed: Callable[[], Sequence[device_pb2.ActiveModel]] | None = None,
        sys_root: Path = Path("/sys"),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`emit_telemetry`: OutboxPublisher.put_telemetry. `golden(served)`: the (x, y) golden set the
        install kept for that model (agent.install.acceptance.read_golden of its slot), or None.
        `fast_socket_path`: the fast transport's socket (default: `socket_path` with `.fast` before the
        suffix, where agent.client.LocalClient looks; not served when that default is too long to bind)."""
        state_dir = Path(state_dir)
        self.accelerators = tuple(a.kind for a in hardware.accelerators)
        self.num_threads = num_threads
        self.preferred_backend = preferred_backend
        self._emit = emit_telemetry
        factor = hardware.latency_factor if hardware.simulated and hardware.latency_factor > 0 else 1.0
        power_model = hardware.power_model if hardware.HasField("power_model") else None
        self.host = ModelHost()
        self.collector = TelemetryCollector(
            system=SystemSampler(state_dir, sys_root=sys_root),
            power=PowerSampler(power_meters(sys_root, power_model, clock=clock)),
            golden=golden, golden_every_s=golden_every_s, accepted=accepted, interval_s=interval_s, latency_factor=factor,
            sequence_path=state_dir / SEQUENCE_FILE, emit=emit_telemetry, clock=clock)
        self.host.subscribe(self.collector.on_activate)
        self.server = InferenceServer(socket_path, self.host, observer=self.collector, max_waiting=max_waiting,
                                      max_request_bytes=max_request_bytes, group=socket_group, installed=installed)
        self.fast: FastServer | None = None
        fast_path = Path(fast_socket_path) if fast_socket_path is not None else beside(socket_path)
        if fast_socket_path is None and len(os.fsencode(str(fast_path))) > MAX_SOCKET_PATH:
            log.warning("no fast inference socket: %s is longer than %d bytes (apps use gRPC on %s)", fast_path,
                        MAX_SOCKET_PATH, socket_path)
        else:
            # The same servicer: one waiting line, one Feedback memory, one telemetry for both transports.
            self.fast = FastServer(fast_path, self.server.servicer, max_request_bytes=max_request_bytes,
                                   max_connections=max_fast_connections, group=socket_group)
        self.trial: TrialSupervisor | None = None
        self._clock = clock

    # -- the install path tells us what runs --------------------------------------------------

    def on_active_changed(self, path: Path | None, manifest: manifest_pb2.ModelManifest | None) -> None:
        """Deployer's on_active_changed: serve this model now (None: serve nothing). Never raises: a model
        that does not load is reported through the trial (load_failed) and the log."""
        if path is None:
            self.host.clear()
            return
        current = self.host.current
        if (current is not None and manifest is not None and current.key == ModelKey.of(active_from_manifest(manifest))
                and str(getattr(current.model, "path", "")) == str(path)):
            return  # already serving exactly this
        try:
            served = self.host.load(path, manifest, accelerators=self.accelerators, preferred=self.preferred_backend,
                                    num_threads=self.num_threads)
            log.info("serving %s on %s", served.key, served.model.backend.describe())
        except Exception as exc:  # noqa: BLE001 - the previous model keeps serving
            log.error("cannot serve %s: %s", path, exc)
        if self.trial is not None:
            self.trial.wake()

    def supervise(self, deployer: TrialDeployer, *, interval_s: float = 1.0, **options) -> TrialSupervisor:
        """Let the trial monitor end every trial (create the Deployer with auto_end_trial=False)."""
        self.trial = TrialSupervisor(deployer, self.collector.trial_figures, clock=self._clock, interval_s=interval_s,
                                     load_error=self.host.load_error, **options)
        return self.trial

    # -- life cycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self.server.start()
        if self.fast is not None:
            try:
                self.fast.start()
            except Exception:
                self.server.stop(0)
                raise
        self.collector.start()
        if self.trial is not None:
            self.trial.start()

    def stop(self, grace_s: float = 2.0) -> None:
        if self.trial is not None:
            self.trial.stop()
        if self.fast is not None:
            self.fast.stop(grace_s)
        self.server.stop(grace_s)
        self.collector.stop()
        try:
            self._emit(self.collector.collect())  # the partial window, so no request goes uncounted
        except Exception:  # noqa: BLE001 - stopping must finish
            log.exception("could not store the last telemetry window")
        self.host.close()

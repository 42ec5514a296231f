"""What LocalModelService does for `edge-agent run`, for a device simulated among many in one process.

Same parts, wired the same way: a ModelHost serving the active model, a TelemetryCollector fed by an
InferenceServicer (so a synthetic request is counted, timed and scored exactly like an app's Predict),
and a TrialSupervisor ending every trial through the Deployer. What differs, and why:

- No unix sockets: nothing outside the simulator calls a simulated device's inference API (200
  devices would otherwise mean 400 socket servers and their threads). Requests come from
  agent.simulate.requests, straight into the servicer.
- No threads: the fleet's housekeeping calls `tick()` on the device's strand (trial poll, then the
  telemetry window when it is over), instead of the collector's and the supervisor's own loops.
- Latencies are the host's, scaled by the profile's latency_factor in one place: the collector (as
  the acceptance test and profiling scale theirs). Nothing sleeps to imitate a slower board.
- Power is the profile's power model driven by the device's own simulated busy time (scaled inference
  time / wall time), labelled `estimate`. The host's sensors (RAPL, a laptop battery) describe the
  host, not the simulated board, and psutil's system-wide CPU % would be the same for every device.
- System figures are the device's share of the simulator process (its CPU % and RSS divided by the
  number of devices), the profile's available memory, and the host's free storage for the state
  directory; no temperature (a simulated board has no sensor to read).
- The interpreter runs with one thread: each device is a small slice of the host.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

from agent.serve.host import ModelHost, ModelKey, ServedModel, active_from_manifest
from agent.serve.recent import Prediction, RecentPredictions
from agent.serve.servicer import InferenceServicer
from agent.telemetry.accuracy import OutputSummary
from agent.telemetry.collector import DEFAULT_INTERVAL_S, GoldenSource, TelemetryCollector
from agent.telemetry.power import EstimateMeter, PowerSampler
from agent.trial import TrialDeployer, TrialSupervisor
from edgefleet.v1 import hardware_pb2, manifest_pb2, telemetry_pb2

log = logging.getLogger(__name__)

SEQUENCE_FILE = "telemetry.seq"   # as LocalModelService: a restart continues the sequence
RECENT_PREDICTIONS = 256          # Feedback only ever names a request made a moment ago (the simulator's own)


def latency_factor(hardware: hardware_pb2.HardwareProfile) -> float:
    return hardware.latency_factor if hardware.simulated and hardware.latency_factor > 0 else 1.0


class BusyTime:
    """How much of the wall time the simulated board spent running inference (scaled latencies)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._busy_s = 0.0
        self._since = clock()

    def add(self, latency_ms: float) -> None:
        with self._lock:
            self._busy_s += latency_ms / 1e3

    def utilisation(self) -> float:
        """0..1 since the previous call (EstimateMeter calls it once per telemetry window)."""
        now = self._clock()
        with self._lock:
            busy, self._busy_s = self._busy_s, 0.0
            elapsed, self._since = now - self._since, now
        return min(1.0, busy / elapsed) if elapsed > 0 else 0.0


class _Observer:
    """The collector, plus the busy time its power estimate needs (the collector scales; so does this)."""

    def __init__(self, collector: TelemetryCollector, busy: BusyTime) -> None:
        self._collector = collector
        self._busy = busy
        self._factor = collector.latency_factor

    def on_predict(self, served: ServedModel, latency_ms: float, inputs: Mapping[str, np.ndarray], summary: OutputSummary) -> None:
        self._busy.add(latency_ms * self._factor)
        self._collector.on_predict(served, latency_ms, inputs, summary)

    def on_error(self, served: ServedModel, kind: str) -> None:
        self._collector.on_error(served, kind)

    def on_feedback(self, prediction: Prediction, label: int, target: float) -> None:
        self._collector.on_feedback(prediction, label, target)


class ProcessShare:
    """The simulator process's CPU % and RSS, sampled at most once per `every_s`, split evenly among its devices."""

    def __init__(self, devices: Callable[[], int], every_s: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        import psutil

        self._process = psutil.Process()
        self._process.cpu_percent(None)  # starts the measurement
        self._devices = devices
        self._every_s = every_s
        self._clock = clock
        self._lock = threading.Lock()
        self._at = float("-inf")
        self._cpu = 0.0
        self._rss = 0
        self._disk: dict[Path, tuple[float, int]] = {}

    def per_device(self) -> tuple[float, int]:
        """(CPU %, RSS bytes) of one device's share."""
        with self._lock:
            now = self._clock()
            if now - self._at >= self._every_s:
                self._at = now
                try:
                    self._cpu = float(self._process.cpu_percent(None))
                    self._rss = int(self._process.memory_info().rss)
                except Exception as exc:  # noqa: BLE001 - report what can be read
                    log.debug("process figures unavailable: %s", exc)
            n = max(1, self._devices())
            return self._cpu / n, self._rss // n

    def storage_free(self, directory: Path) -> int | None:
        """Free bytes on the file system of `directory` (one statvfs per file system and second)."""
        key = directory.parent
        with self._lock:
            cached = self._disk.get(key)
            now = self._clock()
            if cached is not None and now - cached[0] < self._every_s:
                return cached[1]
        try:
            free = shutil.disk_usage(directory).free
        except OSError:
            return None
        with self._lock:
            self._disk[key] = (now, free)
        return free


class SimulatedSystem:
    """SystemSampler's figures for a simulated device (see the module docstring)."""

    def __init__(self, share: ProcessShare, hardware: hardware_pb2.HardwareProfile, state_dir: Path) -> None:
        self._share = share
        self._available = hardware.memory.available_bytes
        self._state_dir = state_dir

    def sample(self) -> telemetry_pb2.SystemTelemetry:
        cpu, rss = self._share.per_device()
        out = telemetry_pb2.SystemTelemetry(cpu_percent=cpu, rss_bytes=rss, memory_available_bytes=self._available)
        free = self._share.storage_free(self._state_dir)
        if free is not None:
            out.storage_free_bytes = free
        return out


class SimulatedService:
    def __init__(
        self,
        state_dir: Path,
        hardware: hardware_pb2.HardwareProfile,
        *,
        emit_telemetry: Callable[[telemetry_pb2.Telemetry], object],
        golden: GoldenSource | None,
        share: ProcessShare,
        interval_s: float = DEFAULT_INTERVAL_S,
        num_threads: int = 1,
        clock: Callable[[], float] = time.monotonic,
        on_trial_wake: Callable[[], None] | None = None,
    ) -> None:
        """`on_trial_wake()`: asks for a tick() soon, on the device's strand (after an activation: the
        golden set is evaluated and the trial polled at once, as LocalModelService's threads do)."""
        state_dir = Path(state_dir)
        self.accelerators = tuple(a.kind for a in hardware.accelerators)
        self.num_threads = num_threads
        self._emit = emit_telemetry
        self._clock = clock
        self._on_trial_wake = on_trial_wake
        self.busy = BusyTime(clock)
        meters = []
        model = hardware.power_model if hardware.HasField("power_model") else None
        if model is not None and model.active_watts > 0:
            try:
                meters.append(EstimateMeter(model.idle_watts, model.active_watts, self.busy.utilisation))
            except ValueError as exc:
                log.warning("power estimate disabled: %s", exc)
        self.host = ModelHost()
        self.collector = TelemetryCollector(
            system=SimulatedSystem(share, hardware, state_dir), power=PowerSampler(meters), golden=golden,
            interval_s=interval_s, latency_factor=latency_factor(hardware), sequence_path=state_dir / SEQUENCE_FILE,
            emit=emit_telemetry, clock=clock)
        self.host.subscribe(self.collector.on_activate)
        self.servicer = InferenceServicer(self.host, observer=_Observer(self.collector, self.busy),
                                          recent=RecentPredictions(RECENT_PREDICTIONS))
        self.trial: TrialSupervisor | None = None

    def on_active_changed(self, path: Path | None, manifest: manifest_pb2.ModelManifest | None) -> None:
        """Deployer's on_active_changed (as LocalModelService's): serve this model now. Never raises."""
        if path is None:
            self.host.clear()
            return
        current = self.host.current
        if (current is not None and manifest is not None and current.key == ModelKey.of(active_from_manifest(manifest))
                and str(getattr(current.model, "path", "")) == str(path)):
            return
        try:
            served = self.host.load(path, manifest, accelerators=self.accelerators, num_threads=self.num_threads)
            log.info("serving %s on %s", served.key, served.model.backend.describe())
        except Exception as exc:  # noqa: BLE001 - the previous model keeps serving; the trial sees load_error
            log.error("cannot serve %s: %s", path, exc)
        if self._on_trial_wake is not None:
            self._on_trial_wake()

    def supervise(self, deployer: TrialDeployer, **options) -> TrialSupervisor:
        """The trial monitor for this device; polled by tick(), never started as a thread."""
        self.trial = TrialSupervisor(deployer, self.collector.trial_figures, clock=self._clock,
                                     load_error=self.host.load_error, **options)
        return self.trial

    def tick(self) -> None:
        """Housekeeping, on the device's strand: the golden set when due and the telemetry window when over,
        then the trial's verdict (which may need that golden-set figure)."""
        self.collector.tick()
        if self.trial is not None:
            self.trial.poll()

    def close(self) -> None:
        """The last (partial) window goes to the outbox, so no request goes uncounted; the model is closed."""
        try:
            self._emit(self.collector.collect())
        except Exception:  # noqa: BLE001 - stopping must finish
            log.exception("could not store the last telemetry window")
        self.host.close()

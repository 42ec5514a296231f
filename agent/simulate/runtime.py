"""What every simulated device in a process shares: the threads, the MQTT network loop, the host probe.

    timers       one thread: request arrivals, housekeeping ticks, host re-probes
    work         a few threads running the devices' strands (commands, installs, telemetry, trial, outbox)
    requests     a few threads running synthetic Predict calls
    connects     one thread for blocking TCP connects (the network loop never blocks on one)
    profiling    one thread for on-device profiling jobs, one at a time (each benchmarks a candidate in a
                 child process, for seconds: on the work pool they would hold up other devices' strands,
                 and two at once would measure each other)
    network      one thread driving every device's MQTT socket (agent.simulate.network)

So the thread count does not grow with the number of devices.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from agent.probe import probe
from agent.profile import apply_profile, load_profile, profile_name
from agent.simulate.network import NetworkLoop
from agent.simulate.scheduler import Pool, Timer, Timers
from agent.simulate.service import ProcessShare
from edgefleet.v1 import hardware_pb2

log = logging.getLogger(__name__)

HOST_PROBE_EVERY_S = 60.0
UNREACHABLE_LOG_EVERY_S = 60.0


@dataclass(frozen=True)
class FleetOptions:
    """How the simulated devices behave (the same for every device of a process)."""

    rate: float = 2.0                    # synthetic Predict calls per second per device (0: none)
    feedback: float = 0.5                # share of golden-set requests followed by a Feedback with the label
    telemetry_interval_s: float = 10.0   # seconds per telemetry window, as `edge-agent run --telemetry-interval`
    housekeeping_s: float = 1.0          # deployer tick (chunk timeouts, reconnects), trial poll, telemetry check
    protocol: str | None = None          # override the MQTT protocol from enrollment: 5 or 3.1.1
    keepalive_s: int | None = None       # override the MQTT keepalive from enrollment
    num_threads: int = 1                 # interpreter threads per device (each device is a slice of the host)
    seed: int | None = None              # request arrivals and random inputs (None: different every run)

    def __post_init__(self) -> None:
        if self.rate < 0:
            raise ValueError(f"rate must be 0 or more requests per second, got {self.rate}")
        if not 0 <= self.feedback <= 1:
            raise ValueError(f"feedback must be between 0 and 1, got {self.feedback}")
        if self.telemetry_interval_s <= 0 or self.housekeeping_s <= 0:
            raise ValueError("telemetry interval and housekeeping interval must be above 0 s")
        if self.protocol not in (None, "5", "3.1.1"):
            raise ValueError(f"MQTT protocol must be 5 or 3.1.1, not {self.protocol!r}")


class HostHardware:
    """The host probed once (and again by refresh()), each profile applied to it.

    Every simulated device runs on this host, so 200 of them need not probe it 200 times on every
    connect (a probe takes ~30 ms); `profile()` never probes, so a hello built on the network thread
    costs nothing. A profile that cannot be read raises ProfileError naming it. Every profile comes
    out `simulated`, whether its file says so or not: this host, not that board, runs the model.
    """

    def __init__(self, probe_dir: Path) -> None:
        self._probe_dir = Path(probe_dir)
        self._lock = threading.Lock()
        self._overrides: dict[str, dict] = {}
        self._applied: dict[str, hardware_pb2.HardwareProfile] = {}
        self._host = probe(self._probe_dir)

    def profile(self, ref: str) -> hardware_pb2.HardwareProfile:
        """The hardware profile a device with profile `ref` reports (shared: do not modify it)."""
        with self._lock:
            hw = self._applied.get(ref)
            if hw is None:
                overrides = self._overrides.get(ref)
                if overrides is None:
                    overrides = self._overrides[ref] = load_profile(ref)
                hw = apply_profile(self._host, overrides, name=profile_name(ref))
                if not hw.simulated:
                    # Whatever board the profile describes, this host runs its model: say so, so that
                    # nobody reads this host's latencies as that board's own.
                    hw.simulated = True
                    hw.overridden.append("simulated")
                self._applied[ref] = hw
            return hw

    def refresh(self) -> None:
        """Probe the host again (free storage moves); the profiles are applied anew on next use."""
        try:
            host = probe(self._probe_dir)
        except Exception as exc:  # noqa: BLE001 - keep the last good probe
            log.warning("re-probing the host failed, keeping the previous profile: %s", exc)
            return
        with self._lock:
            self._host = host
            self._applied.clear()


class Unreachable:
    """Connect failures of the whole fleet, logged once a minute rather than once per device."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._last: float | None = None
        self._count = 0

    def __call__(self, exc: BaseException) -> None:
        with self._lock:
            self._count += 1
            now = self._clock()
            if self._last is not None and now - self._last < UNREACHABLE_LOG_EVERY_S:
                return
            self._last, count, self._count = now, self._count, 0
        log.warning("broker unreachable (%s): %d connection attempt(s) failed; devices retry with backoff up to 30 s",
                    " ".join(str(exc).split()) or type(exc).__name__, count)


class FleetRuntime:
    def __init__(
        self,
        probe_dir: Path,
        options: FleetOptions = FleetOptions(),
        *,
        workers: int = 4,
        request_workers: int = 2,
        misc_interval_s: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.options = options
        self.clock = clock
        self.timers = Timers(clock)
        self.work = Pool("sim-work", workers)
        self.requests = Pool("sim-requests", request_workers)
        self.connects = Pool("sim-connect", 1)
        self.profiling = Pool("sim-profile", 1)
        self.network = NetworkLoop(self.connects, misc_interval_s=misc_interval_s, clock=clock)
        self.hardware = HostHardware(probe_dir)
        self.devices = 0  # how many share the process (ProcessShare divides by it)
        self.share = ProcessShare(lambda: self.devices, clock=clock)
        self.unreachable = Unreachable(clock)
        self._refresh: Timer | None = None
        self._started = False

    def start(self) -> None:
        if self._started:
            return
        self._started = True
        for pool in (self.work, self.requests, self.connects, self.profiling):
            pool.start()
        self.timers.start()
        self.network.start()
        self._refresh = self.timers.every(HOST_PROBE_EVERY_S, lambda: self.work.post(self.hardware.refresh))

    def stop(self, timeout_s: float = 5.0) -> None:
        if not self._started:
            return
        self._started = False
        if self._refresh is not None:
            self._refresh.cancel()
        self.timers.stop(timeout_s)
        self.network.stop(timeout_s)
        for pool in (self.requests, self.work, self.connects, self.profiling):
            pool.stop(timeout_s)

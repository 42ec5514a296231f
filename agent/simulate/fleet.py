"""Many simulated devices in one process: start them all, watch them, stop them all cleanly.

    fleet = SimulatedFleet(discover(fleet_dir), FleetOptions(rate=2.0))
    fleet.start()                       # every device recovers its install, loads its model, connects
    fleet.wait_connected(60)
    ...
    report = fleet.stop()               # every device publishes `stopped`, then disconnects

Stopping goes through all devices together, step by step (the same order as AgentDaemon.run's stop):
no more requests or housekeeping; each device's last telemetry window and the install path's clean
stop, on its strand; the outboxes flushed (one deadline for all); `stopped` published by every
connected device and acknowledged (one deadline); clean disconnects; the outboxes closed.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from agent.identity import StateDirError
from agent.profile import ProfileError
from agent.simulate.device import SimulatedDevice
from agent.simulate.fleet_dir import DeviceSpec
from agent.simulate.runtime import FleetOptions, FleetRuntime

log = logging.getLogger(__name__)


class FleetStartError(RuntimeError):
    """A device could not be opened (identity, profile, outbox); nothing was started."""


@dataclass
class StopReport:
    devices: int = 0
    stopped_acknowledged: int = 0      # `stopped` status acknowledged by the broker
    not_connected: int = 0             # devices that were not connected at stop (nothing to say)
    outbox_left: int = 0               # records still in outboxes (sent at the next start)
    problems: list[str] = field(default_factory=list)


@dataclass
class FleetStats:
    devices: int
    connected: int
    requests: int
    answered: int
    failed: int
    skipped: int
    labelled: int
    outbox: int
    threads: int


class SimulatedFleet:
    def __init__(
        self,
        specs: Sequence[DeviceSpec],
        options: FleetOptions = FleetOptions(),
        *,
        workers: int = 4,
        request_workers: int = 2,
        probe_dir: Path | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not specs:
            raise ValueError("a fleet needs at least one device")
        self.specs = list(specs)
        self.options = options
        self._workers = workers
        self._request_workers = request_workers
        self._probe_dir = Path(probe_dir) if probe_dir is not None else self.specs[0].state_dir.parent
        self._clock = clock
        self.runtime: FleetRuntime | None = None
        self.devices: list[SimulatedDevice] = []

    # -- start ----------------------------------------------------------------------------------

    def start(self) -> None:
        """Open every device (raises on the first one that cannot be: its name and why), then start them all."""
        runtime = FleetRuntime(self._probe_dir, self.options, workers=self._workers,
                               request_workers=self._request_workers, clock=self._clock)
        self.runtime = runtime
        rng = random.Random(self.options.seed)
        try:
            for i, spec in enumerate(self.specs):
                seed = None if self.options.seed is None else self.options.seed * 100_003 + i
                try:
                    self.devices.append(SimulatedDevice(spec.state_dir, spec.profile, runtime, seed=seed))
                except (StateDirError, ProfileError, ValueError, OSError) as exc:
                    raise FleetStartError(f"device {spec.name} ({spec.state_dir}): {exc}") from exc
            runtime.devices = len(self.devices)
            shortest = min(d.link.keepalive_s for d in self.devices)
            runtime.network.misc_interval_s = min(runtime.network.misc_interval_s, max(0.05, shortest / 4))
            runtime.start()
            for device in self.devices:
                # Spread the housekeeping ticks (and so the telemetry windows) over one interval.
                device.start(first_tick_s=rng.uniform(0, self.options.housekeeping_s))
        except BaseException:
            self._close_outboxes()
            runtime.stop()
            raise
        kinds = Counter(d.profile for d in self.devices)
        log.info("simulating %d devices in one process (%s), %.3g requests/s each", len(self.devices),
                 ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())), self.options.rate)

    def connected_count(self) -> int:
        return sum(1 for d in self.devices if d.connected)

    def wait_connected(self, timeout_s: float, wait: threading.Event | None = None) -> int:
        """Until every device is connected or `timeout_s` passed (or `wait` is set); how many are."""
        deadline = self._clock() + timeout_s
        stop = wait or threading.Event()
        while True:
            count = self.connected_count()
            if count == len(self.devices) or self._clock() >= deadline or stop.is_set():
                return count
            stop.wait(min(0.1, max(0.0, deadline - self._clock())))

    def stats(self) -> FleetStats:
        return FleetStats(
            devices=len(self.devices), connected=self.connected_count(),
            requests=sum(d.requests.sent for d in self.devices), answered=sum(d.requests.answered for d in self.devices),
            failed=sum(d.requests.failed for d in self.devices), skipped=sum(d.requests.skipped for d in self.devices),
            labelled=sum(d.requests.labelled for d in self.devices), outbox=sum(len(d.outbox) for d in self.devices),
            threads=threading.active_count())

    # -- stop -----------------------------------------------------------------------------------

    def stop(self, timeout_s: float = 15.0) -> StopReport:
        """Stop every device cleanly (see the module docstring); never raises."""
        report = StopReport(devices=len(self.devices))
        runtime = self.runtime
        if runtime is None:
            return report
        started = self._clock()

        def until(share: float) -> float:
            """Seconds left until `share` of the whole timeout has passed (at least a moment)."""
            return max(0.2, started + timeout_s * share - self._clock())

        for device in self.devices:
            device.halt()
        closing = []
        for device in self.devices:
            event = threading.Event()
            device.close_work(event)
            closing.append((device, event))
        for device, event in closing:
            if not event.wait(until(0.4)):
                report.problems.append(f"{device.name}: closing its install path and telemetry did not finish")
        for device in self.devices:
            device.publisher.wake()  # the last telemetry window and events go out now
        for device in self.devices:
            if device.connected:
                device.publisher.flush(until(0.6))
        for device in self.devices:
            device.publisher.stop()
            report.outbox_left += len(device.outbox)
        infos = [(device, device.link.say_stopped()) for device in self.devices]
        for device, info in infos:
            if info is None:
                report.not_connected += 1
                continue
            try:
                info.wait_for_publish(timeout=until(0.85))
                if info.is_published():
                    report.stopped_acknowledged += 1
                else:
                    report.problems.append(f"{device.name}: stopped status not acknowledged in time")
            except Exception as exc:  # noqa: BLE001 - stopping must finish
                report.problems.append(f"{device.name}: stopped status not acknowledged: {exc}")
        for device in self.devices:
            device.link.disconnect()
        if not runtime.network.wait_closed(until(1.0)):
            report.problems.append(f"{runtime.network.open_count()} connection(s) still open at the deadline")
        runtime.stop()
        self._close_outboxes()
        log.info("stopped %d devices (%d said stopped, %d were not connected, %d records left in outboxes)",
                 report.devices, report.stopped_acknowledged, report.not_connected, report.outbox_left)
        return report

    def _close_outboxes(self) -> None:
        for device in self.devices:
            try:
                device.close()
            except Exception:  # noqa: BLE001
                log.exception("%s: closing the outbox failed", device.name)

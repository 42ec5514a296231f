"""`edge-agent simulate`: enroll (optionally) and run a fleet directory's devices until SIGTERM/SIGINT.

Lines on stdout, for scripts (edgectl demo, tests, bench/fleet.py) to wait on:
    edge-agent simulate enrolled devices=N               after --enroll-from
    edge-agent simulate ready devices=N                  every device opened and connecting
    edge-agent simulate connected devices=N of=M seconds=S   all connected (or the wait gave up)
    edge-agent simulate stopped devices=N said_stopped=K problems=P
"""

from __future__ import annotations

import logging
import resource
import threading
import time
from pathlib import Path
from typing import Callable

from agent.simulate.enroll import enroll_fleet, read_tickets
from agent.simulate.fleet import SimulatedFleet
from agent.simulate.fleet_dir import discover
from agent.simulate.runtime import FleetOptions

log = logging.getLogger(__name__)

STATS_EVERY_S = 60.0
CONNECT_WAIT_S = 120.0
# Open files per simulated device: its MQTT socket, the outbox database with its WAL and shared memory,
# the mapped model file, its state lock, and room for an install in progress.
FILES_PER_DEVICE = 10
FILES_BASE = 256


def raise_open_file_limit(devices: int) -> None:
    """Raise the soft RLIMIT_NOFILE towards the hard one: 1024 (a common soft default) is too few for ~150 devices."""
    needed = FILES_BASE + FILES_PER_DEVICE * devices
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(hard, needed)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the open-file limit from %d to %d: %s", soft, target, exc)
            target = soft
        if target < needed:
            log.warning("%d devices may need %d open files; the limit is %d (raise it: ulimit -n %d)", devices, needed, target, needed)


def parse_profile_options(values: list[str]) -> tuple[dict[str, str], str | None]:
    """--profile values: `NAME=PROFILE` for one device, or a bare PROFILE for every device without one."""
    per_device: dict[str, str] = {}
    default: str | None = None
    for value in values:
        if "=" in value:
            name, profile = (part.strip() for part in value.split("=", 1))
            if not name or not profile:
                raise ValueError(f"--profile {value!r}: expected NAME=PROFILE")
            per_device[name] = profile
        elif default is not None and default != value:
            raise ValueError(f"--profile given twice for every device ({default!r} and {value!r}): use NAME=PROFILE for one device")
        else:
            default = value
    return per_device, default


def quiet_device_logs(level: str) -> None:
    """Per-device logs (200 devices each saying "online", "serving ...") only at debug; warnings always."""
    if level.upper() != "DEBUG":
        logging.getLogger("agent").setLevel(max(logging.WARNING, logging.getLevelName(level.upper())))
        logging.getLogger("agent.simulate").setLevel(level.upper())


def run_simulation(
    fleet_dir: Path,
    *,
    options: FleetOptions,
    profiles: list[str],
    stop: threading.Event,
    enroll_from: Path | None = None,
    coordinator: str | None = None,
    enroll_only: bool = False,
    force: bool = False,
    workers: int = 4,
    say: Callable[[str], None] = print,
) -> int:
    """Returns the exit code. Raises ValueError (and its kinds) for bad input, before anything runs."""
    per_device, default = parse_profile_options(profiles)
    if enroll_from is not None:
        if not coordinator:
            raise ValueError("--enroll-from needs --coordinator HOST:PORT")
        tickets = read_tickets(enroll_from)
        started = time.monotonic()
        enroll_fleet(coordinator, tickets, fleet_dir, force=force)
        say(f"edge-agent simulate enrolled devices={len(tickets)} seconds={time.monotonic() - started:.1f}")
        if enroll_only or stop.is_set():
            return 0
    specs = discover(fleet_dir, per_device, default)
    raise_open_file_limit(len(specs))
    fleet = SimulatedFleet(specs, options, workers=workers)
    fleet.start()
    try:
        say(f"edge-agent simulate ready devices={len(fleet.devices)}")
        started = time.monotonic()
        connected = fleet.wait_connected(CONNECT_WAIT_S, stop)
        if not stop.is_set():
            say(f"edge-agent simulate connected devices={connected} of={len(fleet.devices)} seconds={time.monotonic() - started:.1f}")
        last = fleet.stats()
        while not stop.wait(STATS_EVERY_S):
            now = fleet.stats()
            log.info("%d/%d connected; %.1f requests/s answered, %d failed, %d skipped (busy); %d records in outboxes; %d threads",
                     now.connected, now.devices, (now.answered - last.answered) / STATS_EVERY_S, now.failed - last.failed,
                     now.skipped - last.skipped, now.outbox, now.threads)
            last = now
    finally:
        report = fleet.stop()
        for problem in report.problems[:10]:
            log.warning("stop: %s", problem)
        say(f"edge-agent simulate stopped devices={report.devices} said_stopped={report.stopped_acknowledged} "
            f"not_connected={report.not_connected} problems={len(report.problems)}")
    return 0

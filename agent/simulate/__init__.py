"""Many simulated devices in one process (`edge-agent simulate`): each a real MQTT session with its own
identity, the real install path, telemetry and trial, and real LiteRT inference on a synthetic request
stream, sharing a handful of threads so that hundreds fit on a small machine.

    scheduler.py   timers, worker pools, per-device strands (serial lanes on a shared pool)
    network.py     one thread driving every device's paho client (paho's external-loop API)
    link.py        AgentLink on the shared network loop;  publisher.py  OutboxPublisher on the strand
                   (both through the public hooks only: deliver/on_connected/handle_message, on_wake/pump)
    service.py     the served model, telemetry and trial of a simulated device (no sockets, no threads)
    requests.py    the synthetic request stream (golden-set rows or random inputs in range)
    device.py      one device, wired as AgentDaemon wires `edge-agent run`
    runtime.py     what the devices of a process share;  fleet.py  start/stop them all
    fleet_dir.py   the fleet directory (one agent state directory per device);  enroll.py  enroll_fleet()
    run.py         the `edge-agent simulate` command

Imports are lazy here: `from agent.simulate import enroll_fleet` does not load the runtime.
"""
from __future__ import annotations

from typing import Any

__all__ = ["DeviceSpec", "FleetOptions", "SimulatedFleet", "Ticket", "discover", "enroll_fleet", "read_tickets", "write_profile"]

_WHERE = {
    "DeviceSpec": "agent.simulate.fleet_dir", "discover": "agent.simulate.fleet_dir", "write_profile": "agent.simulate.fleet_dir",
    "FleetOptions": "agent.simulate.runtime", "SimulatedFleet": "agent.simulate.fleet",
    "Ticket": "agent.simulate.enroll", "enroll_fleet": "agent.simulate.enroll", "read_tickets": "agent.simulate.enroll",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'agent.simulate' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)

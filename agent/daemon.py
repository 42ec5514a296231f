"""`edge-agent run`: probe, connect, report, and stay connected until told to stop."""
from __future__ import annotations

import logging
import threading
from pathlib import Path

from agent.identity import load_identity, prepare_state_dir
from agent.link import AgentLink
from agent.version import AGENT_VERSION
from edgefleet.v1 import device_pb2, hardware_pb2

log = logging.getLogger(__name__)


def probe_hardware(state_dir: Path, profile: str | Path | None) -> hardware_pb2.HardwareProfile:
    from agent.profile import probe_with_profile

    return probe_with_profile(state_dir, profile)


class AgentDaemon:
    def __init__(self, state_dir: Path, *, profile: str | Path | None = None, protocol: str | None = None, keepalive_s: int | None = None):
        self.state_dir = prepare_state_dir(state_dir)
        self.ident = load_identity(self.state_dir)
        self.profile = profile
        # Fail on a bad profile now, not inside a paho callback later.
        self._hardware = probe_hardware(self.state_dir, profile)
        self.link = AgentLink(self.ident, self.hello, protocol=protocol, keepalive_s=keepalive_s)
        self.stop_requested = threading.Event()

    def hello(self) -> device_pb2.Hello:
        try:
            self._hardware = probe_hardware(self.state_dir, self.profile)
        except Exception as exc:  # noqa: BLE001 - report the last good profile rather than nothing
            log.warning("re-probe failed, sending the previous profile: %s", exc)
        return device_pb2.Hello(hardware=self._hardware, agent_version=AGENT_VERSION, protocol_version=1)

    def run(self) -> None:
        self.link.start()
        self.stop_requested.wait()
        self.link.stop()

"""`edge-agent run`: one place that wires the agent.

    probe ─▶ AgentLink (MQTT: status, hello, commands, chunks)
              ├─▶ Deployer (verified transfer, A/B install, trial, rollback)  ─┐ events
              └─◀ OutboxPublisher (SQLite outbox, deleted after PUBACK) ◀──────┤
    LocalModelService (inference socket, telemetry, trial supervisor) ─────────┘ telemetry

Start order matters: the deployer recovers from whatever state the last run left before anything
connects (its events wait in the outbox), the committed model is loaded, then the socket, the
publisher and the MQTT link start. Stop order is the reverse, so the last telemetry window and the
`stopped` status still go out.
"""
from __future__ import annotations

import logging
import threading
from pathlib import Path

from agent.deployer import Deployer
from agent.identity import load_identity, prepare_state_dir
from agent.install.acceptance import read_golden
from agent.link import AgentLink
from agent.outbox import Outbox
from agent.publisher import OutboxPublisher
from agent.serve.service import LocalModelService
from agent.version import AGENT_VERSION
from edgefleet.v1 import device_pb2, hardware_pb2

log = logging.getLogger(__name__)
OUTBOX_FILE = "outbox.db"
SOCKET_FILE = "inference.sock"
SOCKET_PATH_MAX = 107  # sun_path is 108 bytes on Linux, with the terminating NUL


def default_socket_path(state_dir: Path, device_id: str) -> Path:
    """<state dir>/inference.sock, or a short path in the temp dir when that one is too long to bind."""
    from agent.client import fast_socket_path

    path = state_dir / SOCKET_FILE
    # The fast-path socket beside it is a few bytes longer: both must fit.
    if len(str(fast_socket_path(path)).encode()) <= SOCKET_PATH_MAX:
        return path
    import tempfile

    short = Path(tempfile.gettempdir()) / f"edgefleet-{device_id}.sock"
    log.warning("%s is longer than a unix socket path may be; serving on %s (set --socket to choose)", path, short)
    return short


def probe_hardware(state_dir: Path, profile: str | Path | None) -> hardware_pb2.HardwareProfile:
    from agent.profile import probe_with_profile

    return probe_with_profile(state_dir, profile)


class AgentDaemon:
    def __init__(
        self,
        state_dir: Path,
        *,
        profile: str | Path | None = None,
        protocol: str | None = None,
        keepalive_s: int | None = None,
        socket_path: Path | None = None,
        telemetry_interval_s: float | None = None,
        storage_budget_bytes: int | None = None,
    ):
        self.state_dir = prepare_state_dir(state_dir)
        self.ident = load_identity(self.state_dir)
        self.profile = profile
        # Fail on a bad profile now, not inside a paho callback later.
        self._hardware = probe_hardware(self.state_dir, profile)
        self.stop_requested = threading.Event()
        self.link = AgentLink(self.ident, self.hello, on_command=self._on_command, protocol=protocol, keepalive_s=keepalive_s)
        self.outbox = Outbox.open(self.state_dir / OUTBOX_FILE)
        self.publisher = OutboxPublisher.for_client(self.outbox, self.link.client, self.link.connected, self.ident.device_id)
        service_kw = {"interval_s": telemetry_interval_s} if telemetry_interval_s else {}
        self.service = LocalModelService(
            self.state_dir,
            socket_path or default_socket_path(self.state_dir, self.ident.device_id),
            self._hardware,
            emit_telemetry=self.publisher.put_telemetry,
            golden=self._golden_set,
            accepted=self._accepted_golden,
            **service_kw,
        )
        self.deployer = Deployer(
            self.state_dir,
            self.ident,
            lambda topic, payload, qos: self.link.publish(topic, payload, qos=qos),
            self.publisher.put_event,
            hardware=lambda: self._hardware,
            storage_budget_bytes=storage_budget_bytes,
            on_active_changed=self.service.on_active_changed,
            auto_end_trial=False,  # the service's trial supervisor ends trials
            connection_count=lambda: self.link.connects,
            subscribe=self.link.subscribe, unsubscribe=self.link.unsubscribe,  # broadcast transfers
        )
        self.service.supervise(self.deployer)

    def _on_command(self, env) -> None:
        if self.deployer.handle(env):
            return
        log.info("ignored %s command", env.command.WhichOneof("kind") if env.WhichOneof("body") == "command" else env.WhichOneof("body"))

    def _golden_set(self, served):
        manifest, path = self.deployer.active_manifest(), self.deployer.active_golden_path()
        if manifest is None or path is None or manifest.variant_id != served.key.variant_id:
            return None
        return read_golden(path)

    def _accepted_golden(self, served):
        """The golden-set score of the acceptance test this process ran on the served model before it
        activated it (the service would otherwise score the same set again at activation), or None."""
        manifest = self.deployer.active_manifest()
        if manifest is None or manifest.variant_id != served.key.variant_id:
            return None
        figures = self.deployer.accepted_figures(manifest.sha256)
        if not figures or "metric" not in figures or not figures.get("golden_count"):
            return None
        return figures["metric"], int(figures["golden_count"])

    def hello(self) -> device_pb2.Hello:
        try:
            self._hardware = probe_hardware(self.state_dir, self.profile)
        except Exception as exc:  # noqa: BLE001 - report the last good profile rather than nothing
            log.warning("re-probe failed, sending the previous profile: %s", exc)
        hello = device_pb2.Hello(hardware=self._hardware, agent_version=AGENT_VERSION, protocol_version=1)
        active = self.deployer.active_model()
        if active is not None:
            hello.active_model.CopyFrom(active)
        hello.last_manifest_sequence = self.deployer.last_sequence
        return hello

    def run(self) -> None:
        self.publisher.report_recovery()
        self.deployer.resume()
        # resume() re-notifies only for a trial: load the committed model here.
        self.service.on_active_changed(self.deployer.active_model_path(), self.deployer.active_manifest())
        self.service.start()
        self.publisher.start()
        self.link.start()
        self.stop_requested.wait()
        self.service.stop()  # the last partial window goes into the outbox; the socket is removed
        self.deployer.close()  # records a clean stop, so a trial does not count it as a crash
        self.publisher.flush(2.0)
        self.publisher.stop()
        self.link.stop()
        self.outbox.close()

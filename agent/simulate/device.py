"""One simulated device: the parts AgentDaemon wires for `edge-agent run`, on the fleet's shared threads.

    FleetLink (MQTT: status, hello, commands, chunks)        agent.link.AgentLink without its threads
      ├─▶ Deployer (verified transfer, A/B install, trial)   agent.deployer, threaded=False, on the strand
      └─◀ StrandPublisher (SQLite outbox, deleted on PUBACK) agent.publisher without its thread
    SimulatedService (model host, telemetry, trial)          agent.serve.service's parts without sockets
    RequestStream (synthetic Predict calls)                   agent.simulate.requests

Everything that touches the install state, the trial or the telemetry window runs on the device's
strand, one task at a time, as the daemon's threads serialize it under the deployer's lock. Start and
stop follow AgentDaemon.run(): recover the install, load the committed model, connect; on stop the
last telemetry window goes to the outbox, the install path records a clean stop, the outbox is
flushed, and `stopped` is published before a clean disconnect.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from pathlib import Path

from agent.deployer import Deployer
from agent.identity import StateDirError, load_identity, prepare_state_dir
from agent.install.acceptance import read_golden
from agent.install.report import active_model_of
from agent.outbox import Outbox
from agent.simulate.link import FleetLink
from agent.simulate.publisher import StrandPublisher
from agent.simulate.requests import RequestStream
from agent.simulate.runtime import FleetRuntime
from agent.simulate.scheduler import Coalesced, Strand, Timer
from agent.simulate.service import SimulatedService
from agent.version import AGENT_VERSION
from edgefleet.v1 import device_pb2, hardware_pb2

log = logging.getLogger(__name__)

OUTBOX_FILE = "outbox.db"  # as AgentDaemon: a device dir can be run by `edge-agent run` too
LOCK_FILE = "simulate.lock"


def lock_state_dir(state_dir: Path) -> int:
    """An exclusive lock on the device's state directory for this process's life (the fd to close).

    Two simulators running one device would be two MQTT sessions with one client id, taking the session
    from each other in turn; `edge-agent run` is kept from that by its socket, a simulated device by this.
    """
    fd = os.open(state_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StateDirError(f"{state_dir} is run by another edge-agent simulate process: stop that one first") from None
    return fd


class SimulatedDevice:
    def __init__(self, state_dir: Path, profile: str, runtime: FleetRuntime, *, seed: int | None = None) -> None:
        """Reads the identity and the profile and opens the outbox; raises StateDirError or ProfileError."""
        self.state_dir = prepare_state_dir(state_dir)
        self.ident = load_identity(self.state_dir)
        self.name = self.ident.device_name or self.state_dir.name
        self.profile = profile
        self._runtime = runtime
        self.hardware: hardware_pb2.HardwareProfile = runtime.hardware.profile(profile)
        self.strand = Strand(runtime.work)
        self._closing = False
        self._active: device_pb2.ActiveModel | None = None
        self._last_sequence = 0
        self._housekeeping_timer: Timer | None = None
        self._lock_fd = lock_state_dir(self.state_dir)
        try:
            self._wire(runtime, seed)
        except BaseException:
            os.close(self._lock_fd)
            raise

    def _wire(self, runtime: FleetRuntime, seed: int | None) -> None:
        """The parts, wired as AgentDaemon wires them (see the module docstring)."""
        options, clock = runtime.options, runtime.clock
        self.link = FleetLink(self.ident, self.hello, on_command=self._on_command, network=runtime.network,
                              strand=self.strand, protocol=options.protocol, keepalive_s=options.keepalive_s,
                              on_connect_fail=runtime.unreachable, on_connected=self._after_connect, clock=clock)
        self.outbox = Outbox.open(self.state_dir / OUTBOX_FILE)
        try:
            self.publisher = StrandPublisher.for_client(self.outbox, self.link.client, self.link.connected,
                                                        self.ident.device_id, strand=self.strand)
            self._tick_soon = Coalesced(self.strand, self._housekeeping)
            self.service = SimulatedService(self.state_dir, self.hardware, emit_telemetry=self.publisher.put_telemetry,
                                            golden=self._golden_set, share=runtime.share,
                                            interval_s=options.telemetry_interval_s, num_threads=options.num_threads,
                                            clock=clock, on_trial_wake=self._tick_soon.set)
            self.deployer = Deployer(
                self.state_dir, self.ident,
                lambda topic, payload, qos: self.link.publish(topic, payload, qos=qos),
                self.publisher.put_event,
                clock=clock,
                hardware=lambda: self.hardware,
                on_active_changed=self._on_active_changed,
                auto_end_trial=False,  # the service's trial supervisor ends trials, as in the daemon
                connection_count=lambda: self.link.connects,
                subscribe=self.link.subscribe, unsubscribe=self.link.unsubscribe,  # broadcast transfers
                threaded=False,        # its work runs on this device's strand instead of two threads
                # Inline profiling would hold a shared worker for seconds per candidate: the fleet's
                # profiling thread takes them, as threaded=True hands them to a thread of the device's own.
                submit_profile=runtime.profiling.post,
            )
            self.service.supervise(self.deployer)
            self.requests = RequestStream(self.service.servicer, runtime.timers, runtime.requests, rate=options.rate,
                                          golden=self._golden_set, feedback=options.feedback, seed=seed)
            self.service.host.subscribe(self.requests.on_activate)
        except BaseException:
            self.outbox.close()
            raise

    def close(self) -> None:
        """The outbox and the state directory's lock (after stop; or when start failed)."""
        try:
            self.outbox.close()
        finally:
            os.close(self._lock_fd)

    # -- what the device reports ----------------------------------------------------------------

    def hello(self) -> device_pb2.Hello:
        """Built on the network thread at every connect: cached figures only, no lock the strand may hold."""
        try:
            self.hardware = self._runtime.hardware.profile(self.profile)
        except Exception as exc:  # noqa: BLE001 - report the last good profile rather than nothing
            log.warning("%s: profile %s unreadable, sending the previous hardware: %s", self.name, self.profile, exc)
        hello = device_pb2.Hello(hardware=self.hardware, agent_version=AGENT_VERSION, protocol_version=1)
        active = self._active
        if active is not None:
            hello.active_model.CopyFrom(active)
        hello.last_manifest_sequence = self._last_sequence
        return hello

    def _golden_set(self, served):
        manifest, path = self.deployer.active_manifest(), self.deployer.active_golden_path()
        if manifest is None or path is None or manifest.variant_id != served.key.variant_id:
            return None
        return read_golden(path)

    @property
    def connected(self) -> bool:
        return self.link.connected.is_set()

    # -- life cycle -------------------------------------------------------------------------------

    def start(self, first_tick_s: float = 0.0) -> None:
        """As AgentDaemon.run() up to its wait: recover the install, serve the committed model, connect."""
        self.publisher.report_recovery()
        self.deployer.resume()
        self._on_active_changed(self.deployer.active_model_path(), self.deployer.active_manifest())
        self._last_sequence = self.deployer.last_sequence
        self.link.start()
        options = self._runtime.options
        self._housekeeping_timer = self._runtime.timers.every(options.housekeeping_s, self._tick_soon.set,
                                                              first_delay_s=first_tick_s)
        self.requests.start()

    def halt(self) -> None:
        """Stop the request stream and housekeeping; commands arriving from now on are ignored."""
        self._closing = True
        self.requests.stop()
        if self._housekeeping_timer is not None:
            self._housekeeping_timer.cancel()

    def close_work(self, done: threading.Event) -> None:
        """On the strand, after whatever runs there: the last telemetry window, a clean stop of the install path."""
        def close() -> None:
            try:
                self.service.close()
                self.deployer.close()
            finally:
                done.set()

        self.strand.post(close)

    # -- callbacks --------------------------------------------------------------------------------

    def _on_command(self, env) -> None:
        """Strand: a decoded command or chunk."""
        if self._closing:
            return
        if self.deployer.handle(env):
            self._last_sequence = self.deployer.last_sequence
            return
        body = env.WhichOneof("body")
        log.info("%s: ignored %s command", self.name, env.command.WhichOneof("kind") if body == "command" else body)

    def _on_active_changed(self, path: Path | None, manifest) -> None:
        """Deployer's callback (strand, under the deployer's lock) and start()."""
        self.service.on_active_changed(path, manifest)
        self._active = active_model_of(manifest) if path is not None else None

    def _after_connect(self) -> None:
        """Network thread: records waiting in the outbox go out now."""
        self.publisher.wake()

    def _housekeeping(self) -> None:
        """Strand, every housekeeping interval (and at once after an activation)."""
        if self._closing:
            return
        self.deployer.tick()
        self.service.tick()
        self._last_sequence = self.deployer.last_sequence
        if self.link.connected.is_set() and self.publisher.idle_with_records:
            self.publisher.wake()

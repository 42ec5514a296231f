"""The install path as one object the agent daemon wires in: commands and chunks in, events out.

    deployer = Deployer(state_dir, ident, publish=link_publish, emit=outbox_emit, hardware=lambda: hw)
    deployer.resume()                 # at start, before connecting: recover whatever a crash left
    link = AgentLink(..., on_command=deployer.handle)   # Deploy, Rollback, ProfileRequest, BlobChunk
    deployer.on_connected()           # after every (re)connect (or pass connection_count=)

Broadcast: with `subscribe=link.subscribe, unsubscribe=link.unsubscribe`, the broadcast offers of a Deploy
command (transfer id and key of a blob the coordinator publishes once for the whole wave) are handed to
the installer's Fetcher before the command itself, so the download listens on the broadcast topic and
asks by unicast only for what it misses (agent/transfer.py). Without them: unicast only.

`handle` queues commands: a worker thread runs the install state machine (agent.install.machine), the
chunk timeouts and the trial's time limit, so the MQTT thread is never blocked by a download, an
acceptance test or a profile. A chunk is stored (written, hashed) in the caller's thread (the link's
worker) when the worker is idle: one thread hop less per chunk; whatever follows the last chunk of a
download runs on the worker. Profiling child processes run on a second thread. The trial is ended
by `commit()` / `rollback()` / `record_trial_outcome()` (the trial monitor) and, unless
`auto_end_trial=False`, by `note_inferences()` reaching the policy's count or by the policy's time
running out (then `trial_judge`, if set, decides; without one the model is committed). These calls
are synchronous and thread-safe. The crash-loop rule (trial.max_restarts) is always the deployer's.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from pathlib import Path
from typing import Callable, Mapping

from agent.identity import Identity
from agent.install.crash import CrashPoints
from agent.install.machine import Installer, TrialVerdict
from agent.runtime.backend import Backend
from edgefleet.v1 import device_pb2, envelope_pb2, events_pb2, hardware_pb2, manifest_pb2

log = logging.getLogger(__name__)

_COMMAND_KINDS = ("deploy", "rollback", "profile")
_STOP = object()


class Deployer:
    def __init__(
        self,
        state_dir: Path,
        identity: Identity,
        publish: Callable[[str, bytes, int], object],
        emit: Callable[[events_pb2.Event], None],
        *,
        clock: Callable[[], float] = time.monotonic,
        storage_budget_bytes: int | None = None,
        window: int = 8,
        chunk_timeout_s: float = 10,
        backend_factory: Callable[[manifest_pb2.ModelManifest], Backend] | None = None,
        hardware: Callable[[], hardware_pb2.HardwareProfile | None] | None = None,
        on_active_changed: Callable[[Path | None, manifest_pb2.ModelManifest | None], None] | None = None,
        trial_judge: Callable[[manifest_pb2.ModelManifest], TrialVerdict | None] | None = None,
        auto_end_trial: bool = True,
        connection_count: Callable[[], int] | None = None,
        tick_interval_s: float = 0.5,
        threaded: bool = True,
        crash_points: CrashPoints | None = None,
        run_profile: Callable | None = None,
        acceptance_runs: int = 30,
        submit_profile: Callable[[Callable[[], None]], None] | None = None,
        subscribe: Callable[[str, Callable[[bool], None]], None] | None = None,
        unsubscribe: Callable[[str], None] | None = None,
        progress_interval_s: float = 1.0,
    ) -> None:
        """`threaded=False` runs everything in the caller's thread (tests; call `tick()` yourself).

        hardware: the current hardware profile (accelerators pick the backend; a simulated profile's
        latency_factor scales measured latencies). on_active_changed(path, manifest): called after
        every activation or rollback, to load the model that now runs (None: no model).
        connection_count: e.g. `lambda: link.connects`; when it grows, on_connected() runs by itself.
        auto_end_trial: end the trial when the policy's time or inference count is reached (asking
        `trial_judge`, whose None means "not yet"); False when a trial monitor (agent/trial.py's
        TrialSupervisor) ends every trial itself through commit() / rollback().
        submit_profile(fn): where profiling jobs run when not threaded (default: inline); the simulator
        hands them to its fleet-wide profiling thread.
        progress_interval_s: download progress is reported only when the last report is this old (Installer).
        subscribe(topic, done) / unsubscribe(topic): the link's (AgentLink.subscribe): done(granted) must be
        called off the network thread (the link's worker, or the device's strand); it is queued here.
        """
        self._threaded = threaded
        self._lock = threading.RLock()
        self._queue: queue.Queue = queue.Queue()
        self._profile_queue: queue.Queue = queue.Queue()
        self._clock = clock
        self._tick_interval_s = tick_interval_s
        self._connection_count = connection_count
        self._connects_seen = 0
        self._threads: list[threading.Thread] = []
        self._closed = False
        self._storing = False  # a chunk is being stored in a caller's thread (under the lock)
        self._installer = Installer(
            state_dir, identity, publish, emit, clock=clock, storage_budget_bytes=storage_budget_bytes, window=window,
            chunk_timeout_s=chunk_timeout_s, backend_factory=backend_factory, hardware=hardware,
            on_active_changed=on_active_changed, trial_judge=trial_judge, auto_end_trial=auto_end_trial,
            submit_profile=self._profile_queue.put if threaded else submit_profile, run_profile=run_profile,
            crash_points=crash_points, acceptance_runs=acceptance_runs, progress_interval_s=progress_interval_s,
        )
        if subscribe is not None:
            self._installer.fetcher.enable_broadcast(
                lambda topic, done: subscribe(topic, lambda granted: self._run(lambda: done(granted))),
                unsubscribe or (lambda topic: None),
            )

    # -- life cycle ---------------------------------------------------------------------------

    def resume(self) -> None:
        """Recover from whatever state the last run left, then start the worker threads."""
        with self._lock:
            try:
                self._installer.resume()
            except Exception:  # noqa: BLE001 - the agent must run whatever the pointer names
                log.exception("install recovery failed; running the model the slot pointer names")
        if self._threaded and not self._threads:
            for target, name in ((self._work, "deployer"), (self._profile_work, "deployer-profiling")):
                thread = threading.Thread(target=target, name=name, daemon=True)
                thread.start()
                self._threads.append(thread)

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop the threads and persist that this was a clean stop (not a crash during a trial)."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        self._profile_queue.put(_STOP)
        for thread in self._threads:
            thread.join(timeout_s)
        with self._lock:
            self._installer.close()

    # -- input --------------------------------------------------------------------------------

    def handle(self, env: envelope_pb2.Envelope) -> bool:
        """Take a decoded envelope from the link; True when it was for the deployer (queued or done)."""
        body = env.WhichOneof("body")
        if body == "command":
            if env.command.WhichOneof("kind") not in _COMMAND_KINDS:
                return False
        elif body != "blob_chunk":
            return False
        if not self._threaded:
            self._process(env)
        elif body != "blob_chunk" or not self._store_now(env.blob_chunk):
            self._queue.put(env)
        return True

    def _store_now(self, chunk) -> bool:
        """Store a chunk in the caller's thread (the link's worker) when the worker has nothing queued and
        the lock is free: one thread hop less per chunk. What follows the last chunk of a download goes to
        the worker. False: the chunk must be queued (behind earlier items, so their order holds)."""
        # Not before resume() (the install it may belong to is not open yet) nor after close().
        if not self._threads or self._closed or self._queue.unfinished_tasks or not self._lock.acquire(blocking=False):
            return False
        try:
            # Queued while we took the lock, or a chunk handed back from inside handle_chunk (a publish
            # that answers at once, as in tests): queued, not handled re-entrantly.
            if self._queue.unfinished_tasks or self._storing:
                return False
            self._storing = True
            try:
                self._installer.handle_chunk(chunk, later=self._queue.put)
            finally:
                self._storing = False
        except Exception:  # noqa: BLE001 - as on the worker: one bad chunk must not stop the caller
            log.exception("deployer failed on a blob_chunk")
        finally:
            self._lock.release()
        return True

    def _run(self, fn: Callable[[], None]) -> None:
        """Run fn under the lock: on the worker when threaded, else now (in the caller's thread)."""
        if self._threaded:
            self._queue.put(fn)
        else:
            with self._lock:
                fn()

    def _process(self, env) -> None:
        with self._lock:
            if callable(env):
                env()
            elif env.WhichOneof("body") == "command":
                command = env.command
                if command.WhichOneof("kind") == "deploy" and not self._installer.ledger.seen(command.command_id):
                    # Before the command: its download starts in there.
                    self._installer.fetcher.set_offers(command.deploy.broadcasts)
                self._installer.handle_command(command)
            else:
                self._installer.handle_chunk(env.blob_chunk)

    def active_golden_path(self) -> Path | None:
        """The golden set kept with the active model (read under the lock: the install thread swaps slots)."""
        with self._lock:
            content = self._installer.slots.active()
            return content.golden_path if content else None

    def on_connected(self) -> None:
        with self._lock:
            self._installer.on_connected()

    def tick(self) -> None:
        """Reconnects, chunk timeouts and the trial's time limit (the worker calls it every tick_interval_s)."""
        self._check_connects()
        with self._lock:
            self._installer.tick()

    def _work(self) -> None:
        next_tick = time.monotonic()
        while True:
            try:
                item = self._queue.get(timeout=max(0.0, next_tick - time.monotonic()))
            except queue.Empty:
                item = None
            try:
                if item is _STOP:
                    return
                if item is not None:
                    self._process(item)
                if time.monotonic() >= next_tick:
                    next_tick = time.monotonic() + self._tick_interval_s
                    self.tick()
            except Exception:  # noqa: BLE001 - the worker must survive one bad message
                what = "a tick" if item is None else "a callback" if callable(item) else item.WhichOneof("body")
                log.exception("deployer worker failed on %s", what)
            finally:
                if item is not None:
                    self._queue.task_done()

    def _check_connects(self) -> None:
        if self._connection_count is None:
            return
        count = self._connection_count()
        if count > self._connects_seen:
            first = self._connects_seen == 0
            self._connects_seen = count
            # Requests made before the first connect wait in paho's queue; after a reconnect the
            # answers to earlier ones may be lost.
            if not first:
                log.info("reconnected: asking again for chunks still missing")
                self.on_connected()

    def _profile_work(self) -> None:
        while True:
            job = self._profile_queue.get()
            if job is _STOP:
                return
            try:
                job()
            except Exception:  # noqa: BLE001
                log.exception("profiling job failed")

    def wait_idle(self, timeout_s: float) -> bool:
        """Until every queued envelope was processed (tests); False on timeout."""
        deadline = time.monotonic() + timeout_s
        with self._queue.all_tasks_done:
            while self._queue.unfinished_tasks:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._queue.all_tasks_done.wait(left)
        return True

    # -- the trial ----------------------------------------------------------------------------

    def trial_active(self) -> bool:
        with self._lock:
            return self._installer.trial_active()

    def trial_policy(self) -> manifest_pb2.TrialPolicy | None:
        with self._lock:
            return self._installer.trial_policy()

    def commit(self) -> bool:
        with self._lock:
            return self._installer.commit()

    def rollback(self, reason: str, figures: Mapping[str, float] | None = None) -> bool:
        with self._lock:
            return self._installer.rollback(reason, figures)

    def record_trial_outcome(self, ok: bool, reason: str = "", figures: Mapping[str, float] | None = None) -> bool:
        with self._lock:
            return self._installer.record_trial_outcome(ok, reason, figures)

    def note_inferences(self, count: int = 1) -> None:
        with self._lock:
            self._installer.note_inferences(count)

    # -- what runs ----------------------------------------------------------------------------

    def active_model(self) -> device_pb2.ActiveModel | None:
        with self._lock:
            return self._installer.active_model()

    def active_model_path(self) -> Path | None:
        with self._lock:
            return self._installer.active_model_path()

    def active_manifest(self) -> manifest_pb2.ModelManifest | None:
        with self._lock:
            return self._installer.active_manifest()

    def accepted_figures(self, sha256: str) -> dict[str, float] | None:
        """The acceptance test's figures for that model when this process ran it (metric and golden_count:
        the golden-set score at activation, which the serving side need not compute again); else None."""
        with self._lock:
            return self._installer.accepted_figures(sha256)

    @property
    def last_sequence(self) -> int:
        with self._lock:
            return self._installer.last_sequence

    @property
    def installer(self) -> Installer:
        """The state machine itself (tests and diagnostics); hold no reference across threads."""
        return self._installer

"""The rollout engine: a state machine kept in the store, moved on by a tick.

Each tick, for every unfinished rollout this coordinator holds the lease of:

    pending   -> running, wave 0 starts
    timeouts  a device with no word about its install for device_timeout_s -> timed_out;
              a rollback with no answer for rollback_timeout_s -> timed_out
    resends   a deploy or rollback with no answer for resend_s is published again (same bytes, same
              command id: the agent runs a command once); also once for every open command when this
              engine first sees the rollout (a restarted coordinator cannot know what reached the broker)
    abort     when more than max_failure_percent of the finished devices failed (once
              min_devices_for_abort finished), when no device of the first wave committed, or when the
              telemetry of the committed devices breaks a threshold during a wave's observation window
    running   send the current wave's pending devices (rate limit: per minute, smoothed over 10 s);
              once all of them finished, observe for observe_s, then start the next wave; after the
              last one: done
    paused    nothing is sent and no wave starts; timeouts, events and abort criteria still apply
    aborting  send each touched device a signed rollback order; aborted once each reported
              ROLLED_BACK, refused the order, or timed out

Every step is written to the store before it is acted on (a deploy's command is stored, then
published), so a coordinator killed at any point carries on from the rows when it starts again.
"""
from __future__ import annotations

import logging
import math
import threading
from datetime import datetime, timedelta, timezone
from typing import Callable

from coordinator.rollouts import states as S
from coordinator.rollouts.deploys import DeploySpecs
from coordinator.rollouts.observe import Observe, no_telemetry, threshold_breach
from coordinator.rollouts.repository import RolloutRepository, RolloutSnapshot, utc
from coordinator.rollouts.spec import RolloutParams
from coordinator.store.rollout_tables import RolloutDeviceRow, RolloutRow
from coordinator.transfer.commands import deploy_command, send_command
from coordinator.transfer.manifests import ManifestIssuer
from edgefleet.v1 import commands_pb2, events_pb2, manifest_pb2

log = logging.getLogger(__name__)
MAX_STEPS_PER_TICK = 8
MIN_TICK_GAP_S = 0.05
DEPLOY_BATCH = 100  # deploys issued and stored per transaction
BROADCAST_MIN_DEVICES = 2  # a blob going to fewer devices of a batch is fetched by unicast alone


def _later(*times: datetime | None) -> datetime | None:
    present = [utc(t) for t in times if t is not None]
    return max(present) if present else None


def _blob_keys(spec) -> list[tuple[str, int]]:
    """(sha256, chunk_size) of every blob a manifest spec makes the device fetch."""
    return [(sha, spec.chunk_size) for sha in spec.blobs()]


def failure_breach(devices: list[RolloutDeviceRow], params: RolloutParams) -> str | None:
    """The failure-percentage abort criterion over every device that finished, or None."""
    finished = [d for d in devices if d.state in S.OUTCOMES]
    if len(finished) < params.min_devices_for_abort:
        return None
    bad = [d for d in finished if d.state in S.BAD_OUTCOMES]
    share = 100.0 * len(bad) / len(finished)
    if share <= params.max_failure_percent:
        return None
    examples = "; ".join(f"{d.device_name or d.device_id} {d.state}: {d.detail or 'no reason given'}" for d in bad[:3])
    return f"{len(bad)} of {len(finished)} finished devices failed ({share:.0f}% > {params.max_failure_percent:g}%): {examples}"


class RolloutEngine:
    def __init__(
        self,
        repo: RolloutRepository,
        specs: DeploySpecs,
        issuer: ManifestIssuer,
        publish: Callable[..., object],
        *,
        floor: Callable[[str], int | None],
        floors: Callable[[list[str]], dict[str, int | None]] | None = None,
        observe: Observe = no_telemetry,
        metric_name: Callable[[RolloutRow], str] = lambda r: "metric",
        clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
        owner: str = "coordinator",
        lease_s: float = 30.0,
        tick_interval_s: float = 0.5,
        on_change: Callable[[str], None] | None = None,
        on_finish: Callable[[str], None] | None = None,
        broadcast: Callable[[str, int, list[str]], object] | None = None,
    ):
        """`publish(topic, payload, qos=1)`: CoordinatorLink.publish. `floor(device_id)`: the highest manifest
        sequence the device reported (registry), None when the device was removed; `floors(ids)`: the same for
        many devices in one query (default: floor() for each). `broadcast(sha256, chunk_size, device_ids)` ->
        BlobBroadcast (BlobServer.open_broadcast): a blob that several devices of a wave batch fetch is
        broadcast once to them; None: unicast only. `on_change(rollout_id)`: this engine changed the rollout;
        `on_finish(rollout_id)`: it became done or aborted (after on_change)."""
        self.repo = repo
        self.specs = specs
        self.issuer = issuer
        self.publish = publish
        self.floor = floor
        self.floors = floors or (lambda ids: {i: floor(i) for i in ids})
        self.observe = observe
        self.metric_name = metric_name
        self.clock = clock
        self.owner = owner
        self.lease_s = lease_s
        self.tick_interval_s = tick_interval_s
        self.on_change = on_change or (lambda rollout_id: None)
        self.on_finish = on_finish or (lambda rollout_id: None)
        self.broadcast = broadcast
        self._seen: set[str] = set()  # rollouts whose open commands this engine re-published once
        self._lease_until: dict[str, datetime] = {}  # our own leases: renewed in the store once a third has passed
        self._stepped: dict[str, tuple[tuple, datetime]] = {}  # (repo.mark, clock) of each rollout's last full step
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._tick_lock = threading.Lock()

    # --- the background thread ---------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="rollout-engine", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop ticking and give up this engine's leases, so that another replica takes over at once."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        for rollout_id in list(self._lease_until):
            try:
                self.repo.release_lease(rollout_id, self.owner)
            except Exception:  # noqa: BLE001 - the lease lapses by itself
                log.warning("could not release the lease of rollout %s; it lapses in %s s", rollout_id, self.lease_s)
        self._lease_until.clear()

    def wake(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        # A fleet finishing at once wakes the engine once per device: a short gap after each tick turns
        # such a burst into one step instead of fifty.
        gap = min(MIN_TICK_GAP_S, self.tick_interval_s)
        while not self._stop.is_set():
            self._wake.clear()
            try:
                self.tick()
            except Exception:  # noqa: BLE001 - the store blinked: try again next tick
                log.exception("rollout engine tick failed")
            if self._stop.wait(gap):
                return
            self._wake.wait(self.tick_interval_s - gap)

    # --- one tick ----------------------------------------------------------------------------------------

    def tick(self) -> None:
        with self._tick_lock:
            for rollout_id in self.repo.unfinished_ids():
                if self._stop.is_set():
                    return
                try:
                    if not self._hold_lease(rollout_id) or not self._due(rollout_id):
                        continue
                    for _ in range(MAX_STEPS_PER_TICK):
                        if not self.step(rollout_id):
                            break
                except Exception:  # noqa: BLE001 - one rollout's trouble must not stop the others
                    log.exception("rollout %s: engine step failed", rollout_id)

    def _hold_lease(self, rollout_id: str) -> bool:
        now = self.clock()
        until = self._lease_until.get(rollout_id)
        if until is not None and (until - now).total_seconds() > self.lease_s * 2 / 3:
            return True
        if not self.repo.claim_lease(rollout_id, self.owner, now, self.lease_s):
            self._lease_until.pop(rollout_id, None)
            return False
        self._lease_until[rollout_id] = now + timedelta(seconds=self.lease_s)
        return True

    def _due(self, rollout_id: str) -> bool:
        """A full step when what a step acts on changed since the last one (the rollout's state or wave, a device
        or a rollback finished: repo.mark), or a second went by (timeouts, windows, rates, resends). Download
        progress and install steps bump the rollout's revision many times a second during a wave and change
        nothing a step would do."""
        last = self._stepped.get(rollout_id)
        if last is None:
            return True
        mark, at = last
        return self.repo.mark(rollout_id) != mark or (self.clock() - at).total_seconds() >= 1.0

    def step(self, rollout_id: str) -> bool:
        """Move one rollout on; True when something changed that may let it move further at once."""
        now = self.clock()
        snap = self.repo.get(rollout_id)
        r = snap.rollout
        # The mark this step works from: a later change (a device finishing meanwhile) makes the rollout due again.
        self._stepped[rollout_id] = (snap.mark(), now)
        params = RolloutParams.from_json(r.params)
        if rollout_id not in self._seen:
            self._seen.add(rollout_id)
            if self._republish_open(snap, now):
                snap = self.repo.get(rollout_id)
        if r.state == S.PENDING:
            first = min((d.wave for d in snap.devices if d.state == S.PENDING), default=0)
            return self._set(r, (S.PENDING,), state=S.RUNNING, current_wave=first, wave_started_at=now, wave_done_at=None)
        changed = self._timeouts(snap, params, now)
        self._resends(snap, params, now)
        if changed:
            return True
        if r.state == S.ABORTING:
            return self._drive_abort(snap, params, now)
        why = failure_breach(snap.devices, params)
        if why is not None:
            return self.abort(rollout_id, why)
        if r.state == S.RUNNING:
            return self._drive_waves(snap, params, now)
        return False

    def _set(self, r: RolloutRow, expect: tuple[str, ...], **values) -> bool:
        ok = self.repo.set_rollout(r.id, expect, **values)
        if ok:
            self.on_change(r.id)
        return ok

    # --- abort -------------------------------------------------------------------------------------------

    def abort(self, rollout_id: str, reason: str) -> bool:
        ok = self.repo.begin_abort(rollout_id, reason, self.clock())
        if ok:
            log.warning("rollout %s aborted: %s", rollout_id, reason)
            self.on_change(rollout_id)
            self.wake()
        return ok

    def _drive_abort(self, snap: RolloutSnapshot, params: RolloutParams, now: datetime) -> bool:
        r = snap.rollout
        pending = [d for d in snap.devices if d.rollback == S.RB_PENDING]
        changed = self._send_rollbacks(r, pending, now) if pending else False
        if changed:
            snap = self.repo.get(r.id)
        if any(d.rollback in S.RB_OPEN for d in snap.devices):
            return changed
        back = sum(1 for d in snap.devices if d.rollback == S.RB_DONE)
        lost = [d.device_name or d.device_id for d in snap.devices if d.rollback in (S.RB_TIMED_OUT, S.RB_REJECTED)]
        note = f"; {len(lost)} did not confirm the rollback: {', '.join(lost[:10])}" if lost else ""
        if self._set(r, (S.ABORTING,), state=S.ABORTED, finished_at=now, reason=f"{r.reason} ({back} device{'s' if back != 1 else ''} rolled back{note})"):
            self._finish(r.id)
            log.info("rollout %s: aborted, %d devices rolled back%s", r.id, back, note)
            return True
        return False

    def _send_rollbacks(self, r: RolloutRow, devices: list[RolloutDeviceRow], now: datetime) -> bool:
        """Sign, store, then publish the rollback orders of several devices: one transaction for their
        sequences and one for the rows, as a wave's deploys."""
        changed = False
        floors = self.floors([d.device_id for d in devices])
        todo = []
        for d in devices:
            floor = floors.get(d.device_id)
            if floor is None:
                changed |= self.repo.set_device(r.id, d.device_id, expect_rollback=(S.RB_PENDING,), rollback=S.RB_TIMED_OUT, detail="removed from the registry")
            else:
                todo.append((d, floor))
        if not todo:
            return changed
        cmds = self.issuer.sign_rollbacks([(d.device_id, floor) for d, floor in todo], r.id, r.reason)
        rows = []
        for (d, _), cmd in zip(todo, cmds):
            order = commands_pb2.RollbackOrder.FromString(cmd.rollback.order)
            rows.append((d.device_id, dict(rollback=S.RB_SENT, rollback_sequence=order.sequence, rollback_command_id=cmd.command_id,
                                           rollback_command=cmd.SerializeToString(), rollback_sent_at=now)))
        stored = self.repo.set_devices(r.id, rows, expect_rollback=(S.RB_PENDING,))
        # Stored first: a crash after this line re-publishes these orders on restart; before it, nothing went out.
        for (d, _), cmd in zip(todo, cmds):
            if d.device_id in stored:
                send_command(self.publish, d.device_id, cmd)
        if stored:
            self.on_change(r.id)
        return changed or bool(stored)

    # --- timeouts and resends ----------------------------------------------------------------------------

    def _timeouts(self, snap: RolloutSnapshot, params: RolloutParams, now: datetime) -> bool:
        r = snap.rollout
        changed = False
        for d in snap.devices:
            if d.state in S.IN_FLIGHT:
                last = _later(d.sent_at, d.last_event_at)
                silence = params.device_timeout_s
                if d.install_state == events_pb2.INSTALL_STATE_TRIAL:
                    silence += params.trial_seconds  # a device on trial has nothing to say until the trial ends
                if last is not None and now - last > timedelta(seconds=silence):
                    word = S.install_word(d.install_state) if d.install_state else "nothing since the deploy was sent"
                    changed |= self.repo.set_device(
                        r.id, d.device_id, revision=d.revision, state=S.TIMED_OUT, finished_at=now,
                        detail=f"no word from the device for {silence:g} s (last: {word})",
                    )
            if d.rollback == S.RB_SENT:
                sent = utc(d.rollback_sent_at)
                if sent is not None and now - sent > timedelta(seconds=params.rollback_timeout_s):
                    changed |= self.repo.set_device(
                        r.id, d.device_id, revision=d.revision, rollback=S.RB_TIMED_OUT,
                        detail=f"did not confirm the rollback within {params.rollback_timeout_s:g} s (it gets the order when it connects)",
                    )
        if changed:
            self.on_change(r.id)
        return changed

    def _resends(self, snap: RolloutSnapshot, params: RolloutParams, now: datetime) -> None:
        """Publish again what has not been answered for resend_s, and at once to a device that came online
        after the last publish: a device that never connected before has no session at the broker yet,
        so what was published to it then is gone."""
        r = snap.rollout
        every = timedelta(seconds=params.resend_s)
        waiting = [d for d in snap.devices if (d.state in S.IN_FLIGHT and d.command) or (d.rollback == S.RB_SENT and d.rollback_command)]
        if not waiting:
            return
        online = self.repo.online_since(d.device_id for d in waiting)

        def due(d: RolloutDeviceRow, last: datetime | None, quiet: timedelta = every) -> bool:
            came = online.get(d.device_id)
            return last is not None and (now - last >= quiet or (came is not None and came > last))

        for d in waiting:
            # Also a deploy the device answered and then went quiet about (an event lost with a coordinator
            # killed before storing it): an agent that re-reports the outcome of a repeated command id tells.
            on_trial = d.install_state == events_pb2.INSTALL_STATE_TRIAL
            quiet = every + timedelta(seconds=params.trial_seconds if on_trial else 0)
            if d.state in S.IN_FLIGHT and d.command and due(d, _later(d.sent_at, d.resent_at, d.last_event_at), quiet):
                self._republish(r.id, d, d.command, now, "resent_at")
            if d.rollback == S.RB_SENT and d.rollback_command and due(d, _later(d.rollback_sent_at, d.rollback_resent_at)):
                self._republish(r.id, d, d.rollback_command, now, "rollback_resent_at")

    def _republish_open(self, snap: RolloutSnapshot, now: datetime) -> bool:
        published = False
        for d in snap.devices:
            if d.state == S.SENT and d.command:
                self._republish(snap.rollout.id, d, d.command, now, "resent_at")
                published = True
            if d.rollback == S.RB_SENT and d.rollback_command:
                self._republish(snap.rollout.id, d, d.rollback_command, now, "rollback_resent_at")
                published = True
        if published:
            log.info("rollout %s: published its unanswered commands again (this coordinator took it over or restarted)", snap.rollout.id)
        return published

    def _republish(self, rollout_id: str, d: RolloutDeviceRow, blob: bytes, now: datetime, column: str) -> None:
        send_command(self.publish, d.device_id, commands_pb2.Command.FromString(blob))
        self.repo.set_device(rollout_id, d.device_id, **{column: now})
        log.debug("rollout %s: published %s's command %s again", rollout_id, d.device_name or d.device_id, column)

    # --- waves -------------------------------------------------------------------------------------------

    def _drive_waves(self, snap: RolloutSnapshot, params: RolloutParams, now: datetime) -> bool:
        r = snap.rollout
        wave = [d for d in snap.devices if d.wave == r.current_wave and d.state != S.SKIPPED]
        pending = [d for d in wave if d.state == S.PENDING]
        if pending:
            return self._send_wave(r, pending, params, now)
        if any(d.state not in S.DEVICE_DONE for d in wave):
            return False
        first = min((d.wave for d in snap.devices if d.state != S.SKIPPED), default=0)
        if r.current_wave == first and wave and not any(d.state == S.COMMITTED for d in wave):
            outcome = "; ".join(f"{d.device_name or d.device_id} {d.state}: {d.detail or 'no reason given'}" for d in wave[:3])
            return self.abort(r.id, f"no device of the first wave committed: {outcome}")
        done_at = utc(r.wave_done_at)
        if done_at is None:
            return self._set(r, (S.RUNNING,), wave_done_at=now)
        if params.observe_s > 0 and params.has_telemetry_thresholds:
            committed = [d.device_id for d in snap.devices if d.wave <= r.current_wave and d.state == S.COMMITTED]
            if committed:
                figures = self.observe(committed, r.model, r.version, utc(r.wave_started_at) or done_at)
                why = threshold_breach(figures, params, self.metric_name(r))
                if why is not None:
                    return self.abort(r.id, f"wave {r.current_wave + 1}: {why}")  # counted from 1, as edgectl shows waves
        if now < done_at + timedelta(seconds=params.observe_s):
            return False
        later = [d.wave for d in snap.devices if d.wave > r.current_wave and d.state == S.PENDING]
        if later:
            nxt = min(later)
            log.info("rollout %s: wave %d done, starting wave %d", r.id, r.current_wave + 1, nxt + 1)
            return self._set(r, (S.RUNNING,), current_wave=nxt, wave_started_at=now, wave_done_at=None)
        counts = {s: sum(1 for d in snap.devices if d.state == s) for s in S.OUTCOMES}
        summary = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
        if self._set(r, (S.RUNNING,), state=S.DONE, finished_at=now, reason=r.reason or summary):
            self._finish(r.id)
            log.info("rollout %s: done (%s)", r.id, summary)
            return True
        return False

    def _send_wave(self, r: RolloutRow, pending: list[RolloutDeviceRow], params: RolloutParams, now: datetime) -> bool:
        budget = len(pending)
        rate = params.rate_per_minute
        if rate > 0:
            burst = max(1, math.ceil(rate / 6))  # at most a sixth of the minute's devices in any 10 s
            budget = min(budget, rate - self.repo.sent_since(r.id, now - timedelta(seconds=60)), burst - self.repo.sent_since(r.id, now - timedelta(seconds=10)))
        chosen = sorted(pending, key=lambda d: d.position)[: max(0, budget)]
        changed = False
        for i in range(0, len(chosen), DEPLOY_BATCH):  # a huge wave: the first devices need not wait for the last
            changed |= self._send_deploys(r, chosen[i : i + DEPLOY_BATCH], now)
        return changed

    def _send_deploys(self, r: RolloutRow, devices: list[RolloutDeviceRow], now: datetime) -> bool:
        """Issue, store, then publish the deploys of several devices: one transaction for the manifests and
        one for the rows (a wave of 50 cost 100 commits, and the last device waited for all of them)."""
        changed = False
        todo: list[tuple[RolloutDeviceRow, object, int]] = []
        floors = self.floors([d.device_id for d in devices])
        for d in devices:
            floor = floors.get(d.device_id)
            if floor is None:
                changed |= self.repo.set_device(r.id, d.device_id, expect=(S.PENDING,), state=S.SKIPPED, finished_at=now, detail="removed from the registry before its wave")
                continue
            try:
                todo.append((d, self.specs.spec(r, d.variant_id), floor))
            except Exception as exc:  # noqa: BLE001 - a manifest that cannot be made fails this device, not the engine
                changed |= self._cannot_issue(r, d, now, exc)
        if not todo:
            return changed
        try:
            signed_all = self.issuer.issue_each([(d.device_id, spec, floor) for d, spec, floor in todo], rollout_id=r.id)
        except Exception:  # noqa: BLE001 - one bad device must not hold back the wave: issue one by one
            signed_all = []
            for d, spec, floor in todo:
                try:
                    signed_all.append(self.issuer.issue(d.device_id, spec, rollout_id=r.id, floor=floor))
                except Exception as exc:  # noqa: BLE001
                    changed |= self._cannot_issue(r, d, now, exc)
                    signed_all.append(None)
        offers = self._open_broadcasts([(d.device_id, spec) for (d, spec, _), signed in zip(todo, signed_all) if signed is not None])
        cmds, rows = {}, []
        for (d, spec, _), signed in zip(todo, signed_all):
            if signed is None:
                continue
            cmd = deploy_command(signed, broadcasts=[offers[key] for key in _blob_keys(spec) if key in offers])
            cmds[d.device_id] = cmd
            rows.append((d.device_id, dict(
                state=S.SENT, sequence=manifest_pb2.ModelManifest.FromString(signed.manifest).sequence, command_id=cmd.command_id,
                command=cmd.SerializeToString(), sent_at=now, bytes_total=spec.size_bytes + (spec.golden.size_bytes if spec.golden else 0),
            )))
        stored = self.repo.set_devices(r.id, rows, expect=(S.PENDING,))
        # Stored first: a crash after this line re-publishes these bytes on restart; before it, nothing went out.
        for device_id, _ in rows:
            if device_id in stored:
                send_command(self.publish, device_id, cmds[device_id])
        if stored:
            self.on_change(r.id)
        return changed or bool(stored)

    def _open_broadcasts(self, sent: list[tuple[str, object]]) -> dict[tuple[str, int], object]:
        """One broadcast transfer per blob that BROADCAST_MIN_DEVICES or more of these devices fetch."""
        if self.broadcast is None:
            return {}
        fetchers: dict[tuple[str, int], list[str]] = {}
        for device_id, spec in sent:
            for key in _blob_keys(spec):
                fetchers.setdefault(key, []).append(device_id)
        offers = {}
        for (sha, chunk_size), ids in fetchers.items():
            if len(ids) < BROADCAST_MIN_DEVICES:
                continue
            try:
                offers[(sha, chunk_size)] = self.broadcast(sha, chunk_size, ids)
            except Exception:  # noqa: BLE001 - without a broadcast the devices fetch by unicast
                log.exception("could not open a broadcast of %s; unicast only", sha[:12])
        return offers

    def _cannot_issue(self, r: RolloutRow, d: RolloutDeviceRow, now: datetime, exc: Exception) -> bool:
        log.error("rollout %s: cannot issue a manifest for %s: %s", r.id, d.device_name or d.device_id, exc)
        return self.repo.set_device(r.id, d.device_id, expect=(S.PENDING,), state=S.FAILED, finished_at=now, detail=f"no manifest could be issued: {exc}")

    def _finish(self, rollout_id: str) -> None:
        self.repo.release_claims(rollout_id)
        self.repo.release_lease(rollout_id, self.owner)
        self.specs.forget(rollout_id)
        self._seen.discard(rollout_id)
        self._lease_until.pop(rollout_id, None)
        self._stepped.pop(rollout_id, None)
        self.on_finish(rollout_id)

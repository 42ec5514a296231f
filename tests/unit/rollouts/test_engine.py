"""The rollout engine on SQLite and PostgreSQL, with an injected clock and a fake agent fleet that gets
commands through a fake publish and answers with install events through the real ingest."""
from __future__ import annotations

from datetime import timedelta

import pytest

from coordinator.config import RolloutsConfig
from coordinator.rollouts.observe import Figures
from coordinator.rollouts.planner import RolloutRefused
from coordinator.rollouts.service import RolloutConflict
from coordinator.transfer.manifests import verify_manifest
from edgefleet.v1 import admin_pb2, events_pb2
from tests.unit.rollouts.fleet_fakes import World

E = events_pb2


def cams(n: int, kind: str = "pi4") -> list[tuple[str, str]]:
    return [(f"cam-{i:02d}", kind) for i in range(n)]


def spec(world: World, **kw) -> admin_pb2.RolloutSpec:
    return admin_pb2.RolloutSpec(ref=world.ref, selector=kw.pop("selector", "role=camera"), **kw)


def finished(world: World, rid: str):
    return lambda: world.state(rid) in ("done", "aborted")


def sent_wave_order(world: World, rid: str) -> list[int]:
    rows = world.service.repo.get(rid).by_id()
    return [rows[d].wave for d, c in world.published if c.WhichOneof("kind") == "deploy"]


def test_canary_first_then_waves_in_order_and_done(store, tmp_path):
    w = World(store, tmp_path, cams(10))
    r = w.service.create(spec(w, canary_count=2, waves=3))
    assert (r.state, r.waves) == ("pending", 4)
    w.service.engine.tick()
    # Only the canary went out; nothing else until it finished.
    assert len(w.deploys()) == 2 and set(sent_wave_order(w, r.id)) == {0}
    w.run(finished(w, r.id))
    final = w.rollout(r.id)
    assert final.state == "done" and dict(final.counts) == {"committed": 10}
    waves = sent_wave_order(w, r.id)
    assert waves == sorted(waves) and waves[:2] == [0, 0] and set(waves) == {0, 1, 2, 3}
    assert all(len(a.installs) == 1 for a in w.agents.values())
    # The claims went with the rollout: the same devices can take another one now.
    assert w.service.repo.claims(w.ids.values()) == {}
    # Manifests are signed for their device, name the rollout, and carry the golden set and the bounds.
    m = verify_manifest(w.deploys("cam-03")[0].deploy.manifest, w.signer.public_raw, device_id=w.ids["cam-03"])
    assert m.rollout_id == r.id and m.golden.sha256 and m.golden.count == 256 and m.trial.seconds == 30


def test_rate_limit_spreads_deploys(store, tmp_path):
    w = World(store, tmp_path, cams(13))
    r = w.service.create(spec(w, canary_count=1, waves=1, rate_per_minute=6))
    sent_at: list = []

    def record() -> bool:
        while len(sent_at) < len(w.deploys()):
            sent_at.append(w.clock.now)
        return w.state(r.id) == "done"

    w.run(record, step_s=1.0)
    assert len(sent_at) == 13
    for i, t in enumerate(sent_at):
        in_minute = [u for u in sent_at if t - timedelta(seconds=60) < u <= t]
        in_10s = [u for u in sent_at if t - timedelta(seconds=10) < u <= t]
        assert len(in_minute) <= 6 and len(in_10s) <= 1, f"deploy {i} at {t}: {len(in_minute)} in a minute, {len(in_10s)} in 10 s"
    # ...and it did not crawl: 12 devices after the canary at 6/min take about two minutes.
    assert sent_at[-1] - sent_at[0] < timedelta(seconds=150)


def test_silent_device_times_out_and_the_rollout_goes_on(store, tmp_path):
    w = World(store, tmp_path, cams(6))
    w.agent("cam-03").mode = "silent"
    r = w.service.create(spec(w, canary_count=1, waves=1, device_timeout_s=120, max_failure_percent=50))
    w.run(finished(w, r.id))
    final = w.rollout(r.id)
    assert final.state == "done" and dict(final.counts) == {"committed": 5, "timed_out": 1}
    d = next(p for p in final.progress if p.device_name == "cam-03")
    assert "no word from the device for 120 s" in d.detail
    # A silent device got its deploy published again (same command id) before giving up.
    sent = w.deploys("cam-03")
    assert len(sent) >= 2 and len({c.command_id for c in sent}) == 1


def test_abort_on_failure_percentage_rolls_back_what_it_touched(store, tmp_path):
    w = World(store, tmp_path, cams(10))
    for name in ("cam-01", "cam-02"):
        w.agent(name).mode = "fail"
    r = w.service.create(spec(w, canary_count=1, waves=3, max_failure_percent=20, min_devices_for_abort=3))
    w.run(finished(w, r.id))
    final = w.rollout(r.id)
    assert final.state == "aborted"
    assert "failed (" in final.reason and "> 20%" in final.reason and "acceptance test failed" in final.reason
    states = {p.device_name: p for p in final.progress}
    # Devices that may run the new model got a signed rollback and are back on the old one.
    touched = [n for n, p in states.items() if p.state == "rolled_back"]
    assert touched and all(states[n].rollback == "done" for n in touched)
    for name in touched:
        assert w.agent(name).active is None and len(w.rollbacks(name)) == 1
    # Failed installs never activated anything: no rollback for them.
    assert states["cam-01"].state == "failed" and not w.rollbacks("cam-01")
    # Devices not reached were never sent anything.
    skipped = [n for n, p in states.items() if p.state == "skipped"]
    assert skipped and all(not w.deploys(n) for n in skipped)
    assert w.service.repo.claims(w.ids.values()) == {}


def test_first_wave_with_no_commit_aborts(store, tmp_path):
    w = World(store, tmp_path, cams(5))
    w.agent("cam-00").mode = "trial_rollback"
    r = w.service.create(spec(w, canary_count=1, waves=1, min_devices_for_abort=3))
    w.run(finished(w, r.id))
    final = w.rollout(r.id)
    assert final.state == "aborted" and "no device of the first wave" in final.reason and "p95 latency 41 ms" in final.reason
    assert len(w.deploys()) == 1  # the canary only


def test_abort_on_telemetry_threshold_during_observation(store, tmp_path):
    w = World(store, tmp_path, cams(6))
    r = w.service.create(spec(w, canary_count=2, waves=1, observe_s=60, max_p95_ms=60.0))
    w.run(lambda: w.service.repo.rollout(r.id).wave_done_at is not None)
    assert len(w.deploys()) == 2
    # Good figures: the window runs its course and the next wave starts.
    w.figures = Figures(devices=2, requests=500, errors=0, p95_ms=30.0, metric=0.97, metric_source="golden")
    w.run(lambda: len(w.deploys()) > 2)
    assert w.clock.now - w.service.repo.rollout(r.id).wave_started_at.replace(tzinfo=w.clock.now.tzinfo) < timedelta(seconds=5)
    w.run(lambda: w.service.repo.rollout(r.id).wave_done_at is not None)
    # Then the second wave's telemetry goes bad: abort, and everyone gets rolled back.
    w.figures = Figures(devices=6, requests=900, errors=2, p95_ms=75.0)
    w.run(finished(w, r.id))
    final = w.rollout(r.id)
    assert final.state == "aborted" and "telemetry p95 75 ms > 60 ms budget" in final.reason
    assert dict(final.counts) == {"rolled_back": 6}
    assert all(a.active is None and a.rollbacks == 1 for a in w.agents.values())


def test_error_rate_and_metric_thresholds(store, tmp_path):
    w = World(store, tmp_path, cams(4))
    w.figures = Figures(devices=1, requests=1000, errors=50, p95_ms=10.0)
    r = w.service.create(spec(w, canary_count=1, waves=1, observe_s=30, max_error_rate=0.01))
    w.run(finished(w, r.id))
    assert "error rate 5% > 1%" in w.rollout(r.id).reason
    w2 = World(store, tmp_path / "b", [(f"door-{i}", "pi4") for i in range(3)], labels={"role": "door"})
    w2.figures = Figures(devices=1, requests=10, metric=0.81, metric_source="online")
    r2 = w2.service.create(spec(w2, selector="role=door", canary_count=1, waves=1, observe_s=30, min_metric=0.9))
    w2.run(finished(w2, r2.id))
    assert "online accuracy 0.81 < 0.9 required" in w2.rollout(r2.id).reason


def test_pause_holds_sending_and_resume_carries_on(store, tmp_path):
    w = World(store, tmp_path, cams(6))
    r = w.service.create(spec(w, canary_count=1, waves=1))
    w.run(lambda: w.device_state(r.id, "cam-00") == "committed")
    assert w.service.control(r.id, "pause").state == "paused"
    assert w.service.control(r.id[:6], "pause").state == "paused"  # idempotent, and by prefix
    for _ in range(30):
        w.service.engine.tick()
        w.pump()
        w.clock.advance(5)
    assert len(w.deploys()) == 1 and w.state(r.id) == "paused"
    assert w.service.control(r.id, "resume").state == "running"
    w.run(finished(w, r.id))
    assert w.rollout(r.id).state == "done" and len(w.deploys()) == 6
    with pytest.raises(RolloutConflict, match="is done: only a pending or running rollout can be paused"):
        w.service.control(r.id, "pause")
    with pytest.raises(RolloutConflict, match="is done"):
        w.service.control(r.id, "abort")


def test_operator_abort_rolls_back_and_ends_when_offline_devices_time_out(store, tmp_path):
    w = World(store, tmp_path, cams(6))
    w.agent("cam-02").mode = "silent"  # went offline after taking... nothing: it never answers
    r = w.service.create(spec(w, canary_count=1, waves=1))
    w.run(lambda: len(w.deploys()) == 6 and w.device_state(r.id, "cam-01") == "committed")
    aborted = w.service.control(r.id, "abort", "latency regression seen by hand")
    assert aborted.state == "aborting" and aborted.reason == "latency regression seen by hand"
    w.run(finished(w, r.id))
    final = w.rollout(r.id)
    states = {p.device_name: p for p in final.progress}
    assert final.state == "aborted" and "did not confirm the rollback: cam-02" in final.reason
    assert states["cam-02"].rollback == "timed_out" and len(w.rollbacks("cam-02")) >= 1
    assert all(states[n].state == "rolled_back" for n in states if n != "cam-02")
    order = w.rollbacks("cam-01")[0]
    assert order.rollback.signature and w.agent("cam-01").active is None
    # When it comes back, cam-02 gets the deploy and then the rollback, in order, and ends on its old model.
    w.agent("cam-02").mode = "ok"
    w.pump()
    assert w.agent("cam-02").active is None and w.agent("cam-02").rollbacks == 1


def test_restart_from_the_store_does_not_install_twice(store, tmp_path):
    w = World(store, tmp_path, cams(8))
    for a in w.agents.values():
        a.mode = "silent"  # commands queue "at the broker" until we deliver
    r = w.service.create(spec(w, canary_count=2, waves=2))
    w.service.engine.tick()
    w.agent("cam-00").mode = "ok"
    w.pump()  # one canary answered; the other's command is still queued when the coordinator dies
    before = len(w.published)
    # A new service over the same store (kill -9 and start): no memory of what was published.
    fresh = w.new_service(owner="node-a")
    w.service = fresh
    fresh.engine.tick()
    republished = w.published[before:]
    assert [c.command_id for _, c in republished] == [w.deploys()[1].command_id]  # only the unanswered one, same id
    for a in w.agents.values():
        a.mode = "ok"
    w.run(finished(w, r.id))
    assert w.rollout(r.id).state == "done"
    assert all(len(a.installs) == 1 for a in w.agents.values()), "a command was run twice"


def test_another_replica_takes_over_only_after_the_lease_lapses(store, tmp_path):
    w = World(store, tmp_path, cams(4))
    r = w.service.create(spec(w, canary_count=1, waves=1))
    w.service.engine.tick()
    other = w.new_service(owner="node-b")
    before = len(w.published)
    other.engine.tick()  # node-a holds the lease
    assert len(w.published) == before
    w.clock.advance(w.cfg.lease_s + 1)
    w.run(finished(w, r.id), service=other)
    assert w.rollout(r.id).state == "done"


def test_install_events_are_idempotent_and_never_go_back(store, tmp_path):
    w = World(store, tmp_path, cams(2))
    r = w.service.create(spec(w, canary_count=1, waves=1))
    w.run(lambda: w.device_state(r.id, "cam-00") == "committed")
    row = lambda: w.service.repo.get(r.id).by_id()[w.ids["cam-00"]]  # noqa: E731
    before = row()
    history = len(w.service.history(w.ids["cam-00"]))
    cam0 = [i for i, (d, _) in enumerate(w.events) if d == w.ids["cam-00"]]
    for i in cam0:  # every event of cam-00 delivered again, oldest first: downloading after committed
        assert w.redeliver(i) == "ok"
    after = row()
    assert (after.state, after.install_state, after.revision) == ("committed", E.INSTALL_STATE_COMMITTED, before.revision)
    assert len(w.service.history(w.ids["cam-00"])) == history == 2  # trial + committed, once each
    # An event for a sequence this rollout never sent moves nothing.
    w.agent("cam-00").emit(w.agent("cam-00").active, E.INSTALL_STATE_FAILED, "late", sequence=999)
    assert row().state == "committed"
    # An unknown device is dropped by ingest.
    from edgefleet import envelope, topics

    payload = envelope.encode("d-unknown0000", event=E.Event(install=E.InstallProgress(rollout_id=r.id, sequence=1, state=E.INSTALL_STATE_COMMITTED)))
    assert w.ingest.handle(topics.event("d-unknown0000"), payload) == "unknown_device"


def test_a_rejected_deploy_fails_the_device(store, tmp_path):
    w = World(store, tmp_path, cams(3))
    w.agent("cam-00").last_sequence = 10_000  # the device accepted far more than this store knows of
    r = w.service.create(spec(w, canary_count=1, waves=1, min_devices_for_abort=5))
    w.run(finished(w, r.id))
    final = w.rollout(r.id)
    d = next(p for p in final.progress if p.device_name == "cam-00")
    assert d.state == "failed" and "the agent refused the deploy: sequence" in d.detail
    assert final.state == "aborted" and "no device of the first wave" in final.reason


def test_refusals(store, tmp_path):
    from coordinator.models.records import BadRef, ModelNotFound
    from coordinator.rollouts.spec import BadRolloutSpec
    from edgefleet.labels import LabelError

    w = World(store, tmp_path, cams(2) + [("zero", "small"), ("bare", "bare")])
    with pytest.raises(RolloutRefused, match="no device matches the selector 'role=doorbell'"):
        w.service.create(spec(w, selector="role=doorbell"))
    with pytest.raises(RolloutRefused) as info:
        w.service.create(spec(w, min_metric=0.99))
    text = str(info.value)
    assert "no variant of digits:1 fits any of the 4 matching devices" in text
    assert "cam-00: no variant fits: fp32: accuracy 0.97 < 0.99 required" in text and "bare: the device has no inference runtime" in text
    # The dry run shows the same, device by device, and creates nothing.
    plan = w.service.plan(spec(w, min_metric=0.99))
    assert all(d.excluded for d in plan.devices) and len(plan.devices) == 4
    with pytest.raises(ModelNotFound, match="no model named 'nope'"):
        w.service.create(admin_pb2.RolloutSpec(ref="nope:1"))
    with pytest.raises(ModelNotFound, match="has no version '9'"):
        w.service.plan(admin_pb2.RolloutSpec(ref="digits:9"))
    with pytest.raises(BadRef):
        w.service.plan(admin_pb2.RolloutSpec(ref="digits:"))
    with pytest.raises(LabelError):
        w.service.plan(spec(w, selector="role"))
    with pytest.raises(BadRolloutSpec, match="canary_percent must be at most 100"):
        w.service.plan(spec(w, canary_percent=150))
    assert w.service.list().rollouts == []


def test_a_busy_device_refuses_a_second_rollout(store, tmp_path):
    w = World(store, tmp_path, cams(4))
    first = w.service.create(spec(w, canary_count=1, waves=1))
    with pytest.raises(RolloutRefused, match=rf"4 of the matching devices are in a rollout that has not finished: cam-00 \(rollout {first.id}\)"):
        w.service.create(spec(w, canary_count=1, waves=1))
    plan = w.service.plan(spec(w))
    assert all(d.excluded and first.id in d.reason for d in plan.devices)
    # A narrower selector that avoids them is fine... here there is none; once the first ends, it works.
    w.run(finished(w, first.id))
    second = w.service.create(spec(w, canary_count=1, waves=1))
    assert second.state == "pending"


def test_unfinished_rollouts_on_metrics(store, tmp_path):
    from prometheus_client import generate_latest

    w = World(store, tmp_path, cams(3))
    r = w.service.create(spec(w, canary_count=1, waves=1))
    w.service.engine.tick()
    text = generate_latest(w.metrics.registry).decode()
    assert 'edgefleet_rollouts_by_state{state="running"} 1.0' in text
    assert 'edgefleet_rollout_devices_by_state{state="sent"} 1.0' in text
    w.run(finished(w, r.id))
    text = generate_latest(w.metrics.registry).decode()
    assert 'edgefleet_rollouts_by_state{state="done"} 1.0' in text and 'edgefleet_rollouts_by_state{state="running"} 0.0' in text


def test_watch_follows_changes_until_the_end(store, tmp_path):
    import threading

    w = World(store, tmp_path, cams(3))
    r = w.service.create(spec(w, canary_count=1, waves=1))
    seen: list = []
    first, done = threading.Event(), threading.Event()

    def watch():
        for msg in w.service.watch(r.id, lambda: not done.is_set(), poll_s=0.05, min_interval_s=0.0):
            seen.append((msg.state, msg.updated_at.ToNanoseconds()))
            first.set()
        done.set()

    t = threading.Thread(target=watch)
    t.start()
    assert first.wait(10)
    w.run(finished(w, r.id))
    assert done.wait(10)
    t.join(5)
    states = [s for s, _ in seen]
    assert states[0] == "pending" and states[-1] == "done" and states.count("done") == 1
    assert [u for _, u in seen] == sorted(u for _, u in seen)  # never an older picture after a newer one


def test_model_history_says_what_ran_and_why_it_changed(store, tmp_path):
    w = World(store, tmp_path, cams(4))
    w.agent("cam-01").mode = "trial_rollback"
    r = w.service.create(spec(w, canary_count=1, waves=1, max_failure_percent=50))
    w.run(finished(w, r.id))
    entries = w.service.history(w.ids["cam-01"])
    assert [E.InstallState.Name(e.state) for e in entries] == ["INSTALL_STATE_TRIAL", "INSTALL_STATE_ROLLED_BACK"]
    assert entries[0].model.variant_id == "fp32" and entries[0].rollout_id == r.id
    assert "rolled back digits:1 fp32: trial: p95 latency 41 ms above the budget 20 ms" == entries[1].reason
    assert not entries[1].model.model  # nothing ran before, nothing runs after


def test_default_config_values_are_used_when_the_spec_says_nothing(store, tmp_path):
    cfg = RolloutsConfig(canary_percent=50, waves=2, device_timeout_s=42, max_failure_percent=5, min_devices_for_abort=7, trial_seconds=9)
    w = World(store, tmp_path, cams(4), cfg=cfg)
    r = w.service.create(spec(w))
    s = r.spec
    assert (s.canary_percent, s.waves, s.device_timeout_s, s.max_failure_percent, s.min_devices_for_abort, s.trial_seconds) == (50, 2, 42, 5, 7, 9)
    assert r.waves == 3 and sum(1 for p in r.progress if p.wave == 0) == 2


def test_events_queued_by_ingest_are_applied_in_order_in_batches(store, tmp_path):
    w = World(store, tmp_path, cams(6))
    w.service.events.start()
    try:
        r = w.service.create(spec(w, canary_count=1, waves=1))

        def settled() -> bool:
            assert w.service.events.wait_idle(10)
            return w.state(r.id) == "done"

        w.run(settled)
        assert dict(w.rollout(r.id).counts) == {"committed": 6}
        # A burst of redeliveries (every event again, oldest first) lands in one batch and changes nothing.
        revision = w.service.repo.revision(r.id)
        for i in range(len(w.events)):
            w.redeliver(i)
        assert w.service.events.wait_idle(10)
        assert w.service.repo.revision(r.id) == revision
        assert all(len(w.service.history(d)) == 2 for d in w.ids.values())
    finally:
        w.service.events.stop()


def test_two_creates_racing_for_a_device_one_wins(store, tmp_path):
    """The claim rows decide when two plans both saw the devices free (two replicas at the same moment)."""
    w = World(store, tmp_path, cams(3))
    free = w.service.planner.claims
    w.service.planner.claims = lambda ids: {}  # both plans see every device free
    try:
        first = w.service.create(spec(w, canary_count=1, waves=1))
        with pytest.raises(RolloutRefused, match=rf"devices are in a rollout that has not finished: cam-00 \(rollout {first.id}\)"):
            w.service.create(spec(w, canary_count=1, waves=1))
    finally:
        w.service.planner.claims = free
    assert [r.id for r in w.service.list().rollouts] == [first.id]  # nothing of the loser was stored


def test_a_device_that_comes_online_gets_the_command_again_at_once(store, tmp_path):
    """Enrolled, never connected: the broker has no session for it, so the first deploy is lost."""
    w = World(store, tmp_path, cams(3))
    w.registry.apply_status(w.ids["cam-00"], "offline")
    w.agent("cam-00").mode = "absent"
    r = w.service.create(spec(w, canary_count=1, waves=1))
    w.run(lambda: len(w.deploys("cam-00")) == 1)
    w.clock.advance(5)
    w.service.engine.tick()
    w.pump()
    assert w.device_state(r.id, "cam-00") == "sent" and len(w.deploys("cam-00")) == 1  # nothing to do while it is away
    w.agent("cam-00").mode = "ok"
    w.registry.apply_status(w.ids["cam-00"], "online")
    steps = w.run(lambda: w.device_state(r.id, "cam-00") == "committed")
    assert steps < w.cfg.resend_s / 2  # not the periodic resend: the reconnect
    assert len({c.command_id for c in w.deploys("cam-00")}) == 1  # the same command again


def test_a_device_on_a_long_trial_is_not_timed_out_before_the_trial_could_end(store, tmp_path):
    w = World(store, tmp_path, cams(2))
    w.agent("cam-00").mode = "hold_trial"
    r = w.service.create(spec(w, canary_count=1, waves=1, device_timeout_s=100, trial_seconds=500))
    w.run(lambda: w.service.repo.get(r.id).by_id()[w.ids["cam-00"]].install_state == E.INSTALL_STATE_TRIAL)
    w.clock.advance(550)  # past the device timeout, within timeout + trial
    w.service.engine.tick()
    assert w.device_state(r.id, "cam-00") == "installing"
    w.clock.advance(100)
    w.service.engine.tick()
    row = w.service.repo.get(r.id).by_id()[w.ids["cam-00"]]
    assert row.state == "timed_out" and "no word from the device for 600 s (last: trial)" in row.detail


def test_a_wave_is_issued_and_stored_in_a_few_transactions_then_published(store, tmp_path):
    from sqlalchemy import event

    w = World(store, tmp_path, cams(30))
    r = w.service.create(spec(w, canary_count=30, waves=1))
    commits = []

    def count(conn) -> None:
        commits.append(1)

    event.listen(store.engine, "commit", count)
    try:
        w.service.engine.tick()
    finally:
        event.remove(store.engine, "commit", count)
    deploys = w.deploys()
    assert len(deploys) == 30
    # A commit per device (manifest, then row) was 60 for this wave; now the wave's manifests and rows
    # are one transaction each, whatever the wave's size (the rest is the tick's own bookkeeping).
    assert len(commits) < 15, f"{len(commits)} commits for a wave of 30"
    # Stored before published, each with the command that went out and its own sequence.
    rows = w.service.repo.get(r.id).by_id()
    for device_id, cmd in w.published:
        row = rows[device_id]
        m = verify_manifest(cmd.deploy.manifest, w.signer.public_raw, device_id=device_id)
        assert row.state == "sent" and row.command_id == cmd.command_id and row.sequence == m.sequence and m.rollout_id == r.id
    w.run(finished(w, r.id))
    assert dict(w.rollout(r.id).counts) == {"committed": 30}


def test_a_queued_install_event_is_acknowledged_only_once_applied(store, tmp_path):
    """The link sends a PUBACK when the handler returns unless it deferred it: a queued install event defers
    it until the worker applied it, so a coordinator killed in between gets the event redelivered."""
    import threading

    from coordinator import acks

    w = World(store, tmp_path, cams(2))
    w.service.events.start()
    try:
        r = w.service.create(spec(w, canary_count=1, waves=1))
        w.run(lambda: w.service.events.wait_idle(10) and w.state(r.id) == "done")

        sent: list[int] = []
        order = acks.AckOrder(sent.append)
        gate = threading.Event()
        apply = w.service.events.apply_batch

        def gated(items):
            assert gate.wait(10)
            return apply(items)

        w.service.events.apply_batch = gated
        d = order.arrived(7)
        acks.handling(d)
        try:
            assert w.redeliver(0) == "ok"
        finally:
            acks.handling(None)
        if not d.deferred:  # what the link does when the handler returns
            d.complete()
        assert sent == []  # queued, not applied: no PUBACK yet
        gate.set()
        assert w.service.events.wait_idle(10)
        assert sent == [7]
    finally:
        w.service.events.stop()

"""What a rollout costs the coordinator, and how soon it reacts: install events coalesced and applied
against kept rows, the engine stepping only when something it acts on changed, an abort's rollback
orders issued as one batch, and a throttled watch sending the end at once."""
from __future__ import annotations

import threading

import pytest
from sqlalchemy import event

from coordinator.rollouts import states as S
from coordinator.rollouts.events import InstallEvents, _Pending
from coordinator.transfer.grants import BlobGrants, grant_many
from coordinator.transfer.manifests import verify_rollback
from edgefleet import envelope, topics
from edgefleet.v1 import admin_pb2, events_pb2
from tests.unit.rollouts.fleet_fakes import T0, World

E = events_pb2


def cams(n: int) -> list[tuple[str, str]]:
    return [(f"cam-{i:02d}", "pi4") for i in range(n)]


def deployed(w: World, n_canary: int):
    """A rollout whose deploys went out; the agents' answers are held back (returned per device, in order)."""
    r = w.service.create(admin_pb2.RolloutSpec(ref=w.ref, selector="role=camera", canary_count=n_canary, waves=1))
    w.service.engine.tick()
    held: dict[str, list[bytes]] = {}
    for a in w.agents.values():
        a.send = lambda device_id, ev: held.setdefault(device_id, []).append(envelope.encode(device_id, event=ev))
    w.pump()
    return r, held


def state_of(payload: bytes) -> int:
    return envelope.decode(payload).event.install.state


def feed(w: World, device_id: str, payload: bytes) -> None:
    assert w.ingest.handle(topics.event(device_id), payload) == "ok"


# --- install events ----------------------------------------------------------------------------------


def test_progress_waits_for_company_and_an_install_end_does_not(store, tmp_path):
    w = World(store, tmp_path, cams(2))
    r, held = deployed(w, 2)
    ev = w.service.events
    ev.coalesce_s = 30.0  # progress alone would wait this long
    ev.start()
    try:
        a, b = w.ids["cam-00"], w.ids["cam-01"]
        feed(w, a, held[a][0])  # downloading: progress
        assert not ev.wait_idle(0.3)  # still held for company
        assert ev.batches == 0
        for payload in held[b]:  # the other device's whole install, ending with committed
            feed(w, b, payload)
        assert ev.wait_idle(5)  # the end went through without waiting out the 30 s
        assert ev.batches == 1  # and the held progress went with it, in one transaction
        rows = w.service.repo.get(r.id).by_id()
        assert rows[a].state == S.INSTALLING and rows[b].state == S.COMMITTED
    finally:
        ev.stop()


def test_progress_alone_is_applied_once_the_window_passes(store, tmp_path):
    w = World(store, tmp_path, cams(1))
    r, held = deployed(w, 1)
    ev = w.service.events
    ev.coalesce_s = 0.05
    ev.start()
    try:
        d = w.ids["cam-00"]
        progress = [p for p in held[d] if state_of(p) == E.INSTALL_STATE_DOWNLOADING]
        for payload in progress:
            feed(w, d, payload)
        assert ev.wait_idle(5)
        row = w.service.repo.get(r.id).by_id()[d]
        assert row.state == S.INSTALLING and row.bytes_done > 0
    finally:
        ev.stop()


def test_a_waves_first_events_ask_the_store_who_is_known_once(store, tmp_path):
    """The ingest thread checks every install event's sender; a wave's 'downloading' events all come at once,
    beside the wave's ready requests, so the fleet's ids are read in one query, not one per device."""
    w = World(store, tmp_path, cams(12))
    r, held = deployed(w, 12)
    ev = w.service.events
    ev.start()
    try:
        lookups = []

        def seen(conn, cursor, statement, *rest) -> None:
            if "FROM devices" in statement and "rollout" not in statement:
                lookups.append(statement)

        event.listen(store.engine, "before_cursor_execute", seen)
        try:
            for device_id, payloads in held.items():
                feed(w, device_id, payloads[0])
            assert ev.wait_idle(10)
        finally:
            event.remove(store.engine, "before_cursor_execute", seen)
        assert len(held) == 12 and len(lookups) == 1, lookups
        assert ev.apply("d-stranger", "m-1", events_pb2.InstallProgress()) == "unknown_device"
    finally:
        ev.stop()


def test_bad_coalescing_options_are_refused(store):
    from coordinator.rollouts.repository import RolloutRepository

    with pytest.raises(ValueError, match="coalesce_s must be >= 0"):
        InstallEvents(RolloutRepository(store), coalesce_s=-1)


def test_a_kept_row_is_read_again_when_another_writer_moved_it(store, tmp_path):
    """The worker keeps rows between batches; the engine (or another replica) changing one meanwhile must
    not make an event be dropped or applied against what the row used to be."""
    w = World(store, tmp_path, cams(2))
    r, held = deployed(w, 2)
    ev, repo = w.service.events, w.service.repo
    d = w.ids["cam-00"]

    def apply(payload: bytes) -> str:
        env = envelope.decode(payload)
        return ev.apply_batch([_Pending(env.device_id, env.message_id, env.event.install, T0)])[0]

    assert apply(held[d][0]) == "updated"  # downloading: the row is kept now
    # An abort's rollback order for this device is stored by the engine, with its own sequence.
    assert repo.set_device(r.id, d, rollback=S.RB_SENT, rollback_sequence=99)
    # The device had nothing of this rollout active: it answers with the order's sequence. Against the
    # kept row (no rollback sequence) this event would change nothing; against the store's it ends the device.
    answer = E.InstallProgress(state=E.INSTALL_STATE_ROLLED_BACK, sequence=99, rollout_id=r.id, reason="nothing to roll back")
    assert ev.apply_batch([_Pending(d, "m-rb", answer, T0)]) == ["updated"]
    row = repo.get(r.id).by_id()[d]
    assert (row.state, row.rollback) == (S.ROLLED_BACK, S.RB_DONE)
    # A compare-and-set against a kept row whose revision moved on: read again and applied.
    other = w.ids["cam-01"]
    assert apply(held[other][0]) == "updated"
    assert repo.set_device(r.id, other, detail="touched by someone else")
    verifying = next(p for p in held[other] if state_of(p) == E.INSTALL_STATE_VERIFYING)
    assert apply(verifying) == "updated"
    row = repo.get(r.id).by_id()[other]
    assert row.install_state == E.INSTALL_STATE_VERIFYING and row.detail == "touched by someone else"


def test_a_batch_that_fails_keeps_no_rows(store, tmp_path):
    w = World(store, tmp_path, cams(1))
    r, held = deployed(w, 1)
    ev = w.service.events
    d = w.ids["cam-00"]
    env = envelope.decode(held[d][0])
    item = _Pending(d, env.message_id, env.event.install, T0)
    boom = RuntimeError("the store blinked")

    def fail(*a, **k):
        raise boom

    event.listen(store.engine, "commit", fail)
    try:
        with pytest.raises(RuntimeError, match="blinked"):
            ev.apply_batch([item])
    finally:
        event.remove(store.engine, "commit", fail)
    assert (r.id, d) not in ev._rows
    assert ev.apply_batch([item]) == ["updated"]
    assert w.service.repo.get(r.id).by_id()[d].state == S.INSTALLING


# --- the engine --------------------------------------------------------------------------------------


def test_the_engine_steps_when_a_device_finishes_not_on_progress(store, tmp_path):
    w = World(store, tmp_path, cams(3))
    r, held = deployed(w, 3)
    eng = w.service.engine
    steps = []
    real = eng.step
    eng.step = lambda rollout_id: steps.append(rollout_id) or real(rollout_id)
    a = w.ids["cam-00"]
    for payload in held[a]:
        if state_of(payload) != E.INSTALL_STATE_COMMITTED:
            feed(w, a, payload)  # download progress, verifying, staged, trial: the revision moves
    revision = w.service.repo.revision(r.id)
    eng.tick()
    assert steps == [] and revision > 0  # nothing a step acts on changed, and no second went by
    feed(w, a, held[a][-1])  # committed
    eng.tick()
    assert steps and steps[0] == r.id
    steps.clear()
    w.clock.advance(1.0)
    eng.tick()
    assert steps  # timeouts, resends and windows still get their step every second


def test_an_abort_issues_its_rollback_orders_in_a_few_transactions_stored_before_published(store, tmp_path):
    w = World(store, tmp_path, cams(30))
    r, held = deployed(w, 30)
    eng = w.service.engine
    stored_when_published = []
    publish = eng.publish
    checking = threading.local()

    def check(topic, payload, qos=1, retain=False):
        env = envelope.decode(payload, expect="command")
        if env.command.WhichOneof("kind") == "rollback":
            checking.on = True
            try:
                row = w.service.repo.get(r.id).by_id()[env.device_id]
            finally:
                checking.on = False
            stored_when_published.append(row.rollback == S.RB_SENT and row.rollback_command == env.command.SerializeToString())
        return publish(topic, payload, qos=qos, retain=retain)

    eng.publish = check
    assert eng.abort(r.id, "bad canary")
    commits = []

    def count(conn) -> None:
        if not getattr(checking, "on", False):  # not the test's own reads
            commits.append(1)

    event.listen(store.engine, "commit", count)
    try:
        eng.tick()
    finally:
        event.remove(store.engine, "commit", count)
    orders = w.rollbacks()
    assert len(orders) == 30 and len(stored_when_published) == 30 and all(stored_when_published)
    # One per order was 60 (a sequence, then the row); now the orders' sequences and rows are one
    # transaction each (the rest is the tick's own bookkeeping).
    assert len(commits) < 15, f"{len(commits)} commits for 30 rollback orders"
    rows = w.service.repo.get(r.id).by_id()
    for cmd in orders:
        order = verify_rollback(cmd.rollback, w.signer.public_raw)
        row = rows[order.device_id]
        assert row.rollback_command_id == cmd.command_id and row.rollback_sequence == order.sequence > row.sequence
    for a in w.agents.values():
        a.send = w._send_event  # the agents' answers reach the coordinator again
    w.run(lambda: w.state(r.id) == "aborted")
    assert dict(w.rollout(r.id).counts) == {"rolled_back": 30}


def test_a_device_update_naming_an_unknown_column_says_so(store, tmp_path):
    w = World(store, tmp_path, cams(1))
    r, _ = deployed(w, 1)
    with pytest.raises(ValueError, match="rollout_devices has no column colour"):
        w.service.repo.set_device(r.id, w.ids["cam-00"], colour="red")


def test_grants_of_a_batch_keep_the_first_sequence(store):
    with store.session() as s:
        grant_many(s, [("d-a", "ab" * 32, 3), ("d-a", "ab" * 32, 4), ("d-b", "ab" * 32, 5)], at=T0)
    with store.session() as s:
        grant_many(s, [("d-a", "ab" * 32, 9)], at=T0)
    grants = BlobGrants(store)
    assert grants.allowed("d-a", "ab" * 32) and grants.allowed("d-b", "ab" * 32) and not grants.allowed("d-c", "ab" * 32)
    from sqlalchemy import select

    from coordinator.store.rollout_tables import BlobGrantRow

    with store.session() as s:
        assert dict(s.execute(select(BlobGrantRow.device_id, BlobGrantRow.sequence)).all()) == {"d-a": 3, "d-b": 5}


# --- watching ----------------------------------------------------------------------------------------


def test_a_throttled_watch_sends_the_end_as_soon_as_the_engine_finishes(store, tmp_path):
    w = World(store, tmp_path, cams(4))
    r = w.service.create(admin_pb2.RolloutSpec(ref=w.ref, selector="role=camera", canary_count=4, waves=1))
    first, done = threading.Event(), threading.Event()
    seen: list[str] = []

    def watch():
        # One message per 30 s at most, and no polling to speak of: only the engine's finish can end it soon.
        for msg in w.service.watch(r.id, lambda: True, poll_s=30.0, min_interval_s=30.0):
            seen.append(msg.state)
            first.set()
        done.set()

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    try:
        assert first.wait(10)
        w.run(lambda: w.state(r.id) == "done")
        assert done.wait(5), f"the watch did not send the end (saw {seen})"
        assert seen[0] == "pending" and seen[-1] == "done"
    finally:
        w.service.stop()
        t.join(5)

"""agent.install.machine: the install state machine end to end, on real LiteRT with tiny models, an
in-process blob server, a fake clock, and crash points that stop the installer dead."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.install import ledger as ledger_mod
from agent.install import storage
from edgefleet.v1 import commands_pb2, events_pb2, transfer_pb2
from tests.unit.install import harness
from tests.unit.install.conftest import Crashed, Rig
from tests.unit.install.harness import DEVICE_ID

STEPS = ["downloading", "verifying", "staged", "trial", "committed"]


@pytest.fixture
def blobs(models: Path) -> dict[str, bytes]:
    return {
        "v1": (models / "float32.tflite").read_bytes(),
        "v2": (models / "int8.tflite").read_bytes(),
        "bad_op": (models / "custom_op.tflite").read_bytes(),
        "golden": harness.golden_npz(models),
        "wrong_golden": harness.golden_npz(models, wrong=True),
    }


def offer(rig: Rig, blobs, name: str, *, sequence: int, golden: str | None = "golden", **kw):
    """Sign a manifest for blobs[name] (served by the rig's blob server) and return it."""
    model = blobs[name]
    golden_bytes = blobs[golden] if golden else None
    rig.server.add(model)
    if golden_bytes:
        rig.server.add(golden_bytes)
    kw.setdefault("min_metric", 0.9 if golden_bytes else 0.0)
    return rig.signer.manifest(harness.manifest(model, version=name, sequence=sequence, golden=golden_bytes, **kw))


def deploy_and_serve(rig: Rig, blobs, name: str, *, sequence: int, command_id: str | None = None, **kw):
    rig.deploy(offer(rig, blobs, name, sequence=sequence, **kw), command_id or f"cmd-{sequence}")
    rig.serve()


def dedup(states: list[str]) -> list[str]:
    return [s for i, s in enumerate(states) if i == 0 or states[i - 1] != s]


def active_version(rig: Rig) -> str | None:
    m = rig.installer.active_manifest()
    return m.version if m else None


# -- the happy path -------------------------------------------------------------------------------


def test_install_commits_and_keeps_the_previous_slot(rig, blobs):
    rig.start()
    deploy_and_serve(rig, blobs, "v1", sequence=1)
    assert dedup(rig.states()) == STEPS
    last = rig.last()
    assert last.active_model.version == "v1" and last.figures["metric"] == 1.0 and last.bytes_done == last.bytes_total
    assert rig.installer.active_model_path().read_bytes() == blobs["v1"]
    deploy_and_serve(rig, blobs, "v2", sequence=2)
    assert active_version(rig) == "v2" and rig.last().state == events_pb2.INSTALL_STATE_COMMITTED
    pointer = rig.installer.slots.pointer
    assert (pointer.active, pointer.previous) == ("slot-b", "slot-a")
    assert rig.installer.slots.content("slot-a").manifest.version == "v1"
    assert rig.installer.last_sequence == 2
    assert not list((rig.state_dir / "install" / "blobs").iterdir())  # nothing left behind


def _downloading(rig) -> list[int]:
    return [p.bytes_done for p in harness.install_events(rig.events) if p.state == events_pb2.INSTALL_STATE_DOWNLOADING]


def test_downloading_progress_is_reported(rig, blobs):
    rig.start()

    def slow(chunk):
        rig.clock.advance(0.4)  # a slow link: a quarter takes longer than the progress interval
        return [chunk]

    rig.deploy(offer(rig, blobs, "v1", sequence=1), "c1")
    rig.serve(chunk_filter=slow)
    done = _downloading(rig)
    assert done[0] == 0 and done == sorted(done) and len(done) == 4  # the state, then 1/4, 2/4, 3/4
    assert rig.last().state == events_pb2.INSTALL_STATE_COMMITTED


def test_a_fast_download_reports_no_quarters(rig, blobs):
    rig.start()
    deploy_and_serve(rig, blobs, "v1", sequence=1)  # the fake clock stands still: within the interval
    assert _downloading(rig) == [0]
    assert dedup(rig.states()) == STEPS


def test_progress_interval_must_not_be_negative(rig):
    with pytest.raises(ValueError, match="progress_interval_s must not be negative, got -1"):
        rig.start(progress_interval_s=-1)


# -- refusals ---------------------------------------------------------------------------------------


def test_refused_manifests_are_reported_and_change_nothing(rig, blobs):
    rig.start()
    deploy_and_serve(rig, blobs, "v1", sequence=5)
    other_device = offer(rig, blobs, "v2", sequence=6, device_id="not-me")
    rig.deploy(other_device, "c-other")
    forged = offer(rig, blobs, "v2", sequence=7)
    forged.signature = bytes(64)
    rig.deploy(forged, "c-forged")
    replay = offer(rig, blobs, "v2", sequence=5)
    rig.deploy(replay, "c-replay")
    rejected = {e.rejected.command_id: e.rejected.reason for e in rig.events if e.WhichOneof("kind") == "rejected"}
    assert "not this device" in rejected["c-other"]
    assert "bad signature" in rejected["c-forged"]
    assert "not above the last accepted sequence 5" in rejected["c-replay"]
    assert rig.installer.last_sequence == 5 and active_version(rig) == "v1" and not rig.requests


def test_a_redelivered_command_installs_nothing_and_repeats_its_outcome(rig, blobs):
    rig.start()
    signed = offer(rig, blobs, "v1", sequence=1)
    rig.deploy(signed, "same-id")
    rig.serve()
    count = len(rig.events)
    first_outcome = rig.last()
    rig.deploy(signed, "same-id")
    # Nothing is fetched or installed again; the outcome is reported once more, since the coordinator
    # re-sends only to devices whose report it did not get.
    assert not rig.requests
    assert len(rig.events) == count + 1
    assert rig.last().state == first_outcome.state == events_pb2.INSTALL_STATE_COMMITTED
    assert rig.last().sequence == first_outcome.sequence


def test_storage_budget_too_small_fails_cleanly(rig, blobs):
    rig.start()
    deploy_and_serve(rig, blobs, "v1", sequence=1)
    rig.start(storage_budget_bytes=len(blobs["v1"]) + len(blobs["golden"]) + 100)
    deploy_and_serve(rig, blobs, "v2", sequence=2)
    last = rig.last()
    assert last.state == events_pb2.INSTALL_STATE_FAILED and "storage budget too small" in last.reason
    assert last.active_model.version == "v1" and active_version(rig) == "v1"
    assert not rig.server.served or all(sha != harness.sha256(blobs["v2"]) for sha, _ in rig.server.served)


def test_small_filesystem_fails_cleanly(rig, blobs, monkeypatch):
    rig.start()
    deploy_and_serve(rig, blobs, "v1", sequence=1)

    class Usage:
        total, used, free = 10_000_000, 9_999_000, 1000

    monkeypatch.setattr(storage.shutil, "disk_usage", lambda path: Usage)
    deploy_and_serve(rig, blobs, "v2", sequence=2)
    assert rig.last().state == events_pb2.INSTALL_STATE_FAILED and "not enough free storage" in rig.last().reason
    assert active_version(rig) == "v1"


def test_a_model_with_an_unknown_op_fails_and_the_old_model_stays(rig, blobs):
    rig.start()
    deploy_and_serve(rig, blobs, "v1", sequence=1)
    deploy_and_serve(rig, blobs, "bad_op", sequence=2, golden=None)
    last = rig.last()
    assert last.state == events_pb2.INSTALL_STATE_FAILED and "cannot be loaded" in last.reason
    states = rig.states()
    assert "trial" not in states[states.index("committed") + 1:]
    assert last.active_model.version == "v1" and rig.installer.active_model_path().read_bytes() == blobs["v1"]


def test_acceptance_failure_reports_the_figures(rig, blobs):
    rig.start()
    deploy_and_serve(rig, blobs, "v1", sequence=1)
    deploy_and_serve(rig, blobs, "v2", sequence=2, golden="wrong_golden")
    last = rig.last()
    assert last.state == events_pb2.INSTALL_STATE_FAILED
    assert "below the floor 0.9000" in last.reason and last.figures["metric"] < 0.5 and "p95_ms" in last.figures
    assert active_version(rig) == "v1"


def test_latency_budget_is_part_of_acceptance(rig, blobs):
    rig.start()
    deploy_and_serve(rig, blobs, "v1", sequence=1, max_p95_ms=1e-9)
    last = rig.last()
    assert last.state == events_pb2.INSTALL_STATE_FAILED and "p95 latency" in last.reason and last.figures["p95_ms"] > 1e-9
    assert rig.installer.active_model() is None


def test_a_flipped_byte_is_caught_and_fetched_again(rig, blobs):
    rig.start()
    flipped = []

    def flip_once(chunk: transfer_pb2.BlobChunk):
        if not flipped and chunk.offset == 256 and chunk.sha256 == harness.sha256(blobs["v1"]):
            flipped.append(chunk.offset)
            data = bytearray(chunk.data)
            data[10] ^= 0xFF
            chunk = transfer_pb2.BlobChunk(sha256=chunk.sha256, offset=chunk.offset, data=bytes(data), total_size=chunk.total_size)
        return [chunk]

    rig.deploy(offer(rig, blobs, "v1", sequence=1), "c1")
    rig.serve(flip_once)
    mismatch = [p for p in harness.install_events(rig.events) if "sha256 mismatch" in p.reason]
    assert flipped and mismatch and mismatch[0].state == events_pb2.INSTALL_STATE_DOWNLOADING
    assert mismatch[0].figures["verify_failures"] == 1
    assert rig.last().state == events_pb2.INSTALL_STATE_COMMITTED
    assert rig.installer.active_model_path().read_bytes() == blobs["v1"]


def test_a_blob_that_stays_corrupt_fails_after_bounded_retries(rig, blobs):
    rig.start()
    sha = harness.sha256(blobs["v1"])

    def always_flip(chunk):
        if chunk.sha256 == sha and chunk.offset == 0:
            chunk = transfer_pb2.BlobChunk(sha256=sha, offset=0, data=b"\x00" * len(chunk.data), total_size=chunk.total_size)
        return [chunk]

    rig.deploy(offer(rig, blobs, "v1", sequence=1), "c1")
    rig.serve(always_flip)
    assert rig.last().state == events_pb2.INSTALL_STATE_FAILED and "after 3 downloads" in rig.last().reason


def test_a_coordinator_error_chunk_fails_the_install(rig, blobs):
    rig.start()
    signed = offer(rig, blobs, "v1", sequence=1)
    del rig.server.blobs[harness.sha256(blobs["v1"])]
    rig.deploy(signed, "c1")
    rig.serve()
    assert rig.last().state == events_pb2.INSTALL_STATE_FAILED and "unknown blob" in rig.last().reason


# -- the trial ----------------------------------------------------------------------------------------


def test_trial_ends_after_its_time_and_commits(rig, blobs):
    rig.start()
    deploy_and_serve(rig, blobs, "v1", sequence=1, trial_seconds=30)
    assert rig.installer.trial_active() and rig.last().state == events_pb2.INSTALL_STATE_TRIAL
    assert rig.last().active_model.version == "v1"  # activated: the trial runs the new model
    rig.clock.advance(29)
    rig.installer.tick()
    assert rig.installer.trial_active()
    rig.clock.advance(1)
    rig.installer.tick()
    assert not rig.installer.trial_active() and rig.last().state == events_pb2.INSTALL_STATE_COMMITTED


def test_trial_ends_after_its_inferences(rig, blobs):
    rig.start()
    deploy_and_serve(rig, blobs, "v1", sequence=1, trial_inferences=10)
    rig.installer.note_inferences(9)
    assert rig.installer.trial_active()
    rig.installer.note_inferences(1)
    assert rig.last().state == events_pb2.INSTALL_STATE_COMMITTED


def test_trial_rollback_restores_the_previous_model_and_is_not_repeated(rig, blobs):
    rig.start()
    deploy_and_serve(rig, blobs, "v1", sequence=1, rollout_id="r0")
    deploy_and_serve(rig, blobs, "v2", sequence=2, trial_seconds=60, rollout_id="r1")
    assert rig.installer.trial_active() and active_version(rig) == "v2"
    assert rig.installer.rollback("p95 latency over budget", {"p95_ms": 42.0})
    last = rig.last()
    assert last.state == events_pb2.INSTALL_STATE_ROLLED_BACK and last.reason == "p95 latency over budget"
    assert last.figures["p95_ms"] == 42.0 and last.active_model.version == "v1" and last.version == "v2"
    assert active_version(rig) == "v1" and rig.installer.slots.pointer.previous is None
    # the same rollout offers the same variant again: refused
    deploy_and_serve(rig, blobs, "v2", sequence=3, trial_seconds=60, rollout_id="r1")
    assert rig.last().state == events_pb2.INSTALL_STATE_FAILED and "not installing it again" in rig.last().reason
    assert active_version(rig) == "v1"
    # another rollout may
    deploy_and_serve(rig, blobs, "v2", sequence=4, rollout_id="r2")
    assert active_version(rig) == "v2" and rig.last().state == events_pb2.INSTALL_STATE_COMMITTED


def test_trial_judge_decides_at_the_end(rig, blobs):
    rig.start(trial_judge=lambda manifest: (False, "online accuracy 0.41 below 0.9", {"online_metric": 0.41}))
    deploy_and_serve(rig, blobs, "v1", sequence=1, trial_seconds=5)
    rig.clock.advance(5)
    rig.installer.tick()
    last = rig.last()
    assert last.state == events_pb2.INSTALL_STATE_ROLLED_BACK and last.figures["online_metric"] == 0.41
    assert rig.installer.active_model() is None  # the first model: back to none


def test_a_deploy_during_a_trial_is_refused(rig, blobs):
    rig.start()
    deploy_and_serve(rig, blobs, "v1", sequence=1, trial_seconds=60)
    rig.deploy(offer(rig, blobs, "v2", sequence=2), "c-during-trial")
    rejected = [e.rejected for e in rig.events if e.WhichOneof("kind") == "rejected"]
    assert rejected and "is in its trial" in rejected[-1].reason
    assert rig.installer.trial_active() and rig.installer.last_sequence == 1


def test_a_newer_deploy_supersedes_a_download(rig, blobs):
    rig.start()
    rig.deploy(offer(rig, blobs, "v1", sequence=1), "c1")
    rig.serve(max_chunks=2)
    rig.requests.clear()
    deploy_and_serve(rig, blobs, "v2", sequence=2)
    failed = [p for p in harness.install_events(rig.events) if p.state == events_pb2.INSTALL_STATE_FAILED]
    assert failed and failed[0].version == "v1" and "superseded by sequence 2" in failed[0].reason
    assert active_version(rig) == "v2"


# -- rollback orders ---------------------------------------------------------------------------------


def rollback_cmd(rig: Rig, sequence: int, rollout_id: str, command_id: str) -> commands_pb2.Command:
    order = commands_pb2.RollbackOrder(device_id=DEVICE_ID, rollout_id=rollout_id, sequence=sequence, reason="wave 2 aborted")
    return commands_pb2.Command(command_id=command_id, rollback=rig.signer.rollback(order))


def test_rollback_order_restores_the_previous_model(rig, blobs):
    rig.start()
    deploy_and_serve(rig, blobs, "v1", sequence=1, rollout_id="r0")
    deploy_and_serve(rig, blobs, "v2", sequence=2, rollout_id="r1")
    rig.installer.handle_command(rollback_cmd(rig, 3, "r1", "rb-1"))
    last = rig.last()
    assert last.state == events_pb2.INSTALL_STATE_ROLLED_BACK and "wave 2 aborted" in last.reason
    assert active_version(rig) == "v1" and rig.installer.last_sequence == 3
    # replaying the order (new command id, same sequence) is refused
    rig.installer.handle_command(rollback_cmd(rig, 3, "r1", "rb-2"))
    assert rig.events[-1].WhichOneof("kind") == "rejected" and "not above" in rig.events[-1].rejected.reason
    # and the rolled-back variant does not come back with this rollout
    deploy_and_serve(rig, blobs, "v2", sequence=4, rollout_id="r1")
    assert rig.last().state == events_pb2.INSTALL_STATE_FAILED and active_version(rig) == "v1"


def test_rollback_order_for_another_rollout_changes_nothing(rig, blobs):
    rig.start()
    deploy_and_serve(rig, blobs, "v1", sequence=1, rollout_id="r0")
    rig.installer.handle_command(rollback_cmd(rig, 2, "r9", "rb"))
    assert "nothing to roll back" in rig.last().reason and active_version(rig) == "v1"


# -- crashes and restarts ----------------------------------------------------------------------------


@pytest.mark.parametrize("crash_at", ["downloading", "chunks:3", "verifying", "staged", "trial", "activated", "committed"])
def test_crash_in_each_state_then_restart_ends_on_the_new_model(rig, blobs, crash_at):
    rig.start()
    deploy_and_serve(rig, blobs, "v1", sequence=1, rollout_id="r0")
    rig.start(crash_at=crash_at)
    signed = offer(rig, blobs, "v2", sequence=2, rollout_id="r1", max_restarts=3)
    with pytest.raises(Crashed):
        rig.deploy(signed, "c2")
        rig.serve()
    version_at_crash = active_version(rig)
    assert version_at_crash in ("v1", "v2")  # never anything in between
    rig.start()     # restart without the crash point: resume()
    rig.serve()
    assert active_version(rig) == "v2" and rig.last().state == events_pb2.INSTALL_STATE_COMMITTED
    assert rig.last().active_model.version == "v2"
    assert rig.installer.slots.content("slot-a").manifest.version == "v1"


def test_resume_fetches_only_the_missing_chunks(rig, blobs):
    signed = offer(rig, blobs, "v1", sequence=1)
    rig.kw["window"] = 1
    rig.start(crash_at="chunks:3")
    with pytest.raises(Crashed):
        rig.deploy(signed, "c1")
        rig.serve()
    stored = list(rig.server.served)      # window 1: each served chunk was stored before the next was asked
    assert len(stored) == 3
    rig.start()
    rig.serve()
    after = rig.server.served[3:]
    assert not set(after) & set(stored), "a chunk stored before the crash was fetched again"
    model, golden = harness.sha256(blobs["v1"]), harness.sha256(blobs["golden"])
    expected = {(model, o) for o in range(0, len(blobs["v1"]), 256)} | {(golden, o) for o in range(0, len(blobs["golden"]), 256)}
    assert set(after) | set(stored) == expected
    assert rig.last().state == events_pb2.INSTALL_STATE_COMMITTED


def test_crash_loop_in_one_state_fails_instead_of_looping(rig, blobs):
    rig.start()
    deploy_and_serve(rig, blobs, "v1", sequence=1)
    rig.start(crash_at="staged")
    with pytest.raises(Crashed):
        deploy_and_serve(rig, blobs, "v2", sequence=2)
    for _ in range(4):   # every restart crashes again in the same state
        with pytest.raises(Crashed):
            rig.start(crash_at="staged")
    rig.start(crash_at="staged")  # the sixth entry is refused by the guard
    last = rig.last()
    assert last.state == events_pb2.INSTALL_STATE_FAILED and "entered staged 6 times" in last.reason
    assert active_version(rig) == "v1"


def test_crash_loop_during_the_trial_rolls_back(rig, blobs):
    rig.start()
    deploy_and_serve(rig, blobs, "v1", sequence=1, rollout_id="r0")
    deploy_and_serve(rig, blobs, "v2", sequence=2, rollout_id="r1", trial_seconds=60, max_restarts=2)
    assert rig.installer.trial_active()
    rig.start()   # crash 1 (no close()): the trial goes on
    assert rig.installer.trial_active() and "1 of 2" in rig.last().reason and active_version(rig) == "v2"
    rig.start()   # crash 2: crash loop
    last = rig.last()
    assert last.state == events_pb2.INSTALL_STATE_ROLLED_BACK and "restarted 2 times" in last.reason
    assert last.figures["restarts"] == 2 and active_version(rig) == "v1"


def test_a_clean_stop_during_the_trial_is_not_a_crash(rig, blobs):
    rig.start()
    deploy_and_serve(rig, blobs, "v1", sequence=1, trial_seconds=60, max_restarts=1)
    rig.installer.close()
    rig.start()
    assert rig.installer.trial_active() and rig.installer.job.restarts == 0


def test_restart_after_the_end_reports_the_last_outcome_again(rig, blobs):
    rig.start()
    deploy_and_serve(rig, blobs, "v1", sequence=1)
    rig.events.clear()
    rig.start()
    assert rig.states() == ["committed"] and rig.last().active_model.version == "v1"


def test_judge_may_ask_for_more_time(rig, blobs):
    answers = [None, (True, "", {})]
    rig.start(trial_judge=lambda manifest: answers.pop(0))
    deploy_and_serve(rig, blobs, "v1", sequence=1, trial_seconds=5)
    rig.clock.advance(5)
    rig.installer.tick()
    assert rig.installer.trial_active()   # the judge is waiting for a figure
    rig.installer.tick()
    assert rig.last().state == events_pb2.INSTALL_STATE_COMMITTED


def test_without_auto_end_only_the_monitor_ends_the_trial(rig, blobs):
    rig.start(auto_end_trial=False)
    deploy_and_serve(rig, blobs, "v1", sequence=1, trial_seconds=5, trial_inferences=3)
    rig.clock.advance(60)
    rig.installer.tick()
    rig.installer.note_inferences(10)
    assert rig.installer.trial_active()
    assert rig.installer.commit() and rig.last().state == events_pb2.INSTALL_STATE_COMMITTED


def test_rollback_order_cancels_a_download_of_its_rollout(rig, blobs):
    rig.start()
    deploy_and_serve(rig, blobs, "v1", sequence=1, rollout_id="r0")
    rig.deploy(offer(rig, blobs, "v2", sequence=2, rollout_id="r1"), "c2")
    rig.serve(max_chunks=2)
    rig.installer.handle_command(rollback_cmd(rig, 3, "r1", "rb"))
    failed = [p for p in harness.install_events(rig.events) if p.state == events_pb2.INSTALL_STATE_FAILED]
    assert failed and failed[-1].version == "v2" and "cancelled: rollback ordered" in failed[-1].reason
    assert rig.installer.job is None and active_version(rig) == "v1"


def test_a_damaged_ledger_is_moved_aside_and_the_sequence_floor_restored(rig, blobs):
    rig.start()
    deploy_and_serve(rig, blobs, "v1", sequence=7)
    install_dir = rig.state_dir / "install"
    for name in ledger_mod.LEDGER_FILES:   # both records: a damaged disk, not a save cut short
        (install_dir / name).write_bytes(b"\x00garbage{")
    rig.events.clear()
    rig.start()
    notices = [e.notice for e in rig.events if e.WhichOneof("kind") == "notice"]
    assert notices and notices[0].code == "install_ledger_corrupt" and "floor restored to 7" in notices[0].message
    assert rig.installer.last_sequence == 7 and active_version(rig) == "v1"
    assert len(list(install_dir.glob("ledger.*.corrupt-*"))) == 2
    rig.deploy(offer(rig, blobs, "v2", sequence=6), "c-replay")
    assert rig.events[-1].WhichOneof("kind") == "rejected"


def test_a_save_cut_short_leaves_the_previous_state(rig, blobs):
    """A power cut in the middle of a save tears only the record being written: the other holds the state before."""
    rig.start()
    deploy_and_serve(rig, blobs, "v1", sequence=3)
    ledger = rig.installer.ledger
    before = ledger.generation
    rig.deploy(offer(rig, blobs, "v2", sequence=4), "c4")   # saves DOWNLOADING (sequence floor 4)
    assert ledger.generation == before + 1
    newest = ledger.paths[ledger.generation % 2]
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])   # torn
    rig.events.clear()
    rig.start()
    assert not [e for e in rig.events if e.WhichOneof("kind") == "notice"]   # not damage: nothing to report
    assert rig.installer.job is None and rig.installer.last_sequence == 3 and active_version(rig) == "v1"
    assert rig.last().state == events_pb2.INSTALL_STATE_COMMITTED and rig.last().version == "v1"
    deploy_and_serve(rig, blobs, "v2", sequence=4, command_id="c4")   # the coordinator's re-send installs it
    assert active_version(rig) == "v2" and rig.installer.last_sequence == 4


def test_a_ledger_of_the_older_format_is_read_and_replaced(rig, blobs):
    rig.start()
    deploy_and_serve(rig, blobs, "v1", sequence=5)
    ledger = rig.installer.ledger
    legacy = {"last_sequence": 5, "job": None, "last_outcome": ledger.last_outcome.to_json(), "rolled_back": [["r0", "digits", "v0", "x"]],
              "recent_commands": ["cmd-5"]}
    for path in ledger.paths:
        path.unlink()
    (rig.state_dir / "install" / "ledger.json").write_text(json.dumps(legacy))
    rig.start()
    restored = rig.installer.ledger
    assert restored.last_sequence == 5 and restored.seen("cmd-5") and ("r0", "digits", "v0", "x") in restored.rolled_back
    deploy_and_serve(rig, blobs, "v2", sequence=6)
    assert not (rig.state_dir / "install" / "ledger.json").exists()
    assert active_version(rig) == "v2" and rig.start().last_sequence == 6


def test_a_newer_manifest_for_the_same_bytes_keeps_the_download(rig, blobs):
    rig.kw["window"] = 1
    rig.start()
    rig.deploy(offer(rig, blobs, "v1", sequence=1), "c1")
    rig.serve(max_chunks=3)
    rig.requests.clear()
    before = list(rig.server.served)[:3]   # window 1: these three were stored (the fourth answer is lost)
    deploy_and_serve(rig, blobs, "v1", sequence=2, command_id="c1-retry")
    rig.clock.advance(10)   # the request the lost answer belonged to times out
    rig.installer.tick()
    rig.serve()
    assert not set(rig.server.served[4:]) & set(before)  # nothing stored was fetched twice
    assert rig.last().state == events_pb2.INSTALL_STATE_COMMITTED and rig.last().sequence == 2
    assert rig.installer.active_manifest().sequence == 2


def test_the_daemon_may_end_the_trial_from_the_activation_callback(rig, blobs):
    """on_active_changed loads the model into the live host; when that fails it rolls back at once."""
    def live_load(path, manifest):
        if manifest is not None and manifest.version == "v2":
            rig.installer.rollback("load_failed: the live interpreter refused it", {})

    rig.start(on_active_changed=live_load)
    deploy_and_serve(rig, blobs, "v1", sequence=1, rollout_id="r0")
    deploy_and_serve(rig, blobs, "v2", sequence=2, rollout_id="r1", trial_seconds=60)
    states = rig.states()
    assert states[-1] == "rolled_back" and states[-2] == "staged"   # no TRIAL reported after the rollback
    assert active_version(rig) == "v1" and not rig.installer.trial_active()


def test_the_acceptance_figures_are_handed_over_for_the_model_accepted_by_this_process(rig, blobs):
    rig.start()
    deploy_and_serve(rig, blobs, "v1", sequence=1)
    reported = rig.last().figures
    sha = harness.sha256(blobs["v1"])
    figures = rig.installer.accepted_figures(sha)
    assert figures is not None and figures["metric"] == reported["metric"] == 1.0
    assert figures["golden_count"] == reported["golden_count"] > 0
    assert rig.installer.accepted_figures(harness.sha256(blobs["v2"])) is None  # not the accepted model
    figures["metric"] = 0.0
    assert rig.installer.accepted_figures(sha)["metric"] == 1.0  # a copy: the caller cannot change it
    rig.start()  # a restart: this process accepted nothing, the serving side scores the model itself
    assert rig.installer.accepted_figures(sha) is None

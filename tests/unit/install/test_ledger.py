"""agent.install.ledger: two record files written alternately, one flush per save, the previous state
always whole on disk."""
from __future__ import annotations

from pathlib import Path

from agent.install import ledger as L
from agent.install.ledger import Job, Ledger, Outcome


def _job(state: str = L.DOWNLOADING) -> Job:
    return Job(command_id="c1", signed=b"\x01signed-manifest\x00", state=state, slot="slot-b", attempts={state: 1},
               figures={"p95_ms": 1.5})


def test_a_saved_state_is_read_back_whole(tmp_path: Path):
    ledger = Ledger(tmp_path)
    ledger.last_sequence = 9
    ledger.job = _job(L.STAGED)
    ledger.last_outcome = Outcome("c0", b"\x02older", L.COMMITTED, "", {"metric": 0.97})
    ledger.rolled_back.add(("r1", "digits", "3", "fp32"))
    ledger.remember_command("c1")
    ledger.save()
    again = Ledger(tmp_path)
    assert again.recovered is None and again.last_sequence == 9
    assert again.job == ledger.job and again.last_outcome == ledger.last_outcome
    assert again.rolled_back == {("r1", "digits", "3", "fp32")} and again.seen("c1")


def test_each_save_leaves_the_previous_record_untouched(tmp_path: Path):
    ledger = Ledger(tmp_path)
    for sequence in range(1, 6):
        ledger.last_sequence = sequence
        before = {path: path.read_bytes() if path.exists() else None for path in ledger.paths}
        ledger.save()
        changed = [path for path in ledger.paths if (path.read_bytes() if path.exists() else None) != before[path]]
        assert changed == [ledger.paths[ledger.generation % 2]]   # only the file that held the older record
        # The other file still holds the state before this save (none before the first two saves).
        other = ledger.paths[(ledger.generation + 1) % 2]
        if sequence > 1:
            assert L._decode(other.read_bytes())[1]["last_sequence"] == sequence - 1
    assert Ledger(tmp_path).last_sequence == 5


def test_a_torn_newest_record_falls_back_to_the_one_before(tmp_path: Path):
    ledger = Ledger(tmp_path)
    ledger.last_sequence = 1
    ledger.save()
    ledger.last_sequence = 2
    ledger.job = _job()
    ledger.save()
    newest = ledger.paths[ledger.generation % 2]
    raw = newest.read_bytes()
    newest.write_bytes(raw[:-3] + bytes(3))   # the end of the record never reached the disk
    again = Ledger(tmp_path)
    assert again.recovered is None and again.last_sequence == 1 and again.job is None
    again.last_sequence = 3
    again.save()   # overwrites the torn record, not the good one
    assert Ledger(tmp_path).last_sequence == 3
    kept = ledger.paths[(again.generation + 1) % 2]
    assert L._decode(kept.read_bytes())[1]["last_sequence"] == 1


def test_records_that_are_all_damaged_are_moved_aside(tmp_path: Path):
    ledger = Ledger(tmp_path)
    ledger.last_sequence = 4
    ledger.save()
    ledger.save()
    for path in ledger.paths:
        path.write_bytes(b"EFL1" + bytes(40))
    again = Ledger(tmp_path)
    assert again.recovered and "crc mismatch" in again.recovered and again.last_sequence == 0
    assert not any(path.exists() for path in again.paths)
    assert len(list(tmp_path.glob("ledger.*.corrupt-*"))) == 2
    again.last_sequence = 4
    again.save()
    assert Ledger(tmp_path).last_sequence == 4 and Ledger(tmp_path).recovered is None

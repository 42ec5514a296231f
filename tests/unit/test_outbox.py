"""agent.outbox: order, acknowledgement-only deletion, bounds that drop the oldest and count them,
durability across close / SIGKILL, and recovery from a corrupted file."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from agent.outbox import Outbox, OutboxFull

REPO = Path(__file__).resolve().parents[2]


class Clock:
    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "outbox.db"


def test_peek_returns_records_in_insertion_order(path: Path) -> None:
    clock = Clock()
    with Outbox.open(path, clock=clock) as box:
        ids = []
        for i in range(5):
            clock.now += 1
            ids.append(box.put(f"ef/v1/dev/d1/{'event' if i % 2 else 'telemetry'}", f"p{i}".encode(), qos=i % 2))
        assert ids == sorted(ids) and len(set(ids)) == 5
        records = box.peek(10)
        assert [r.id for r in records] == ids
        assert [r.payload for r in records] == [f"p{i}".encode() for i in range(5)]
        assert [r.qos for r in records] == [0, 1, 0, 1, 0]
        assert [r.created_at for r in records] == [clock.now - 4 + i for i in range(5)]
        assert records[1].topic == "ef/v1/dev/d1/event"
        assert [r.id for r in box.peek(2)] == ids[:2]
        assert [r.id for r in box.peek(2, after=ids[1])] == ids[2:4]
        assert len(box) == 5  # peek removes nothing


def test_done_deletes_only_the_acknowledged_ids(path: Path) -> None:
    with Outbox.open(path) as box:
        ids = [box.put("t", bytes([i]) * 10) for i in range(6)]
        assert box.bytes_used == 60
        assert box.done([ids[1], ids[4], 10_000]) == 2  # an unknown id is ignored
        assert [r.id for r in box.peek(10)] == [ids[0], ids[2], ids[3], ids[5]]
        assert len(box) == 4 and box.bytes_used == 40
        assert box.done([ids[1]]) == 0  # a duplicate acknowledgement changes nothing
        assert box.done([]) == 0
        # ids are never reused, so a late acknowledgement can never delete a newer record
        new = box.put("t", b"new")
        assert new > max(ids)


def test_record_bound_drops_oldest_and_counts(path: Path) -> None:
    with Outbox.open(path, max_records=3) as box:
        ids = [box.put("t", f"{i}".encode()) for i in range(7)]
        assert len(box) == 3
        assert [r.id for r in box.peek(10)] == ids[-3:]
        assert box.dropped == 4
        assert box.take_dropped() == 4
        assert box.dropped == 0 and box.take_dropped() == 0
        box.put("t", b"x")
        assert box.dropped == 1


def test_byte_bound_drops_oldest_and_counts(path: Path) -> None:
    with Outbox.open(path, max_records=1000, max_bytes=100) as box:
        ids = [box.put("t", bytes(30)) for _ in range(3)]  # 90 bytes
        big = box.put("t", bytes(50))  # 140 > 100: the two oldest go
        assert [r.id for r in box.peek(10)] == [ids[2], big]
        assert box.bytes_used == 80 and box.dropped == 2
        with pytest.raises(OutboxFull, match="101 bytes exceeds the outbox budget of 100"):
            box.put("t", bytes(101))
        assert len(box) == 2  # a refused record drops nothing


def test_records_and_counter_survive_close_and_reopen(path: Path) -> None:
    with Outbox.open(path, max_records=2) as box:
        ids = [box.put("a", b"1"), box.put("b", b"2"), box.put("c", b"3")]
        box.done([ids[1]])
    with Outbox.open(path, max_records=2) as box:
        assert box.recovered_from is None
        assert [(r.id, r.topic, r.payload) for r in box.peek(10)] == [(ids[2], "c", b"3")]
        assert len(box) == 1 and box.bytes_used == 1
        assert box.take_dropped() == 1
    with Outbox.open(path) as box:
        assert box.dropped == 0  # the reset was persisted too


def test_wal_and_full_sync(path: Path) -> None:
    with Outbox.open(path) as box:
        box.put("t", b"x")
        db = box._db  # the settings that make put durable
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


_CHILD = """
import sys
from agent.outbox import Outbox
box = Outbox.open(sys.argv[1])
record_id = box.put("ef/v1/dev/d1/event", b"written-before-kill")
print(record_id, flush=True)
sys.stdin.read()  # block until killed
"""


def test_record_survives_sigkill_right_after_put(path: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", _CHILD, str(path)], cwd=REPO, stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = child.stdout.readline()  # put() has returned once this line exists
        assert line.strip().isdigit(), child.stderr.read() if child.poll() is not None else line
        child.send_signal(signal.SIGKILL)
        assert child.wait(timeout=30) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=30)
    with Outbox.open(path) as box:
        records = box.peek(10)
        assert [(r.id, r.payload) for r in records] == [(int(line), b"written-before-kill")]


def test_garbage_file_is_moved_aside_and_a_fresh_outbox_works(path: Path) -> None:
    path.parent.mkdir(parents=True)
    garbage = os.urandom(8192)
    path.write_bytes(garbage)
    clock = Clock(1_800_000_000.0)  # 2027-01-15T08:00:00Z
    with Outbox.open(path, clock=clock) as box:
        assert box.recovered_from == path.with_name("outbox.db.corrupt-20270115T080000Z")
        assert box.recovered_from.read_bytes() == garbage
        assert "not a database" in box.recovery_reason
        assert len(box) == 0
        record_id = box.put("t", b"fresh")
        assert [r.id for r in box.peek()] == [record_id]
    with Outbox.open(path, clock=clock) as box:
        assert box.recovered_from is None and len(box) == 1


def test_damaged_pages_are_detected(path: Path) -> None:
    with Outbox.open(path) as box:
        for _ in range(300):
            box.put("t", os.urandom(200))
    data = bytearray(path.read_bytes())
    page = 4096
    assert len(data) > 4 * page
    data[3 * page:3 * page + 200] = b"\xff" * 200  # scribble over a b-tree page
    path.write_bytes(bytes(data))
    clock = Clock()
    with Outbox.open(path, clock=clock) as box:
        assert box.recovered_from is not None and box.recovered_from.exists()
        assert box.recovery_reason
        assert len(box) == 0
        box.put("t", b"ok")
        assert len(box) == 1


def test_a_second_recovery_in_the_same_second_gets_its_own_name(path: Path) -> None:
    path.parent.mkdir(parents=True)
    clock = Clock()
    seen = set()
    for _ in range(2):
        path.write_bytes(b"garbage" * 100)
        for suffix in ("-wal", "-shm"):
            path.with_name(path.name + suffix).unlink(missing_ok=True)
        with Outbox.open(path, clock=clock) as box:
            seen.add(box.recovered_from)
    assert len(seen) == 2 and all(p.exists() for p in seen)


def test_foreign_sqlite_database_is_moved_aside(path: Path) -> None:
    path.parent.mkdir(parents=True)
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE something_else (x)")
    db.commit()
    db.close()
    with Outbox.open(path) as box:
        assert box.recovered_from is not None
        assert "not an outbox database" in box.recovery_reason
        box.put("t", b"x")


def test_producers_and_publisher_threads_lose_nothing(path: Path) -> None:
    producers, per_producer = 4, 150
    with Outbox.open(path) as box:
        finished = threading.Event()
        acknowledged: list[bytes] = []
        errors: list[BaseException] = []

        def produce(n: int) -> None:
            try:
                for i in range(per_producer):
                    box.put("t", f"{n}:{i}".encode())
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        def publish() -> None:
            # drain like the MQTT thread: peek, "send", acknowledge
            try:
                while True:
                    batch = box.peek(25)
                    if not batch:
                        if finished.is_set() and len(box) == 0:
                            return
                        continue
                    acknowledged.extend(r.payload for r in batch)
                    box.done(r.id for r in batch)
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

        publisher = threading.Thread(target=publish)
        publisher.start()
        threads = [threading.Thread(target=produce, args=(n,)) for n in range(producers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        finished.set()
        publisher.join(timeout=60)
        assert not errors
        assert not publisher.is_alive()
        assert sorted(acknowledged) == sorted(f"{n}:{i}".encode() for n in range(producers) for i in range(per_producer))
        # each producer's records were published in the order it put them
        for n in range(producers):
            mine = [int(p.split(b":")[1]) for p in acknowledged if p.startswith(f"{n}:".encode())]
            assert mine == sorted(mine)
        assert len(box) == 0 and box.bytes_used == 0


def test_invalid_arguments(path: Path) -> None:
    with pytest.raises(ValueError, match="max_records"):
        Outbox.open(path, max_records=0)
    with Outbox.open(path) as box:
        with pytest.raises(ValueError, match="qos"):
            box.put("t", b"x", qos=3)
        with pytest.raises(ValueError, match="topic"):
            box.put("", b"x")

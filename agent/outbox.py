"""Store-and-forward queue for everything the agent publishes with QoS 1 (telemetry, events).

A record is written to SQLite (WAL, synchronous=FULL: on disk when `put` returns) and deleted only when
the publisher calls `done` after the broker acknowledged it (thingsboard-gateway's event storage, with
acknowledgement after send). While the broker is away records accumulate up to `max_records` /
`max_bytes`; beyond that the OLDEST are dropped and counted in a persisted counter that the agent
reports (`take_dropped`). A file that is not a healthy outbox database at open is moved aside to
`<name>.corrupt-<UTC timestamp>` and a fresh one is created; `recovered_from` says so.

One connection, one lock: safe to share between the MQTT publisher thread and producers. Open one
Outbox per file per process (it keeps the record count and byte total in memory).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable

SCHEMA_VERSION = 1
DEFAULT_MAX_RECORDS = 100_000
DEFAULT_MAX_BYTES = 64 * 1024 * 1024

_SCHEMA = """
CREATE TABLE records (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- AUTOINCREMENT: an id is never reused, so a late done() is harmless
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    qos INTEGER NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT INTO counters (name, value) VALUES ('dropped', 0);
"""


@dataclass(frozen=True)
class Record:
    id: int
    topic: str
    payload: bytes
    qos: int
    created_at: float  # seconds since the epoch, from the outbox's clock


class OutboxFull(ValueError):
    """A single record larger than the whole byte budget: it could never be stored."""


class Outbox:
    def __init__(
        self,
        connection: sqlite3.Connection,
        path: Path,
        max_records: int,
        max_bytes: int | None,
        clock: Callable[[], float],
        recovered_from: Path | None = None,
        recovery_reason: str | None = None,
    ) -> None:
        """Use Outbox.open()."""
        self.path = path
        self.max_records = max_records
        self.max_bytes = max_bytes
        self.recovered_from = recovered_from      # where a corrupted file was moved, None when all was well
        self.recovery_reason = recovery_reason    # what was wrong with it
        self._db = connection
        self._clock = clock
        self._lock = threading.Lock()
        self._count, self._bytes = connection.execute(
            "SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)), 0) FROM records").fetchone()

    @classmethod
    def open(
        cls,
        path: Path | str,
        *,
        max_records: int = DEFAULT_MAX_RECORDS,
        max_bytes: int | None = DEFAULT_MAX_BYTES,
        clock: Callable[[], float] = time.time,
    ) -> Outbox:
        if max_records < 1:
            raise ValueError(f"max_records must be at least 1, got {max_records}")
        if max_bytes is not None and max_bytes < 1:
            raise ValueError(f"max_bytes must be at least 1 or None, got {max_bytes}")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        recovered_from = reason = None
        try:
            connection = _connect_checked(path)
        except _Unhealthy as exc:
            reason = str(exc)
            recovered_from = _move_aside(path, clock())
            connection = _connect_checked(path)
        return cls(connection, path, max_records, max_bytes, clock, recovered_from, reason)

    # -- producers ----------------------------------------------------------------------------

    def put(self, topic: str, payload: bytes, qos: int = 1) -> int:
        """Store a record durably and return its id; drops the oldest records when over the bounds."""
        if qos not in (0, 1, 2):
            raise ValueError(f"qos must be 0, 1 or 2, got {qos}")
        if not topic:
            raise ValueError("topic must not be empty")
        payload = bytes(payload)
        if self.max_bytes is not None and len(payload) > self.max_bytes:
            raise OutboxFull(f"record of {len(payload)} bytes exceeds the outbox budget of {self.max_bytes} bytes")
        with self._lock:
            with self._transaction():
                cursor = self._db.execute(
                    "INSERT INTO records (topic, payload, qos, created_at) VALUES (?, ?, ?, ?)",
                    (topic, payload, qos, self._clock()))
                record_id = int(cursor.lastrowid)
                count, size = self._drop_oldest(self._count + 1, self._bytes + len(payload))
            self._count, self._bytes = count, size  # only once the transaction committed
        return record_id

    def _drop_oldest(self, count: int, size: int) -> tuple[int, int]:
        """Delete the oldest records until within bounds, counting them; inside put's transaction."""
        over_records = max(0, count - self.max_records)
        over_bytes = max(0, size - self.max_bytes) if self.max_bytes is not None else 0
        if not over_records and not over_bytes:
            return count, size
        victims: list[int] = []
        freed = 0
        # Walk oldest first; the newest record (just inserted) always fits, so this stops before it.
        cursor = self._db.execute("SELECT id, LENGTH(payload) FROM records ORDER BY id")
        try:
            for record_id, length in cursor:
                if len(victims) >= over_records and freed >= over_bytes:
                    break
                victims.append(record_id)
                freed += length
        finally:
            cursor.close()  # finish the read before deleting from the same table
        self._db.executemany("DELETE FROM records WHERE id = ?", ((i,) for i in victims))
        self._db.execute("UPDATE counters SET value = value + ? WHERE name = 'dropped'", (len(victims),))
        return count - len(victims), size - freed

    # -- the publisher ------------------------------------------------------------------------

    def peek(self, limit: int = 100, after: int = 0) -> list[Record]:
        """Up to `limit` records with id > `after`, oldest first; nothing is removed."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, topic, payload, qos, created_at FROM records WHERE id > ? ORDER BY id LIMIT ?",
                (after, limit)).fetchall()
        return [Record(int(i), t, bytes(p), int(q), float(c)) for i, t, p, q, c in rows]

    def done(self, ids: Iterable[int]) -> int:
        """Delete these records (the broker acknowledged them); returns how many existed."""
        ids = [(int(i),) for i in ids]
        if not ids:
            return 0
        with self._lock:
            with self._transaction():
                removed = freed = 0
                for (record_id,) in ids:
                    rows = self._db.execute("DELETE FROM records WHERE id = ? RETURNING LENGTH(payload)",
                                            (record_id,)).fetchall()
                    removed += len(rows)
                    freed += sum(int(length) for (length,) in rows)
            self._count -= removed
            self._bytes -= freed
        return removed

    # -- the dropped counter ------------------------------------------------------------------

    @property
    def dropped(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT value FROM counters WHERE name = 'dropped'").fetchone()[0])

    def take_dropped(self) -> int:
        """Read and reset the dropped counter (call it right before putting the record that reports it)."""
        with self._lock, self._transaction():
            value = int(self._db.execute("SELECT value FROM counters WHERE name = 'dropped'").fetchone()[0])
            self._db.execute("UPDATE counters SET value = 0 WHERE name = 'dropped'")
        return value

    # -- housekeeping -------------------------------------------------------------------------

    def __len__(self) -> int:
        with self._lock:
            return self._count

    @property
    def bytes_used(self) -> int:
        """Payload bytes held (not the file size)."""
        with self._lock:
            return self._bytes

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on error (the connection runs in autocommit mode)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self._db.execute("COMMIT" if exc_type is None else "ROLLBACK")


class _Unhealthy(Exception):
    """The file at the outbox path is not a usable outbox database."""


def _is_damage(exc: sqlite3.DatabaseError) -> bool:
    """Damage to the file (move it aside) as opposed to trouble around it (locked, unwritable: raise)."""
    name = getattr(exc, "sqlite_errorname", None)
    if name is None:  # Python < 3.11: damage comes as a bare DatabaseError, the rest as subclasses
        return type(exc) is sqlite3.DatabaseError
    return name.startswith(("SQLITE_NOTADB", "SQLITE_CORRUPT"))


def _connect_checked(path: Path) -> sqlite3.Connection:
    """Open (creating if needed) and verify; raises _Unhealthy with the reason when the file is damaged
    or is not an outbox, and sqlite3 errors as they are for anything else (permissions, locks, I/O)."""
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    try:
        db.execute("PRAGMA journal_mode=WAL").fetchone()
        # FULL: in WAL mode, fsync the log on every commit, so an acknowledged put survives power loss.
        db.execute("PRAGMA synchronous=FULL")
        problems = [row[0] for row in db.execute("PRAGMA quick_check")]
        if problems != ["ok"]:
            raise _Unhealthy("integrity check failed: " + "; ".join(problems[:3]))
        version = db.execute("PRAGMA user_version").fetchone()[0]
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if version == 0 and not tables - {"sqlite_sequence"}:
            db.executescript(f"BEGIN; {_SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;")
        elif version != SCHEMA_VERSION or not {"records", "counters"} <= tables:
            raise _Unhealthy(f"not an outbox database (schema version {version}, tables {sorted(tables)})")
    except sqlite3.DatabaseError as exc:  # "file is not a database", "database disk image is malformed"
        db.close()
        if _is_damage(exc):
            raise _Unhealthy(str(exc)) from exc
        raise
    except _Unhealthy:
        db.close()
        raise
    return db


def _move_aside(path: Path, now: float) -> Path:
    """Rename the database (and its -wal/-shm companions) to <name>.corrupt-<timestamp>[-n]."""
    stamp = datetime.fromtimestamp(now, timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
    path.replace(target)
    for suffix in ("-wal", "-shm"):
        companion = path.with_name(path.name + suffix)
        if companion.exists():
            companion.replace(target.with_name(target.name + suffix))
    return target

"""INSERT ... ON CONFLICT for the two stores we support: the same statement shape on SQLite and PostgreSQL.

The telemetry writer's hot path sends multi-row INSERTs as driver SQL: SQLAlchemy's per-row parameter
processing costs more than the insert itself at thousands of rows per second, and the ON CONFLICT /
RETURNING syntax we need is identical on SQLite (>= 3.35) and PostgreSQL; only the placeholder and the
datetime parameter differ.
"""
from __future__ import annotations

import operator
import time
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any, Sequence

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite

# Parameters per statement stay under SQLite's limit (32766) and PostgreSQL's (65535).
MAX_PARAMS = 32000


def insert_for(backend: str, table: Table):
    """The dialect's insert() (it has on_conflict_do_nothing / on_conflict_do_update) for `table`."""
    if backend == "sqlite":
        return sqlite.insert(table)
    if backend == "postgresql":
        return postgresql.insert(table)
    raise ValueError(f"telemetry needs SQLite or PostgreSQL, not {backend!r}")


def _sqlite_datetime(value: datetime) -> str:
    """The text SQLAlchemy's SQLite DateTime type writes and reads back: 'YYYY-MM-DD HH:MM:SS.ffffff', UTC.

    isoformat() is several times faster than strftime(); it leaves out zero microseconds and adds the
    offset of an aware datetime, both put right here (every datetime the writer sees is UTC)."""
    text = value.isoformat(" ")
    if value.tzinfo is not None:
        text = text[:-6]
    return text if value.microsecond else text + ".000000"


class TimeParams:
    """Timestamps as the driver parameters of one backend, made straight from protobuf seconds and nanos.

    SQLite stores SQLAlchemy's text form; reports of one interval share their seconds, so the formatted
    second is cached and only the microseconds are added (the writer's hottest conversion otherwise).
    PostgreSQL takes aware datetimes.
    """

    def __init__(self, backend: str):
        self.sqlite = backend == "sqlite"
        self._seconds: dict[int, str] = {}

    def stamp(self, seconds: int, nanos: int) -> Any:
        if not self.sqlite:
            return datetime.fromtimestamp(seconds, timezone.utc).replace(microsecond=nanos // 1000)
        prefix = self._seconds.get(seconds)
        if prefix is None:
            if len(self._seconds) > 50_000:
                self._seconds.clear()
            prefix = self._seconds[seconds] = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds))
        return f"{prefix}.{nanos // 1000:06d}"

    def moment(self, value: datetime) -> Any:
        return _sqlite_datetime(value) if self.sqlite else value


class BulkInsert:
    """INSERT INTO table (columns) <rows> <suffix>, for lists of row dicts whose values are driver
    parameters already (timestamps from TimeParams).

    SQLite: one multi-row VALUES list per statement (parameters bound in C). PostgreSQL: one array
    parameter per column and unnest(), so the statement text stays short and psycopg's query cache
    holds it (a VALUES list with thousands of placeholders is re-parsed in Python on every call).
    """

    def __init__(self, backend: str, table: Table, columns: Sequence[str], suffix: str = ""):
        if backend not in ("sqlite", "postgresql"):
            raise ValueError(f"telemetry needs SQLite or PostgreSQL, not {backend!r}")
        self.backend = backend
        self.columns = tuple(columns)
        # A row's values in column order, picked in C (a comprehension of dict lookups costs ~3x as much per row).
        self._values = operator.itemgetter(*self.columns) if len(self.columns) > 1 else (lambda r, c=self.columns[0]: (r[c],))
        self.rows_per_statement = max(1, MAX_PARAMS // len(self.columns)) if backend == "sqlite" else 50_000
        head = f"INSERT INTO {table.name} ({', '.join(self.columns)}) "
        suffix = (" " + suffix) if suffix else ""
        if backend == "sqlite":
            self._row_sql = "(" + ", ".join(["?"] * len(self.columns)) + ")"
            self._head, self._suffix = head + "VALUES ", suffix
        else:
            dialect = postgresql.dialect()
            arrays = ", ".join(f"%s::{table.c[c].type.compile(dialect=dialect)}[]" for c in self.columns)
            self._pg_sql = f"{head}SELECT * FROM unnest({arrays}){suffix}"

    @lru_cache(maxsize=64)  # noqa: B019 - a few instances live for the process
    def _values_sql(self, n: int) -> str:
        return self._head + ", ".join([self._row_sql] * n) + self._suffix

    def statements(self, rows: Sequence[dict[str, Any]]):
        """(sql, params) pairs covering `rows`."""
        for at in range(0, len(rows), self.rows_per_statement):
            chunk = rows[at : at + self.rows_per_statement]
            if self.backend == "postgresql":
                yield self._pg_sql, tuple([r[c] for r in chunk] for c in self.columns)
                continue
            params: list[Any] = []
            extend, values = params.extend, self._values
            for r in chunk:
                extend(values(r))
            yield self._values_sql(len(chunk)), tuple(params)

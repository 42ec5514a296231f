"""Engine and sessions: SQLite (WAL) by default, PostgreSQL when the URL says so; same code for both."""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session, sessionmaker

from coordinator.store import model_tables, rollout_tables, telemetry_tables  # noqa: F401 - tables register on Base
from coordinator.store.schema import Base
from coordinator.store.upgrade import SchemaUpgradeError, add_missing_columns


class StoreError(RuntimeError):
    pass


def _normalize(url: str) -> str:
    # psycopg 3 is the driver we ship; a bare postgresql:// would ask SQLAlchemy for psycopg2.
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url[len("postgresql://"):]
    return url


def make_engine(url: str) -> Engine:
    url = _normalize(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # noqa: ANN001 - DB-API objects
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)


class Store:
    """Owns the engine and hands out transactional sessions."""

    def __init__(self, url: str):
        self.url = _normalize(url)
        try:
            self.engine = make_engine(self.url)
            Base.metadata.create_all(self.engine)
            self.upgraded = add_missing_columns(self.engine, Base.metadata)
        except SchemaUpgradeError as exc:
            raise StoreError(str(exc)) from exc
        except Exception as exc:  # connection refused, bad path, missing driver
            raise StoreError(f"cannot open the store at {make_url(self.url).render_as_string(hide_password=True)}: {exc}") from exc
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def backend(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._sessions() as s:
            with s.begin():
                yield s

    def close(self) -> None:
        self.engine.dispose()

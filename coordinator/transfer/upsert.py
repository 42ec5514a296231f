"""INSERT ... ON CONFLICT for the two backends the store supports (SQLite and PostgreSQL)."""
from __future__ import annotations

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session


def dialect_insert(bind: Session | Connection, table):
    """An insert() with on_conflict_do_nothing / on_conflict_do_update for the backend of a session or connection."""
    name = (bind.get_bind() if isinstance(bind, Session) else bind).dialect.name
    if name == "postgresql":
        return postgresql.insert(table)
    if name == "sqlite":
        return sqlite.insert(table)
    raise RuntimeError(f"no upsert for the {name} backend (SQLite and PostgreSQL are supported)")

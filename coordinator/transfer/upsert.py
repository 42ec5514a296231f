"""INSERT ... ON CONFLICT for the two backends the store supports (SQLite and PostgreSQL)."""
from __future__ import annotations

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session


def dialect_insert(session: Session, table):
    """An insert() with on_conflict_do_nothing / on_conflict_do_update for the session's backend."""
    name = session.get_bind().dialect.name
    if name == "postgresql":
        return postgresql.insert(table)
    if name == "sqlite":
        return sqlite.insert(table)
    raise RuntimeError(f"no upsert for the {name} backend (SQLite and PostgreSQL are supported)")

"""Additive schema upgrade: a store made by an older coordinator gets the columns added since.

create_all makes missing tables but never touches an existing one, so a column added to a table in a later
release (devices.manifest_sequence, say) would break every query on an older database. Columns are only ever
added with a default or as nullable, which makes this safe to do in place: each missing column is added with
ALTER TABLE ... ADD COLUMN and its default, rows already stored keep their values. Anything else (a missing
column with no usable default, a changed type) is refused with the table and column named, never guessed.
"""
from __future__ import annotations

import json

from sqlalchemy import Column, MetaData, inspect, text
from sqlalchemy.engine import Engine


class SchemaUpgradeError(RuntimeError):
    pass


def _default_literal(column: Column, engine: Engine) -> str | None:
    """The SQL literal of a column's default, or None when it has none we can write."""
    default = column.default
    if default is None:
        return None
    value = default.arg
    if callable(value):
        # SQLAlchemy wraps plain callables (dict, list) so they take a context argument; the wrapped
        # function is kept on __wrapped__ when it is a builtin type.
        made = None
        for candidate in (dict, list):
            if getattr(value, "__wrapped__", None) is candidate or value is candidate:
                made = candidate()
        if made is None:
            return None
        value = json.dumps(made)
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return None


def missing_columns(engine: Engine, metadata: MetaData) -> list[tuple[str, Column]]:
    inspector = inspect(engine)
    existing_tables = set(inspector.get_table_names())
    missing = []
    for table in metadata.sorted_tables:
        if table.name not in existing_tables:
            continue  # create_all makes it whole
        present = {c["name"] for c in inspector.get_columns(table.name)}
        missing += [(table.name, col) for col in table.columns if col.name not in present]
    return missing


def add_missing_columns(engine: Engine, metadata: MetaData) -> list[str]:
    """Add every column the models have and the database lacks; return 'table.column' for each one added."""
    plan = []
    for table_name, column in missing_columns(engine, metadata):
        ddl_type = column.type.compile(dialect=engine.dialect)
        literal = _default_literal(column, engine)
        if column.primary_key or (not column.nullable and literal is None):
            raise SchemaUpgradeError(
                f"the store's table {table_name!r} lacks column {column.name!r} ({ddl_type}, no default): "
                "this database needs a manual migration before this coordinator can use it")
        clause = f"ADD COLUMN {column.name} {ddl_type}"
        if literal is not None:
            clause += f" DEFAULT {literal}"
        if not column.nullable:
            clause += " NOT NULL"
        plan.append((table_name, column.name, f"ALTER TABLE {table_name} {clause}"))
    with engine.begin() as conn:
        for _, _, statement in plan:
            conn.execute(text(statement))
    return [f"{t}.{c}" for t, c, _ in plan]

"""A store made by an older coordinator: missing columns are added in place, rows kept; what can't be is refused."""
from __future__ import annotations

import pytest
import sqlalchemy as sa

from coordinator.store.db import Store, StoreError
from coordinator.store.devices import DeviceRegistry


def _drop_column(url: str, table: str, column: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text(f"ALTER TABLE {table} DROP COLUMN {column}"))
    engine.dispose()


def test_new_store_needs_no_upgrade(store):
    assert store.upgraded == []


def test_missing_column_with_default_is_added_and_rows_kept(store_url):
    s = Store(store_url)
    reg = DeviceRegistry(s)
    reg.register("cam-1", {"role": "camera"}, token_ttl_s=600)
    s.close()
    _drop_column(store_url, "devices", "manifest_sequence")  # as a database from before that column

    s = Store(store_url)
    try:
        assert s.upgraded == ["devices.manifest_sequence"]
        with s.engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT name, manifest_sequence FROM devices")).all()
        assert [(r[0], r[1]) for r in rows] == [("cam-1", 0)]
        assert [d.name for d in DeviceRegistry(s).list()] == ["cam-1"]
    finally:
        s.close()


def test_missing_column_without_default_is_refused_by_name(store_url):
    s = Store(store_url)
    DeviceRegistry(s).register("cam-1", {}, token_ttl_s=600)
    s.close()
    _drop_column(store_url, "enrollment_tokens", "expires_at")

    with pytest.raises(StoreError, match=r"enrollment_tokens.*expires_at.*manual migration"):
        Store(store_url)
    engine = sa.create_engine(store_url)
    with engine.connect() as conn:  # nothing stored was touched
        assert conn.execute(sa.text("SELECT count(*) FROM enrollment_tokens")).scalar() == 1
        assert conn.execute(sa.text("SELECT name FROM devices")).scalar() == "cam-1"
    engine.dispose()

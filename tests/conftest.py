"""Fixtures shared by every tier: stores on SQLite and PostgreSQL."""
from __future__ import annotations

import os
import signal
import uuid

import pytest

# A shell without job control starts a background job with SIGINT ignored, and children inherit that:
# then the edgectl processes the tests interrupt with SIGINT (as Ctrl-C would) never see it. A handled
# signal is reset to its default at exec, so the children get Ctrl-C as from a terminal.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

POSTGRES_URL = os.environ.get("EDGEFLEET_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _postgres_schema_url(request) -> str:
    """A fresh schema per test, so parallel runs and reruns never see each other's rows."""
    import sqlalchemy as sa

    schema = "t_" + uuid.uuid4().hex[:10]
    admin = sa.create_engine(POSTGRES_URL)
    try:
        with admin.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"PostgreSQL at {POSTGRES_URL} is required for the store tests: {exc}")

    def drop():
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()

    request.addfinalizer(drop)
    return f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'edgefleet.db'}"
    return _postgres_schema_url(request)


@pytest.fixture
def store(store_url):
    from coordinator.store.db import Store

    s = Store(store_url)
    yield s
    s.close()

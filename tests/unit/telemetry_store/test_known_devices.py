"""KnownDevices: the whole fleet's ids in one query per TTL, newcomers found at once, strangers remembered."""
from __future__ import annotations

from sqlalchemy import event

from coordinator.store.devices import DeviceRegistry
from coordinator.store.known import KnownDevices

from .factories import Clock


def test_one_query_per_ttl_for_the_whole_fleet(store):
    clock = Clock()
    registry = DeviceRegistry(store, clock=clock)
    ids = [registry.register(f"d-{i}", {}, 3600).device.id for i in range(50)]
    known = KnownDevices(registry, known_ttl_s=60, unknown_ttl_s=5, monotonic=clock.monotonic)
    queries = []
    event.listen(store.engine, "before_cursor_execute", lambda *a: queries.append(a[2]))
    assert all(i in known for i in ids * 3)
    assert len(queries) == 1  # every id from one load, then from memory

    late = registry.register("d-late", {}, 3600).device.id  # registered after the load: found on its own
    assert late in known
    assert "d-stranger" not in known
    before = len(queries)
    assert "d-stranger" not in known  # remembered for unknown_ttl_s: no query
    assert len(queries) == before
    clock.advance(seconds=6)
    assert "d-stranger" not in known
    assert len(queries) > before

    registry.remove(ids[0])
    assert ids[0] in known  # forgotten only at the next load...
    clock.advance(seconds=60)
    assert ids[0] not in known  # ...within known_ttl_s
    assert ids[1] in known and late in known

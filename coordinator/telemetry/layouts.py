"""Bucket layouts of latency histograms: stored once, named by a digest, cached in memory.

Almost every device sends the same bounds (agent/telemetry/histogram.py DEFAULT_BOUNDS: 121 doubles,
about 1 KB), so rows keep only the counts and the layout's digest. Layouts are immutable (the digest is
of the bounds), so caching them forever is safe, and two coordinator replicas writing the same layout
both succeed (insert ... on conflict do nothing).
"""
from __future__ import annotations

import struct
import threading
from typing import Iterable, Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from coordinator.store.db import Store
from coordinator.store.telemetry_tables import TelemetryBucketLayoutRow
from coordinator.telemetry.dialects import insert_for
from coordinator.telemetry.histograms import key_bounds, key_digest


class BucketLayouts:
    def __init__(self, store: Store):
        self.store = store
        self._by_key: dict[bytes, str] = {}  # packed bounds (histograms.bounds_key) -> digest
        self._bounds: dict[str, tuple[float, ...]] = {}
        self._stored: set[str] = set()
        self._lock = threading.Lock()

    def digest(self, bounds: Sequence[float]) -> str:
        return self.digest_for_key(struct.pack(f"<{len(bounds)}d", *bounds))

    def digest_for_key(self, key: bytes) -> str:
        """The digest naming the bounds packed in `key` (the hot path: one dict lookup)."""
        found = self._by_key.get(key)
        if found is None:
            found = key_digest(key)
            with self._lock:
                if len(self._by_key) > 10_000:
                    self._by_key.clear()  # garbage layouts from a broken device must not grow this
                self._by_key[key] = found
                self._bounds[found] = key_bounds(key)
        return found

    def unstored(self, digests: Iterable[str]) -> list[str]:
        return [d for d in set(digests) if d and d not in self._stored]

    def store_new(self, session: Session, digests: Iterable[str]) -> list[str]:
        """Insert the layouts not yet known to be stored, in the caller's transaction; returns their digests
        (pass them to mark_stored once the transaction has committed)."""
        new = self.unstored(digests)
        if new:
            stmt = insert_for(self.store.backend, TelemetryBucketLayoutRow.__table__).on_conflict_do_nothing(index_elements=["digest"])
            session.execute(stmt, [{"digest": d, "bounds_ms": list(self._bounds[d])} for d in new])
        return new

    def mark_stored(self, digests: Iterable[str]) -> None:
        with self._lock:
            self._stored.update(digests)

    def bounds(self, digest: str, session: Session | None = None) -> tuple[float, ...] | None:
        """The bounds named by `digest`, from the cache or the store; None for "" or an unknown digest."""
        if not digest:
            return None
        found = self._bounds.get(digest)
        if found is not None:
            return found
        if session is None:
            with self.store.session() as s:
                raw = s.scalar(select(TelemetryBucketLayoutRow.bounds_ms).where(TelemetryBucketLayoutRow.digest == digest))
        else:
            raw = session.scalar(select(TelemetryBucketLayoutRow.bounds_ms).where(TelemetryBucketLayoutRow.digest == digest))
        if raw is None:
            return None
        found = tuple(float(b) for b in raw)
        with self._lock:
            self._bounds[digest] = found
            self._stored.add(digest)
        return found

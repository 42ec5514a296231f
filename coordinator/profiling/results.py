"""ProfileResult events -> measured latency per (artifact sha256, hardware class), read by selection.

Each event is stored as it came (profile_results, unique by envelope message id, so a QoS 1
redelivery changes nothing) and folded into measured_latency: the count of successful results, the
latest p50/p95/load time/peak RSS, and the failures. Figures from real hardware win: a simulated
result (the agent scaled host latency by its profile's factor) replaces the figures only while no
real result exists for that artifact and class.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable, Iterable, Sequence

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from coordinator.ingest import RateLimitedLog
from coordinator.selection import Measurement, MeasuredTable
from coordinator.store.db import Store
from coordinator.store.rollout_tables import MeasuredLatencyRow, ProfileRequestRow, ProfileResultRow
from coordinator.store.schema import DeviceRow
from coordinator.transfer.upsert import dialect_insert

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RequestedVariant:
    """What a profile request sent, so that a result naming only the variant id finds its artifact."""

    variant_id: str
    sha256: str
    host_p50_ms: float | None = None
    host_p95_ms: float | None = None

    def to_json(self) -> dict:
        return {"variant_id": self.variant_id, "sha256": self.sha256, "host_p50_ms": self.host_p50_ms, "host_p95_ms": self.host_p95_ms}

    @classmethod
    def from_json(cls, data: dict) -> RequestedVariant:
        return cls(data["variant_id"], data["sha256"], data.get("host_p50_ms"), data.get("host_p95_ms"))


def measurement_of(row: MeasuredLatencyRow) -> Measurement:
    return Measurement(
        p50_ms=row.p50_ms,
        p95_ms=row.p95_ms,
        count=row.count,
        simulated=row.simulated,
        host_p50_ms=row.host_p50_ms,
        host_p95_ms=row.host_p95_ms,
        load_ms=row.load_ms,
        peak_rss_bytes=row.peak_rss_bytes,
        error_count=row.error_count,
        last_error=row.last_error,
    )


class ProfileResults:
    """The store side of profiling: requests sent, results received, measured latency for selection."""

    def __init__(self, store: Store, *, clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc), limiter: RateLimitedLog | None = None):
        self.store = store
        self.clock = clock
        self.limiter = limiter or RateLimitedLog()

    # --- requests ------------------------------------------------------------------------------------

    def record_request(self, request_id: str, model: str, version: str, device_ids: Sequence[str], variants: Sequence[RequestedVariant]) -> None:
        with self.store.session() as s:
            s.add(
                ProfileRequestRow(
                    id=request_id,
                    created_at=self.clock(),
                    model=model,
                    version=version,
                    device_ids=list(device_ids),
                    candidates=[v.to_json() for v in variants],
                )
            )

    def request(self, request_id: str) -> ProfileRequestRow | None:
        with self.store.session() as s:
            return s.get(ProfileRequestRow, request_id)

    # --- results -------------------------------------------------------------------------------------

    def handle_event(self, env) -> bool:
        """Ingest handler for Event.profile_result; False for an unknown device."""
        return self.record(env.device_id, env.message_id, env.event.profile_result) != "unknown_device"

    def record(self, device_id: str, message_id: str, result) -> str:
        """Store one ProfileResult. Returns recorded | duplicate | unknown_device | unknown_request | not_asked."""
        for attempt in range(3):
            try:
                return self._record(device_id, message_id, result)
            except IntegrityError:
                # Another replica inserted the same measured_latency row first: fold into it.
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _record(self, device_id: str, message_id: str, r) -> str:
        now = self.clock()
        with self.store.session() as s:
            device = s.get(DeviceRow, device_id)
            if device is None:
                return "unknown_device"
            req = s.get(ProfileRequestRow, r.request_id)
            if req is None:
                self.limiter.warning((device_id, "profile:unknown_request"), "profile result from %s for unknown request %r", device_id, r.request_id)
                return "unknown_request"
            if device_id not in (req.device_ids or []):
                self.limiter.warning((device_id, "profile:not_asked"), "profile result from %s, which request %s did not ask", device_id, r.request_id)
                return "not_asked"
            variant = next((RequestedVariant.from_json(c) for c in req.candidates if c.get("variant_id") == r.variant_id), None)
            ok = not r.error and r.p95_ms > 0
            stmt = dialect_insert(s, ProfileResultRow).values(
                message_id=message_id,
                at=now,
                request_id=r.request_id,
                device_id=device_id,
                hardware_class=device.hardware_class,
                variant_id=r.variant_id,
                sha256=variant.sha256 if variant else "",
                load_ms=r.load_ms if ok else None,
                p50_ms=r.p50_ms if ok else None,
                p95_ms=r.p95_ms if ok else None,
                peak_rss_bytes=r.peak_rss_bytes if ok else None,
                error=r.error or ("" if ok else "no latency reported"),
                simulated=r.simulated,
            )
            inserted = s.execute(stmt.on_conflict_do_nothing(index_elements=["message_id"]).returning(ProfileResultRow.id)).scalar()
            if inserted is None:
                return "duplicate"
            if variant is None:
                self.limiter.warning((device_id, "profile:unknown_variant"), "profile result from %s names variant %r not in request %s", device_id, r.variant_id, r.request_id)
                return "recorded"
            if not device.hardware_class:
                return "recorded"  # nothing to say about a class we do not know
            self._fold(s, device.hardware_class, variant, r, ok, now)
            return "recorded"

    def _fold(self, s, hardware_class: str, variant: RequestedVariant, r, ok: bool, now: datetime) -> None:
        q = select(MeasuredLatencyRow).where(MeasuredLatencyRow.sha256 == variant.sha256, MeasuredLatencyRow.hardware_class == hardware_class)
        row = s.scalar(q.with_for_update())
        if row is None:
            row = MeasuredLatencyRow(sha256=variant.sha256, hardware_class=hardware_class, count=0, error_count=0, simulated=r.simulated, last_error="")
            s.add(row)
        row.variant_id = variant.variant_id
        row.host_p50_ms = variant.host_p50_ms
        row.host_p95_ms = variant.host_p95_ms
        row.updated_at = now
        if not ok:
            row.error_count = (row.error_count or 0) + 1
            row.last_error = r.error or "no latency reported"
            return
        real_figures = row.count and not row.simulated
        row.count = (row.count or 0) + 1
        if r.simulated and real_figures:
            return  # keep the real hardware's figures
        row.p50_ms, row.p95_ms = r.p50_ms, r.p95_ms
        row.load_ms, row.peak_rss_bytes = r.load_ms, r.peak_rss_bytes
        row.simulated = r.simulated
        s.flush()

    # --- queries -------------------------------------------------------------------------------------

    def results(self, request_id: str) -> list[ProfileResultRow]:
        with self.store.session() as s:
            return list(s.scalars(select(ProfileResultRow).where(ProfileResultRow.request_id == request_id).order_by(ProfileResultRow.id)))

    def latency(self, hardware_class: str, sha256: str) -> Measurement | None:
        with self.store.session() as s:
            row = s.get(MeasuredLatencyRow, (sha256, hardware_class))
            return measurement_of(row) if row is not None else None

    def measured(self, hardware_classes: Iterable[str] | None = None) -> MeasuredTable:
        """A snapshot for selection: every measured artifact on the given classes (all when None)."""
        q = select(MeasuredLatencyRow)
        if hardware_classes is not None:
            q = q.where(MeasuredLatencyRow.hardware_class.in_(sorted(set(hardware_classes))))
        with self.store.session() as s:
            rows = list(s.scalars(q))
        return MeasuredTable((r.hardware_class, r.sha256, measurement_of(r)) for r in rows)


def setup_profiling(ctx) -> ProfileResults:
    """Build the results store on a ServiceContext and register it for Event.profile_result."""
    results = ProfileResults(ctx.store, clock=ctx.clock)
    ctx.ingest.event_handlers["profile_result"] = results.handle_event
    return results

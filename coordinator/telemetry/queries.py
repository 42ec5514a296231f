"""Reading telemetry back: the live view, summaries over a time range, raw series, and fleet figures.

Every query selects devices first (a device id or name, a label selector, or all) and only returns rows of
devices that exist, with their current names. Model filters take NAME or NAME:VERSION. Times filter on the
end of a window.

  latest   each selected device's newest report (one row per model version in it), from telemetry_latest:
           O(devices), cheap enough for a live view refreshed every second and for /metrics scrapes.
           `since` hides devices whose newest report is older.
  summary  one row per device and model version merged over since..until (raw windows and rollups; see
           aggregate.py for how each figure merges).
  series   every stored window (raw, then rollups for older times) in since..until, oldest first, at most
           `limit` rows (the newest are kept).

Fleet figures per model version are computed over the rows a query returns (aggregate.fleet).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from coordinator.store.db import Store
from coordinator.store.devices import DeviceRegistry
from coordinator.store.telemetry_tables import TelemetryLatestRow, TelemetryRollupRow, TelemetrySampleRow
from coordinator.telemetry.aggregate import Aggregate, fleet
from coordinator.telemetry.layouts import BucketLayouts
from coordinator.telemetry.records import model_telemetry, telemetry_row, utc
from edgefleet.labels import matches
from edgefleet.v1 import admin_pb2, telemetry_pb2

VIEWS = ("latest", "summary", "series")
DEFAULT_SERIES_LIMIT = 10_000
# Past this many selected devices a device filter goes to Python rather than into an SQL IN list.
_MAX_IN_LIST = 500


class QueryError(ValueError):
    """A query that cannot be answered as asked; the message says why."""


@dataclass(frozen=True)
class TelemetryFilter:
    device: str = ""                       # device id or name
    selector: dict[str, str] | None = None
    model: str = ""                        # NAME or NAME:VERSION
    since: datetime | None = None
    until: datetime | None = None
    view: str = "latest"
    limit: int = 0

    def model_version(self) -> tuple[str, str | None]:
        name, sep, version = self.model.partition(":")
        if sep and not version:
            raise QueryError(f"model {self.model!r}: expected NAME or NAME:VERSION")
        return name, (version if sep else None)


class TelemetryQueries:
    def __init__(self, store: Store, registry: DeviceRegistry, layouts: BucketLayouts):
        self.store = store
        self.registry = registry
        self.layouts = layouts

    # -- public

    def query(self, f: TelemetryFilter) -> tuple[list[admin_pb2.TelemetryRow], list[admin_pb2.FleetModelTelemetry]]:
        if f.view not in VIEWS:
            raise QueryError(f"unknown view {f.view!r}: use one of {', '.join(VIEWS)}")
        if f.since and f.until and utc(f.since) > utc(f.until):
            raise QueryError("since is after until")
        if f.view == "latest" and f.until is not None:
            raise QueryError("the latest view has no end time: use the summary or series view with until")
        names = self._devices(f)
        model, version = f.model_version()
        if f.view == "latest":
            rows = self._latest(names, model, version, f.since)
        elif f.view == "summary":
            rows = self._summary(names, model, version, f.since, f.until)
        else:
            rows = self._series(names, model, version, f.since, f.until, f.limit or DEFAULT_SERIES_LIMIT)
        return rows, fleet(rows)

    def latest_model(self, device_id: str) -> telemetry_pb2.ModelTelemetry | None:
        """The newest ModelTelemetry a device reported (GetDevice's latest_telemetry)."""
        with self.store.session() as s:
            row = s.execute(
                select(TelemetryLatestRow.__table__)
                .where(TelemetryLatestRow.device_id == device_id, TelemetryLatestRow.model != "")
                .order_by(TelemetryLatestRow.window_end.desc())
                .limit(1)
            ).first()
            return model_telemetry(row, self.layouts, s) if row is not None else None

    def live_fleet(self, since: datetime) -> list[admin_pb2.FleetModelTelemetry]:
        """Fleet figures over every device's newest report that ended after `since` (/metrics)."""
        return self.query(TelemetryFilter(since=since))[1]

    # -- devices

    def _devices(self, f: TelemetryFilter) -> dict[str, str]:
        """id -> name of the selected devices (DeviceNotFound for an unknown reference)."""
        if f.device:
            row = self.registry.get(f.device)
            if f.selector and not matches(row.labels or {}, f.selector):
                return {}
            return {row.id: row.name}
        return {r.id: r.name for r in self.registry.list(f.selector or None)}

    # -- views

    def _where(self, table, names: dict[str, str], model: str, version: str | None, since, until) -> list:
        conds = []
        if len(names) <= _MAX_IN_LIST:
            conds.append(table.c.device_id.in_(list(names)))
        if model:
            conds.append(table.c.model == model)
            if version is not None:
                conds.append(table.c.version == version)
        if since is not None:
            conds.append(table.c.window_end >= utc(since))
        if until is not None:
            conds.append(table.c.window_end <= utc(until))
        return conds

    def _latest(self, names: dict[str, str], model: str, version: str | None, since) -> list[admin_pb2.TelemetryRow]:
        if not names:
            return []
        table = TelemetryLatestRow.__table__
        with self.store.session() as s:
            stored = [r for r in s.execute(select(table).where(*self._where(table, names, model, version, since, None))) if r.device_id in names]
            newest: dict[str, Any] = {}
            for r in stored:
                have = newest.get(r.device_id)
                if have is None or (r.window_end, r.received_at) > (have.window_end, have.received_at):
                    newest[r.device_id] = r
            # The rows of each device's newest report: a version replaced by a newer one drops out.
            keep = [r for r in stored if r.message_id == newest[r.device_id].message_id]
            keep.sort(key=lambda r: (names[r.device_id], r.model, r.version, r.variant_id))
            return [telemetry_row(r, names[r.device_id], model_telemetry(r, self.layouts, s), rolled_up=False) for r in keep]

    def _summary(self, names: dict[str, str], model: str, version: str | None, since, until) -> list[admin_pb2.TelemetryRow]:
        if not names:
            return []
        groups: dict[tuple, Aggregate] = {}
        rolled: set[tuple] = set()
        with self.store.session() as s:
            for table, is_rollup in ((TelemetrySampleRow.__table__, False), (TelemetryRollupRow.__table__, True)):
                for r in s.execute(select(table).where(*self._where(table, names, model, version, since, until))):
                    if r.device_id not in names:
                        continue
                    key = (r.device_id, r.model, r.version, r.variant_id)
                    agg = groups.get(key)
                    if agg is None:
                        agg = groups[key] = Aggregate(*key)
                    agg.add(r, model_telemetry(r, self.layouts, s))
                    if is_rollup:
                        rolled.add(key)
        out = []
        for key in sorted(groups, key=lambda k: (names[k[0]], k[1], k[2], k[3])):
            agg = groups[key]
            out.append(telemetry_row(agg, names[key[0]], agg.model_telemetry(), rolled_up=key in rolled))
        return out

    def _series(self, names: dict[str, str], model: str, version: str | None, since, until, limit: int) -> list[admin_pb2.TelemetryRow]:
        if not names:
            return []
        found: list[tuple[Any, bool]] = []
        with self.store.session() as s:
            for table, is_rollup in ((TelemetrySampleRow.__table__, False), (TelemetryRollupRow.__table__, True)):
                q = select(table).where(*self._where(table, names, model, version, since, until)).order_by(table.c.window_end.desc()).limit(limit)
                found.extend((r, is_rollup) for r in s.execute(q) if r.device_id in names)
            found.sort(key=lambda item: utc(item[0].window_end), reverse=True)
            found = found[:limit]
            found.reverse()
            return [telemetry_row(r, names[r.device_id], model_telemetry(r, self.layouts, s), rolled_up=rolled) for r, rolled in found]

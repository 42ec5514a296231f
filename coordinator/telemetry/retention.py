"""Retention and downsampling of telemetry: how long each grain is kept, and how raw windows become rollups.

Policy (config section [telemetry], all configurable; docs/telemetry.md has the operator's view):

  raw windows      kept `raw_retention_h` (48 h) after their window ended, at full resolution (one row per
                   report, ~10 s). Older ones are rolled up and deleted.
  rollups          `rollup_interval_s` (300 s) buckets per device and model version, aligned to the epoch
                   (a window belongs to the bucket its end falls in); kept `rollup_retention_h` (90 days).
                   rollup_interval_s = 0 keeps no rollups: raw windows past retention are just deleted.
  latest           the newest window per device and model version is kept as long as the device exists.
  removed devices  their raw rows and rollups leave with retention (queries never show them); their
                   latest rows are deleted on the next run.

How figures merge (sums, merged histograms, weighted means) is in aggregate.py. A report that arrives late
(an outbox drained after days offline) and is already past raw retention is merged into its bucket's
existing rollup on the next run, so counts stay exact; reports older than the longest retention are
refused at ingest.

The job runs in the telemetry writer's thread every `maintenance_interval_s` (one writer for SQLite) with
the injected clock's `now`; each run handles at most `max_rows` raw rows and says whether more remain, so a
large backlog is worked off in slices between write batches. With PostgreSQL and several coordinator
replicas, raw rows are claimed with FOR UPDATE SKIP LOCKED and rollup rows locked FOR UPDATE, so two
replicas never merge the same window twice; a replica that loses an insert race rolls back and retries on
its next run.
"""
from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from coordinator.config import TelemetryConfig
from coordinator.store.db import Store
from coordinator.store.schema import DeviceRow
from coordinator.store.telemetry_tables import FIGURE_COLUMNS, TelemetryLatestRow, TelemetryRollupRow, TelemetrySampleRow
from coordinator.telemetry.aggregate import Aggregate
from coordinator.telemetry.layouts import BucketLayouts
from coordinator.telemetry.records import model_telemetry, utc

log = logging.getLogger(__name__)

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


@dataclass
class RetentionResult:
    rolled_up: int = 0          # raw rows merged into rollups
    raw_deleted: int = 0        # raw rows deleted (rolled up or not)
    rollups_deleted: int = 0
    latest_deleted: int = 0     # latest rows of removed devices
    more: bool = False          # raw rows past retention remain: run again soon


def bucket_start(end: datetime, interval_s: int) -> datetime:
    seconds = (utc(end) - _EPOCH).total_seconds()
    return _EPOCH + timedelta(seconds=(seconds // interval_s) * interval_s)


def max_age_s(cfg: TelemetryConfig) -> float:
    """The oldest report worth storing: anything older would be deleted by the next run."""
    hours = max(cfg.raw_retention_h, cfg.rollup_retention_h) if cfg.rollup_interval_s else cfg.raw_retention_h
    return hours * 3600


class RetentionJob:
    def __init__(self, store: Store, cfg: TelemetryConfig, layouts: BucketLayouts, *, chunk_rows: int = 2000, max_rows: int = 20_000):
        self.store = store
        self.cfg = cfg
        self.layouts = layouts
        self.chunk_rows = chunk_rows
        self.max_rows = max_rows

    def __call__(self, now: datetime) -> bool:
        """The writer's maintenance hook: True when more work remains."""
        result = self.run(now)
        if result.raw_deleted or result.rollups_deleted or result.latest_deleted:
            log.info(
                "telemetry retention: %d raw windows rolled up, %d raw deleted, %d rollups deleted, %d latest rows of removed devices deleted",
                result.rolled_up, result.raw_deleted, result.rollups_deleted, result.latest_deleted,
            )
        return result.more

    def run(self, now: datetime) -> RetentionResult:
        now = utc(now)
        result = RetentionResult()
        raw_cutoff = now - timedelta(hours=self.cfg.raw_retention_h)
        rollup_cutoff = now - timedelta(hours=self.cfg.rollup_retention_h)
        with self.store.session() as s:
            known = set(s.scalars(select(DeviceRow.id)))
        while result.raw_deleted < self.max_rows:
            done = self._roll_chunk(raw_cutoff, rollup_cutoff, known, result)
            if done < self.chunk_rows:
                break
        else:
            result.more = True
        with self.store.session() as s:
            res = s.execute(delete(TelemetryRollupRow).where(TelemetryRollupRow.window_end < rollup_cutoff))
            result.rollups_deleted = res.rowcount or 0
            stale = [d for d in s.scalars(select(TelemetryLatestRow.device_id).distinct()) if d not in known]
            if stale:
                res = s.execute(delete(TelemetryLatestRow).where(TelemetryLatestRow.device_id.in_(stale)))
                result.latest_deleted = res.rowcount or 0
        return result

    def _roll_chunk(self, raw_cutoff: datetime, rollup_cutoff: datetime, known: set[str], result: RetentionResult) -> int:
        interval = self.cfg.rollup_interval_s
        try:
            with self.store.session() as s:
                q = (
                    select(TelemetrySampleRow.__table__)
                    .where(TelemetrySampleRow.window_end < raw_cutoff)
                    .order_by(TelemetrySampleRow.id)
                    .limit(self.chunk_rows)
                    .with_for_update(skip_locked=True)
                )
                rows = s.execute(q).all()
                if not rows:
                    return 0
                if interval:
                    groups: dict[tuple, list] = defaultdict(list)
                    for r in rows:
                        if r.device_id not in known or utc(r.window_end) < rollup_cutoff:
                            continue  # a removed device, or already past rollup retention: just delete
                        groups[(r.device_id, r.model, r.version, r.variant_id, bucket_start(r.window_end, interval))].append(r)
                    for key, members in groups.items():
                        self._merge_into_rollup(s, key, members, interval)
                        result.rolled_up += len(members)
                ids = [r.id for r in rows]
                s.execute(delete(TelemetrySampleRow).where(TelemetrySampleRow.id.in_(ids)))
                result.raw_deleted += len(ids)
                return len(rows)
        except IntegrityError:
            # Another replica created one of these rollups meanwhile: this chunk rolled back; next run merges into it.
            log.info("telemetry rollup raced another coordinator; retrying on the next run")
            return 0

    def _merge_into_rollup(self, s, key: tuple, members: list, interval: int) -> None:
        device_id, model, version, variant_id, start = key
        existing = s.scalar(
            select(TelemetryRollupRow)
            .where(
                TelemetryRollupRow.device_id == device_id,
                TelemetryRollupRow.model == model,
                TelemetryRollupRow.version == version,
                TelemetryRollupRow.variant_id == variant_id,
                TelemetryRollupRow.bucket_start == start,
            )
            .with_for_update()
        )
        agg = Aggregate(device_id, model, version, variant_id)
        if existing is not None:
            agg.add(existing, model_telemetry(existing, self.layouts, s))
        for r in members:
            agg.add(r, model_telemetry(r, self.layouts, s))
        columns = agg.columns(self.layouts)
        self.layouts.store_new(s, [columns["hist_layout"]])
        if existing is None:
            s.add(TelemetryRollupRow(bucket_start=start, bucket_s=interval, **columns))
        else:
            for name in FIGURE_COLUMNS:
                setattr(existing, name, columns[name])
        s.flush()

"""Fleet telemetry on the coordinator: ingest, storage, retention, queries and /metrics (docs/telemetry.md).

  validation.py  what a report must look like (bad ones are dropped and counted at ingest)
  intake.py      the ingest handler: known device? valid? queue it
  writer.py      the batch writer thread (idempotent by message id) and its maintenance slot
  records.py     reports as rows, rows as admin API messages
  dialects.py    multi-row INSERT ... ON CONFLICT as driver SQL for SQLite and PostgreSQL
  histograms.py  percentiles from bucket counts (as the agent computes them), packed bucket layouts
  layouts.py     bucket layouts stored once and named by a digest
  aggregate.py   how windows and devices merge (sums, merged histograms, weighted means)
  retention.py   the retention and downsampling policy and the job that applies it
  queries.py     latest / summary / series views and fleet figures
  collector.py   per-model-version fleet gauges for Prometheus
  service.py     TelemetryService: all of the above behind one constructor
"""

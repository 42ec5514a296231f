"""What the agent measures about itself and its models, aggregated for the wire (never raw inputs).

    histogram   LatencyHistogram: fixed log buckets, percentiles from the buckets
    collector   TelemetryCollector: one Telemetry per window and per model version; the trial's figures
    accuracy    top-1 and confidence, online accuracy from Feedback, golden-set schedule
    drift       PSI per feature against the manifest's CalibrationStats
    power       rapl | battery | hwmon | estimate, always labelled
    system      agent CPU % and RSS, temperature, free memory and storage
"""

from __future__ import annotations

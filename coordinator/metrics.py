"""Prometheus metrics of the coordinator, on a registry of its own so tests can run several coordinators.

Figures that live in the store (devices by state, rollouts by state, fleet telemetry) are read when
Prometheus scrapes, by a collector registered on `CoordinatorMetrics.registry`, so they are never stale:

    ctx.metrics.registry.register(StateCountCollector(
        "edgefleet_rollouts_by_state", "Rollouts by state", store_fn_returning_a_dict, ("running", "paused", ...)))

A collector's collect() runs on the scrape thread: keep it to one cheap query, and let it yield nothing
rather than raise when the store blinks.
"""
from __future__ import annotations

from typing import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class CoordinatorMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.messages = Counter(
            "edgefleet_mqtt_messages_total", "MQTT messages ingested, by topic kind", ["kind"], registry=self.registry
        )
        self.dropped = Counter(
            "edgefleet_mqtt_dropped_total",
            "MQTT messages dropped, by reason (malformed, unknown_device, device_mismatch, wrong_body, error)",
            ["reason"],
            registry=self.registry,
        )
        self.broker_connected = Gauge("edgefleet_broker_connected", "1 while the coordinator is connected to the broker", registry=self.registry)
        # Telemetry ingest (coordinator/telemetry/writer.py).
        self.telemetry_rows = Counter(
            "edgefleet_telemetry_rows_written_total", "Telemetry rows stored (one per report and model version)", registry=self.registry
        )
        self.telemetry_duplicates = Counter(
            "edgefleet_telemetry_duplicates_total", "Telemetry rows not stored twice: QoS 1 redeliveries of a stored report", registry=self.registry
        )
        self.telemetry_batch_seconds = Histogram(
            "edgefleet_telemetry_batch_seconds",
            "Time to write one batch of telemetry to the store",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=self.registry,
        )
        self.telemetry_queue = Gauge("edgefleet_telemetry_queue_depth", "Telemetry reports waiting for the writer", registry=self.registry)
        # Counters for rate(): only reports stored for the first time count, so redeliveries never inflate them.
        self.model_requests = Counter(
            "edgefleet_model_requests_total", "Inference requests reported by devices, per model version", ["model", "version"], registry=self.registry
        )
        self.model_errors = Counter(
            "edgefleet_model_errors_total", "Failed inference requests reported by devices, per model version", ["model", "version"], registry=self.registry
        )


class DeviceStateCollector:
    """Counts devices by state when Prometheus scrapes, so the gauge is never stale."""

    def __init__(self, count_by_state):
        self._count = count_by_state

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily

        fam = GaugeMetricFamily("edgefleet_devices_by_state", "Registered devices by state", labels=["state"])
        try:
            counts = self._count()
        except Exception:  # noqa: BLE001 - a scrape must not fail because the store blinked
            counts = {}
        for state in ("registered", "online", "offline", "stopped"):
            fam.add_metric([state], counts.get(state, 0))
        yield fam


class StateCountCollector:
    """A gauge of things counted by state, read from the store on every scrape (rollouts, jobs...).

    `count` returns {state: n}; every state in `states` is exported (0 when absent) so that dashboards
    see a series disappear to 0 rather than go stale; states `count` reports beyond them are exported too.
    """

    def __init__(self, name: str, documentation: str, count: Callable[[], dict[str, int]], states: Iterable[str] = (), *, label: str = "state"):
        self.name, self.documentation, self._count = name, documentation, count
        self.states, self.label = tuple(states), label

    def describe(self):
        return []  # no describe: registering never triggers a query

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily

        fam = GaugeMetricFamily(self.name, self.documentation, labels=[self.label])
        try:
            counts = dict(self._count())
        except Exception:  # noqa: BLE001 - a scrape must not fail because the store blinked
            counts = {}
        for state in dict.fromkeys((*self.states, *sorted(counts))):
            fam.add_metric([state], counts.get(state, 0))
        yield fam

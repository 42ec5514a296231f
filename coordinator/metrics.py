"""Prometheus metrics of the coordinator, on a registry of its own so tests can run several coordinators."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


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

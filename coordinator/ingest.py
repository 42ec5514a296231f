"""What the coordinator does with each message an agent publishes: decode, check, record.

Bad input never stops ingest: a payload that is not an envelope, an envelope for another device, or a
message from a device the registry does not know is dropped, counted in a metric, and logged at most
once per device and reason per minute.
"""
from __future__ import annotations

import logging
import time
from typing import Callable

from coordinator.metrics import CoordinatorMetrics
from coordinator.store.devices import DeviceRegistry
from edgefleet import envelope, topics
from edgefleet.v1 import device_pb2

log = logging.getLogger(__name__)

STATE_NAMES = {
    device_pb2.DEVICE_STATE_ONLINE: "online",
    device_pb2.DEVICE_STATE_OFFLINE: "offline",
    device_pb2.DEVICE_STATE_STOPPED: "stopped",
}
EXPECTED_BODY = {
    topics.STATUS: "status",
    topics.HELLO: "hello",
    topics.EVENT: "event",
    topics.TELEMETRY: "telemetry",
    topics.BLOB_REQ: "blob_request",
}


class RateLimitedLog:
    """Log a warning at most once per key per period."""

    def __init__(self, period_s: float = 60.0, clock: Callable[[], float] = time.monotonic):
        self.period_s = period_s
        self.clock = clock
        self._last: dict[tuple, float] = {}

    def warning(self, key: tuple, msg: str, *args) -> bool:
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last < self.period_s:
            return False
        self._last[key] = now
        log.warning(msg, *args)
        return True


class Ingest:
    def __init__(self, registry: DeviceRegistry, metrics: CoordinatorMetrics, *, log_limiter: RateLimitedLog | None = None):
        self.registry = registry
        self.metrics = metrics
        self.limiter = log_limiter or RateLimitedLog()
        # Subsystems register here by topic kind (telemetry, blob/req) and, for events, by event kind
        # (install, profile_result, rejected, notice). A handler returns False for an unknown device, a
        # string (its own drop reason) when it dropped the message itself, True otherwise.
        # QoS 1 may deliver twice: handlers must be idempotent (by env.message_id where it matters).
        self.handlers: dict[str, Callable] = {topics.STATUS: self._on_status, topics.HELLO: self._on_hello, topics.EVENT: self._on_event}
        self.event_handlers: dict[str, Callable] = {}
        # Handlers that take the message undecoded, (topic, payload), and answer for it entirely: telemetry in
        # process mode forwards the payload to its own process, which decodes, checks and counts it there.
        self.raw_handlers: dict[str, Callable[[str, bytes], str]] = {}
        self._counters: dict[str, object] = {}

    def take(self, topic: str, payload: bytes) -> bool:
        """The link's fast path, on paho's thread: True when a raw handler took the message (it only queues);
        False for everything else, which the link's worker hands to handle()."""
        if not payload:
            return False
        # A suffix test, not topics.parse (~2 us on paho's thread): the raw handler's own Ingest checks the
        # whole topic (a malformed one is dropped and counted there).
        for kind, raw in self.raw_handlers.items():
            if topic.endswith(kind) and len(topic) > len(kind) and topic[-len(kind) - 1] == "/":
                raw(topic, payload)
                return True
        return False

    def handle(self, topic: str, payload: bytes) -> str:
        """Process one message; returns what happened (ok or the drop reason) for tests and metrics."""
        parsed = topics.parse(topic)
        if parsed is None:
            return self._drop("bad_topic", topic, "message on unexpected topic %s", topic)
        if not payload:
            return "cleared"  # a retained message being deleted
        raw = self.raw_handlers.get(parsed.kind)
        if raw is not None:
            return raw(topic, payload)
        try:
            env = envelope.decode(payload, expect=EXPECTED_BODY.get(parsed.kind))
        except envelope.BadPayload as exc:
            return self._drop("malformed", parsed.device_id, "dropped malformed %s from %s: %s", parsed.kind, parsed.device_id, exc)
        if env.device_id != parsed.device_id:
            return self._drop(
                "device_mismatch", parsed.device_id, "dropped %s on %s's topic claiming device %r", parsed.kind, parsed.device_id, env.device_id
            )
        handler = self.handlers.get(parsed.kind)
        if handler is None:
            return self._drop("unhandled", parsed.device_id, "no handler yet for %s messages (from %s)", parsed.kind, parsed.device_id)
        try:
            known = handler(env)
        except Exception:  # noqa: BLE001 - one bad message must not stop ingest
            log.exception("error handling %s from %s", parsed.kind, parsed.device_id)
            self.metrics.dropped.labels("error").inc()
            return "error"
        if not known:
            return self._drop("unknown_device", parsed.device_id, "dropped %s from unknown device %s", parsed.kind, parsed.device_id)
        if isinstance(known, str):
            return known  # the handler dropped it itself (counted and logged there)
        counter = self._counters.get(parsed.kind)
        if counter is None:
            counter = self._counters[parsed.kind] = self.metrics.messages.labels(parsed.kind)  # labels() costs ~2 us
        counter.inc()
        return "ok"

    def _drop(self, reason: str, device: str, msg: str, *args) -> str:
        self.metrics.dropped.labels(reason).inc()
        self.limiter.warning((device, reason), msg, *args)
        return reason

    def _on_status(self, env) -> bool:
        state = STATE_NAMES.get(env.status.state)
        if state is None:
            raise ValueError(f"status with state {env.status.state}")
        return self.registry.apply_status(env.device_id, state, env.status.reason)

    def _on_event(self, env) -> bool:
        kind = env.event.WhichOneof("kind")
        handler = self.event_handlers.get(kind)
        if handler is None:
            if self.registry.find(env.device_id) is None:
                return False
            self.limiter.warning((env.device_id, "event:" + str(kind)), "no handler for %s events (from %s)", kind, env.device_id)
            return True
        return handler(env)

    def _on_hello(self, env) -> bool:
        hello = env.hello
        active = hello.active_model.SerializeToString() if hello.HasField("active_model") else None
        return self.registry.apply_hello(env.device_id, hello.hardware, hello.agent_version, active, hello.last_manifest_sequence)

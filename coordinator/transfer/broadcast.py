"""Broadcast transfers: one blob published once per chunk on ef/v1/blobs/{transfer_id}, fanned out by the broker.

The firmware-over-the-air multicast pattern: a session, then unicast repair.

    open()        the rollout engine opens one transfer per (wave batch, blob) before it sends the wave's
                  deploys; each device's Deploy command carries the transfer id and key (its own topic)
    ready         a device subscribes to the broadcast topic, waits for the SUBACK, then says so with a
                  BlobRequest{transfer_id, ready}
    send          once every expected device is ready, or `gather_s` after the first one was, every chunk
                  is read, sealed (AES-256-GCM, blobcrypt) and published once at QoS 1, at most
                  `max_inflight_bytes` unacknowledged by the broker; then a BlobChunk{end}
    repair        after `end` (or when nothing arrives for its chunk timeout) a device asks for whatever it
                  still misses by unicast, as before (BlobServer): joined late, reconnected, a bad chunk

A ready request for a transfer this coordinator does not know (finished, never opened, opened by
another replica, or lost in a restart) is answered at once with `end` on the device's own topic, so
the device falls back to unicast without waiting. Nothing here is persisted: a restart only costs
the broadcast, never a device's download. Time is `clock` (monotonic seconds), injectable; with
`threaded=False` nothing runs by itself and tests call `run_due()`.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Callable, Iterable

from edgefleet import blobcrypt, envelope, topics
from edgefleet.v1 import transfer_pb2

log = logging.getLogger(__name__)

GATHERING, SENDING = "gathering", "sending"


@dataclass
class Transfer:
    transfer_id: str
    sha256: str
    chunk_size: int
    key: bytes
    expected: set[str]
    opened_at: float
    ready: set[str] = field(default_factory=set)
    first_ready_at: float | None = None
    state: str = GATHERING

    def offer(self) -> transfer_pb2.BlobBroadcast:
        return transfer_pb2.BlobBroadcast(sha256=self.sha256, transfer_id=self.transfer_id, key=self.key, chunk_size=self.chunk_size)


def acked(info) -> bool:
    """Whether the broker acknowledged a publish; a failed publish counts as done (nothing to wait for)."""
    if info is None or not hasattr(info, "is_published"):
        return True
    try:
        return bool(info.is_published())
    except (ValueError, RuntimeError):
        return True


class Broadcaster:
    def __init__(
        self,
        read: Callable[[str, int, int], tuple[bytes, int]],
        publish: Callable[..., object],
        *,
        clock: Callable[[], float] = time.monotonic,
        gather_s: float = 2.0,
        idle_s: float = 60.0,
        max_inflight_bytes: int = 2 * 1024 * 1024,
        ack_timeout_s: float = 10.0,
        threaded: bool = True,
    ):
        """`read(sha256, offset, length)` -> (data, total size) (BlobServer's OpenFiles.read); `publish(topic,
        payload, qos=1)` -> MQTTMessageInfo. gather_s: how long after the first ready device the broadcast
        waits for the others; idle_s: a transfer no device got ready for is dropped after this."""
        if gather_s < 0 or idle_s <= 0 or max_inflight_bytes <= 0:
            raise ValueError("gather_s must be >= 0, idle_s and max_inflight_bytes > 0")
        self.read = read
        self.publish = publish
        self.clock = clock
        self.gather_s = gather_s
        self.idle_s = idle_s
        self.max_inflight_bytes = max_inflight_bytes
        self.ack_timeout_s = ack_timeout_s
        self.stats: Counter = Counter()  # transfers, broadcasts, chunks, bytes, ends, unknown, expired, aborted
        self._transfers: dict[str, Transfer] = {}
        self._cond = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None
        self._threaded = threaded

    # --- the engine's side -------------------------------------------------------------------------

    def open(self, sha256: str, chunk_size: int, devices: Iterable[str]) -> transfer_pb2.BlobBroadcast:
        """A new transfer of one blob for these devices; its offer goes into each one's Deploy command."""
        transfer_id, key = blobcrypt.new_transfer()
        t = Transfer(transfer_id, sha256, chunk_size, key, set(devices), self.clock())
        with self._cond:
            if self._closed:
                raise RuntimeError("the broadcaster is closed")
            self._transfers[transfer_id] = t
            self.stats["transfers"] += 1
            self._start_thread()
            self._cond.notify_all()
        return t.offer()

    # --- the ingest side (quick, never blocks on the network) --------------------------------------

    def on_ready(self, device_id: str, req: transfer_pb2.BlobRequest) -> None:
        """A device is subscribed to the transfer's topic (the caller checked its grant for req.sha256)."""
        with self._cond:
            t = self._transfers.get(req.transfer_id)
            known = t is not None and t.sha256 == req.sha256 and device_id in t.expected
            if known and t.state == GATHERING:
                t.ready.add(device_id)
                if t.first_ready_at is None:
                    t.first_ready_at = self.clock()
                self._cond.notify_all()
                return
            if known:
                return  # sending: it hears the rest on the topic and repairs the start by unicast after `end`
            self.stats["unknown"] += 1
        # Unknown or finished: no broadcast for this device, it fetches by unicast right away.
        self._send_end_to(device_id, req.sha256, req.transfer_id)

    def on_unicast(self, device_id: str, sha256: str) -> None:
        """A device asks for chunks by unicast: it does not wait for a broadcast that has not started."""
        with self._cond:
            for t in self._transfers.values():
                if t.state == GATHERING and t.sha256 == sha256 and device_id in t.expected and device_id not in t.ready:
                    t.expected.discard(device_id)
                    self._cond.notify_all()

    # --- sending -----------------------------------------------------------------------------------

    def _due(self, now: float) -> tuple[Transfer | None, float | None]:
        """(a transfer to send now, else None; seconds until the next one may be due, None: nothing waits)."""
        wait = None
        for tid, t in list(self._transfers.items()):
            if t.state != GATHERING:
                continue
            if t.ready:
                if t.ready >= t.expected or now - t.first_ready_at >= self.gather_s:
                    return t, 0.0
                left = self.gather_s - (now - t.first_ready_at)
            else:
                if not t.expected or now - t.opened_at >= self.idle_s:
                    del self._transfers[tid]
                    self.stats["expired"] += 1
                    continue
                left = self.idle_s - (now - t.opened_at)
            wait = left if wait is None else min(wait, left)
        return None, wait

    def run_due(self) -> int:
        """Send every transfer that is due now; returns how many were sent (the thread's loop, and tests)."""
        sent = 0
        while True:
            with self._cond:
                t, _ = self._due(self.clock())
                if t is None:
                    return sent
                t.state = SENDING
            try:
                self._broadcast(t)
            except Exception:  # noqa: BLE001 - the devices time out and repair by unicast
                log.exception("broadcast of %s (transfer %s) failed", t.sha256[:12], t.transfer_id)
                self.stats["aborted"] += 1
            finally:
                with self._cond:
                    self._transfers.pop(t.transfer_id, None)
            sent += 1

    def _broadcast(self, t: Transfer) -> None:
        cipher = blobcrypt.ChunkCipher(t.key, t.transfer_id, t.sha256)
        topic = topics.broadcast(t.transfer_id)
        inflight: deque = deque()
        inflight_bytes = 0
        offset, index, total = 0, 0, None
        log.info("broadcasting %s on %s to %d ready device(s) of %d", t.sha256[:12], topic, len(t.ready), len(t.expected))
        while total is None or offset < total:
            if self._closed:
                self.stats["aborted"] += 1
                return
            data, total = self.read(t.sha256, offset, t.chunk_size)
            while inflight and (inflight_bytes + len(data) > self.max_inflight_bytes or acked(inflight[0][0])):
                info, n = inflight.popleft()
                if not acked(info):
                    try:
                        info.wait_for_publish(self.ack_timeout_s)
                    except (ValueError, RuntimeError):
                        pass
                inflight_bytes -= n
            chunk = transfer_pb2.BlobChunk(sha256=t.sha256, offset=offset, data=cipher.seal(index, data), total_size=total,
                                           transfer_id=t.transfer_id)
            info = self.publish(topic, envelope.encode("", blob_chunk=chunk), qos=1)
            if int(getattr(info, "rc", 0) or 0) != 0:
                self.stats["aborted"] += 1
                log.warning("broadcast of %s stopped at offset %d: the link is down (devices repair by unicast)", t.sha256[:12], offset)
                return
            inflight.append((info, len(data)))
            inflight_bytes += len(data)
            self.stats["chunks"] += 1
            self.stats["bytes"] += len(data)
            offset += len(data)
            index += 1
            if not data:
                break  # an empty blob: one empty chunk
        end = transfer_pb2.BlobChunk(sha256=t.sha256, total_size=total or 0, transfer_id=t.transfer_id, end=True)
        self.publish(topic, envelope.encode("", blob_chunk=end), qos=1)
        self.stats["broadcasts"] += 1
        self.stats["ends"] += 1

    def _send_end_to(self, device_id: str, sha256: str, transfer_id: str) -> None:
        end = transfer_pb2.BlobChunk(sha256=sha256, transfer_id=transfer_id, end=True)
        self.publish(topics.blob(device_id), envelope.encode(device_id, blob_chunk=end), qos=1)
        self.stats["ends"] += 1

    # --- lifecycle ---------------------------------------------------------------------------------

    def _start_thread(self) -> None:
        # Called with the lock held.
        if self._threaded and self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="blob-broadcast", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        while True:
            with self._cond:
                if self._closed:
                    return
                t, wait = self._due(self.clock())
                if t is None:
                    self._cond.wait(wait)
                    continue
            self.run_due()

    def pending(self) -> int:
        """Transfers opened and not yet sent or dropped."""
        with self._cond:
            return len(self._transfers)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._transfers.clear()
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(10)

"""The blob server: answers chunk requests (ef/v1/dev/{id}/blob/req) with chunks (ef/v1/dev/{id}/blob).

Only blobs granted to the asking device are served (a manifest issued to it named them); anything
else gets one chunk with `error` and no data, which says the same for an unknown blob and another
device's blob so that a device learns nothing about blobs that are not its own.

Flow control: at most `max_chunks_per_request` offsets of a request are taken (the agent asks again
for what is still missing), at most `max_pending_chunks` wait per device, and at most
`max_inflight_bytes` per device are published and not yet acknowledged by the broker (PUBACK), so a
slow or disconnected receiver cannot make the coordinator hold a whole model in memory. Re-requesting
an offset that is still waiting does not queue it twice.

`handle()` runs on the ingest thread and only queues: reads and publishes happen on a small worker
pool, one device at a time per worker, a few chunks per turn so that devices take turns.

Broadcast (broadcast.py): a request with `ready` says the device is subscribed to a broadcast transfer;
it goes to the Broadcaster after the same grant check. Unicast stays the repair path for every chunk a
device did not get from the broadcast.
"""
from __future__ import annotations

import logging
import os
import re
import threading
from collections import Counter, OrderedDict, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from coordinator.transfer.broadcast import Broadcaster, acked
from coordinator.transfer.grants import BlobGrants
from coordinator.transfer.manifests import DEFAULT_CHUNK_SIZE, MAX_CHUNK_SIZE
from edgefleet import envelope, topics
from edgefleet.v1 import transfer_pb2

log = logging.getLogger(__name__)

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
NOT_GRANTED = "unknown blob, or not granted to this device"
_GRANT_CACHE = 4096  # (device, sha256) pairs known to be granted: a few waves of a large fleet


class BlobMissing(LookupError):
    pass


class OpenFiles:
    """A small LRU of open artifact files. os.pread needs no seek, so workers share one descriptor;
    the lock covers lookup and read so that an eviction never closes a descriptor mid-read."""

    def __init__(self, resolve: Callable[[str], Path | None], capacity: int = 16):
        if capacity < 1:
            raise ValueError("open file cache capacity must be >= 1")
        self.resolve = resolve
        self.capacity = capacity
        self._files: OrderedDict[str, tuple[int, int]] = OrderedDict()  # sha256 -> (fd, size)
        self._lock = threading.Lock()

    def read(self, sha256: str, offset: int, length: int) -> tuple[bytes, int]:
        """(data, total size); data is shorter than `length` at the end of the blob."""
        with self._lock:
            fd, size = self._open(sha256)
            if offset >= size and not (offset == 0 and size == 0):
                raise ValueError(f"offset {offset} is past the end of the {size}-byte blob")
            return os.pread(fd, min(length, size - offset), offset), size

    def _open(self, sha256: str) -> tuple[int, int]:
        entry = self._files.get(sha256)
        if entry is not None:
            self._files.move_to_end(sha256)
            return entry
        path = self.resolve(sha256)
        if path is None:
            raise BlobMissing(f"blob {sha256} is granted but not stored on the coordinator")
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            raise BlobMissing(f"blob {sha256} is granted but its file {path} is gone") from None
        entry = (fd, os.fstat(fd).st_size)
        self._files[sha256] = entry
        while len(self._files) > self.capacity:
            _, (old_fd, _) = self._files.popitem(last=False)
            os.close(old_fd)
        return entry

    def close(self) -> None:
        with self._lock:
            for fd, _ in self._files.values():
                os.close(fd)
            self._files.clear()


@dataclass
class _DeviceQueue:
    pending: OrderedDict = field(default_factory=OrderedDict)  # (sha256, offset, chunk_size) -> None
    inflight: deque = field(default_factory=deque)  # (MQTTMessageInfo, bytes); touched only by the serving worker
    inflight_bytes: int = 0
    scheduled: bool = False  # a worker owns this device now


class BlobServer:
    def __init__(
        self,
        grants: BlobGrants,
        resolve: Callable[[str], Path | None],
        publish: Callable[..., object],
        *,
        is_known: Callable[[str], bool] | None = None,
        max_chunks_per_request: int = 32,
        max_pending_chunks: int = 256,
        max_inflight_bytes: int = 1024 * 1024,
        max_chunk_size: int = MAX_CHUNK_SIZE,
        chunks_per_turn: int = 8,
        workers: int = 2,
        open_files: int = 16,
        ack_timeout_s: float = 10.0,
        broadcast: dict | None = None,
    ):
        """`resolve(sha256)` -> the artifact's path or None; `publish(topic, payload, qos=1)` -> MQTTMessageInfo
        (CoordinatorLink.publish); `is_known(device_id)` tells ingest whether an unentitled asker exists.
        `broadcast`: Broadcaster options (gather_s, max_inflight_bytes, clock, threaded...)."""
        self.grants = grants
        self.publish = publish
        self.is_known = is_known or (lambda device_id: True)
        self.max_chunks_per_request = max_chunks_per_request
        self.max_pending_chunks = max_pending_chunks
        self.max_inflight_bytes = max_inflight_bytes
        self.max_chunk_size = max_chunk_size
        self.chunks_per_turn = chunks_per_turn
        self.ack_timeout_s = ack_timeout_s
        self.files = OpenFiles(resolve, open_files)
        self.stats: Counter = Counter()  # chunks, bytes, errors, dropped, denied
        self._queues: dict[str, _DeviceQueue] = {}
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._granted: OrderedDict[tuple[str, str], None] = OrderedDict()  # positive cache: grants are never taken back mid-transfer
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="blob-server")
        self._closed = False
        self.broadcaster = Broadcaster(self.files.read, publish, **(broadcast or {}))

    def open_broadcast(self, sha256: str, chunk_size: int, devices) -> transfer_pb2.BlobBroadcast:
        """A broadcast transfer of one blob to these devices (the rollout engine, before it sends a wave).

        Each device must hold a committed grant for the blob (the engine opens a broadcast only for devices
        whose manifests it issued): they go into the grant cache here, so the wave's ready and repair
        requests, which all arrive at once on the ingest thread, need no grant query each."""
        devices = list(devices)
        with self._lock:
            for device_id in devices:
                self._remember_grant((device_id, sha256))
        return self.broadcaster.open(sha256, chunk_size, devices)

    # --- ingest side (quick) ---------------------------------------------------------------------

    def handle(self, env) -> bool:
        """Ingest handler for topics.BLOB_REQ; False for an unknown device."""
        device_id, req = env.device_id, env.blob_request
        sha = req.sha256
        first = req.offsets[0] if req.offsets else 0
        if not _SHA256.match(sha):
            if not self.is_known(device_id):
                return False
            self._send_error(device_id, sha, first, f"malformed sha256 {sha[:80]!r}: expected 64 lowercase hex digits")
            return True
        if not self._allowed(device_id, sha):
            if not self.is_known(device_id):
                return False
            self._count("denied")
            self._send_error(device_id, sha, first, NOT_GRANTED)
            return True
        if req.ready:
            self.broadcaster.on_ready(device_id, req)
            return True
        if req.offsets:
            self.broadcaster.on_unicast(device_id, sha)
        size = req.chunk_size or DEFAULT_CHUNK_SIZE
        if size > self.max_chunk_size:
            self._send_error(device_id, sha, first, f"chunk_size {size} is over the {self.max_chunk_size}-byte limit")
            return True
        offsets = list(dict.fromkeys(req.offsets))
        if len(offsets) > self.max_chunks_per_request:
            self._count("dropped", len(offsets) - self.max_chunks_per_request)
            offsets = offsets[: self.max_chunks_per_request]
        with self._lock:
            if self._closed:
                return True
            q = self._queues.setdefault(device_id, _DeviceQueue())
            for off in offsets:
                key = (sha, off, size)
                if key in q.pending:
                    continue
                if len(q.pending) >= self.max_pending_chunks:
                    self.stats["dropped"] += 1  # the agent asks again for what never came
                    continue
                q.pending[key] = None
            if q.pending and not q.scheduled:
                q.scheduled = True
                self._pool.submit(self._serve, device_id)
        return True

    def _allowed(self, device_id: str, sha: str) -> bool:
        key = (device_id, sha)
        with self._lock:
            if key in self._granted:
                self._granted.move_to_end(key)
                return True
        if not self.grants.allowed(device_id, sha):
            return False
        with self._lock:
            self._remember_grant(key)
        return True

    def _remember_grant(self, key: tuple[str, str]) -> None:
        # Called with the lock held.
        self._granted[key] = None
        self._granted.move_to_end(key)
        while len(self._granted) > _GRANT_CACHE:
            self._granted.popitem(last=False)

    # --- workers -----------------------------------------------------------------------------------

    def _serve(self, device_id: str) -> None:
        q = self._queues[device_id]
        try:
            for _ in range(self.chunks_per_turn):
                with self._lock:
                    if not q.pending:
                        self._release(device_id, q)
                        return
                    sha, offset, size = next(iter(q.pending))
                # Leave the key queued while waiting for room, so a re-request of it is not queued twice.
                self._make_room(q, size)
                with self._lock:
                    if q.pending.pop((sha, offset, size), False) is False:
                        continue  # cleared by close()
                sent = self._send_chunk(device_id, sha, offset, size, q)
                if not sent:
                    # The link is down: the agent re-requests whatever is missing once both sides are back.
                    with self._lock:
                        self._count_locked("dropped", len(q.pending))
                        q.pending.clear()
                        self._release(device_id, q)
                    return
        except Exception:  # noqa: BLE001 - a worker must survive anything one device causes
            log.exception("blob server failed serving %s", device_id)
            with self._lock:
                self._release(device_id, q)
            return
        with self._lock:
            if q.pending and not self._closed:
                self._pool.submit(self._serve, device_id)  # to the back of the line: devices take turns
            else:
                self._release(device_id, q)

    def _release(self, device_id: str, q: _DeviceQueue) -> None:
        # Called with the lock held.
        q.scheduled = False
        if not q.pending and not q.inflight:
            self._queues.pop(device_id, None)
        self._idle.notify_all()

    def _make_room(self, q: _DeviceQueue, size: int) -> None:
        while q.inflight:
            while q.inflight and acked(q.inflight[0][0]):
                q.inflight_bytes -= q.inflight.popleft()[1]
            if not q.inflight or q.inflight_bytes + size <= self.max_inflight_bytes:
                return
            info, n = q.inflight[0]
            try:
                info.wait_for_publish(self.ack_timeout_s)
            except (ValueError, RuntimeError):
                pass
            if not acked(info):
                log.warning("no PUBACK for a blob chunk within %s s; sending on", self.ack_timeout_s)
                q.inflight.popleft()
                q.inflight_bytes -= n

    def _send_chunk(self, device_id: str, sha: str, offset: int, size: int, q: _DeviceQueue) -> bool:
        try:
            data, total = self.files.read(sha, offset, size)
        except (BlobMissing, ValueError, OSError) as exc:
            self._count("errors")
            return self._send_error(device_id, sha, offset, str(exc))
        chunk = transfer_pb2.BlobChunk(sha256=sha, offset=offset, data=data, total_size=total)
        info = self.publish(topics.blob(device_id), envelope.encode(device_id, blob_chunk=chunk), qos=1)
        if int(getattr(info, "rc", 0) or 0) != 0:
            return False
        q.inflight.append((info, len(data)))
        q.inflight_bytes += len(data)
        self._count("chunks")
        self._count("bytes", len(data))
        return True

    def _send_error(self, device_id: str, sha: str, offset: int, error: str) -> bool:
        chunk = transfer_pb2.BlobChunk(sha256=sha, offset=offset, error=error)
        info = self.publish(topics.blob(device_id), envelope.encode(device_id, blob_chunk=chunk), qos=1)
        self._count("error_chunks")
        return int(getattr(info, "rc", 0) or 0) == 0

    def _count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.stats[key] += n

    def _count_locked(self, key: str, n: int = 1) -> None:
        self.stats[key] += n

    # --- lifecycle ---------------------------------------------------------------------------------

    def wait_idle(self, timeout: float) -> bool:
        """True once no device has chunks waiting or a worker serving it (tests, shutdown)."""
        with self._idle:
            return self._idle.wait_for(lambda: not any(q.pending or q.scheduled for q in self._queues.values()), timeout)

    def close(self) -> None:
        self.broadcaster.close()
        with self._lock:
            self._closed = True
            for q in self._queues.values():
                q.pending.clear()
        self._pool.shutdown(wait=True)
        self.files.close()


def setup_blob_server(ctx, resolve: Callable[[str], Path | None], **options) -> BlobServer:
    """Build the blob server on a ServiceContext and register it with ingest for ef/v1/dev/+/blob/req."""
    server = BlobServer(
        BlobGrants(ctx.store),
        resolve,
        ctx.link.publish,
        is_known=lambda device_id: ctx.registry.find(device_id) is not None,
        **options,
    )
    ctx.ingest.handlers[topics.BLOB_REQ] = server.handle
    return server

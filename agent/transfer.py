"""Chunked, flow-controlled, resumable blob transfer over MQTT (the device half).

The agent asks for chunks with `BlobRequest{sha256, offsets, chunk_size}` on .../blob/req and the
coordinator answers each offset with a `BlobChunk` on .../blob. The `Fetcher` keeps at most `window`
chunks outstanding across all downloads, asks again for a chunk not received within `timeout_s`
(on an injectable clock), and drops a chunk that does not fit (wrong digest, offset or length) so it
is asked for again. As chunks arrive it asks for more once `refill` slots of the window are free
(half the window by default): one request per few chunks instead of one per chunk, for both sides
and the broker, while the other half of the window keeps the pipe full.

Broadcast (a wave's devices share one publish per chunk): the Deploy command may offer a blob's
broadcast transfer (`BlobBroadcast`: transfer id, AES-256-GCM key). When such a download is added the
Fetcher subscribes to ef/v1/blobs/{transfer_id}, waits for the SUBACK, says `ready` in a BlobRequest and
asks for nothing of that blob by unicast while the broadcast is on. Each broadcast chunk must
authenticate under the key (else it is dropped). The broadcast is over at its `end` marker (also the
coordinator's answer to a ready for a transfer it does not know), after `timeout_s` without a broadcast
chunk, at a reconnect, or when the SUBACK refuses; then whatever is missing is asked for by unicast, as
without a broadcast. A late joiner thus gets the rest from the broadcast and the start by unicast.

A `BlobDownload` writes chunks straight into `<sha256>.part` at their offsets and appends each offset
to `<sha256>.have` (8 bytes per chunk). After a disconnect or an agent restart it reopens both and
only missing chunks are fetched. Neither file is fsynced per chunk: a killed process loses nothing the
kernel already has, and after a power cut the whole-file SHA-256 check catches any chunk the journal
claims but the disk lost; the blob is then fetched again (`reset`).

The whole-file SHA-256 is kept as chunks are written: a chunk that extends the hashed prefix is hashed
from memory, and chunks that were stored ahead of the prefix (out of order, or found on disk after a
resume) are read back from the .part file once the prefix reaches them. So `digest()` is the SHA-256 of
the file's bytes, as reading it whole would give, without reading back what came in order.
"""
from __future__ import annotations

import hashlib
import logging
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from edgefleet import blobcrypt, topics
from edgefleet.v1 import transfer_pb2

log = logging.getLogger(__name__)

PART_SUFFIX = ".part"
JOURNAL_SUFFIX = ".have"
_OFFSET = struct.Struct("<Q")


class TransferError(RuntimeError):
    """A download that cannot go on (disk full, unwritable directory); the message says why."""


class BlobDownload:
    def __init__(self, directory: Path, sha256: str, size: int, chunk_size: int) -> None:
        if size <= 0 or chunk_size <= 0:
            raise ValueError(f"blob {sha256[:12]}: size and chunk_size must be above 0, got {size} and {chunk_size}")
        self.directory = Path(directory)
        self.sha256 = sha256
        self.size = size
        self.chunk_size = chunk_size
        self.part_path = self.directory / (sha256 + PART_SUFFIX)
        self.journal_path = self.directory / (sha256 + JOURNAL_SUFFIX)
        self.count = (size + chunk_size - 1) // chunk_size
        self.have: set[int] = set()
        self._low = 0     # no chunk below this index is missing
        self.resumed = 0  # chunks found on disk when opened
        self._hash = hashlib.sha256()  # of the file's first `_hashed` bytes; None: hash the whole file
        self._hashed = 0
        self.read_back = 0  # bytes hashed by reading the .part file (out of order, resumed)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._open()
        except OSError as exc:
            raise TransferError(f"cannot open the download of {sha256[:12]} in {self.directory}: {exc.strerror or exc}") from None

    def _open(self) -> None:
        if self.part_path.is_file() and self.part_path.stat().st_size == self.size and self.journal_path.is_file():
            raw = self.journal_path.read_bytes()
            whole = len(raw) - len(raw) % _OFFSET.size  # a torn last record is ignored: that chunk is fetched again
            for (offset,) in _OFFSET.iter_unpack(raw[:whole]):
                if self.expected_length(offset) is not None:
                    self.have.add(offset)
            self.resumed = len(self.have)
            self._part = os.open(self.part_path, os.O_RDWR)
            self._journal = os.open(self.journal_path, os.O_WRONLY | os.O_APPEND)
            if whole != len(raw):
                os.ftruncate(self._journal, whole)
            return
        self._create()

    def _create(self) -> None:
        self.have = set()
        self._low = 0
        self._hash, self._hashed = hashlib.sha256(), 0
        self._part = os.open(self.part_path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        os.ftruncate(self._part, self.size)  # sparse: disk blocks are taken as chunks arrive
        self._journal = os.open(self.journal_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)

    # -- state --------------------------------------------------------------------------------

    def expected_length(self, offset: int) -> int | None:
        """The length a chunk at `offset` must have, or None when no chunk starts there."""
        if offset < 0 or offset >= self.size or offset % self.chunk_size:
            return None
        return min(self.chunk_size, self.size - offset)

    def missing(self) -> list[int]:
        return list(self.iter_missing())

    def iter_missing(self) -> Iterator[int]:
        """Missing offsets, lowest first; cheap to call per chunk (skips the received prefix)."""
        while self._low < self.count and self._low * self.chunk_size in self.have:
            self._low += 1
        for i in range(self._low, self.count):
            offset = i * self.chunk_size
            if offset not in self.have:
                yield offset

    @property
    def complete(self) -> bool:
        return len(self.have) == self.count

    @property
    def bytes_done(self) -> int:
        last = (self.count - 1) * self.chunk_size
        return len(self.have) * self.chunk_size - (self.count * self.chunk_size - self.size if last in self.have else 0)

    # -- writing ------------------------------------------------------------------------------

    def write(self, offset: int, data: bytes) -> bool:
        """Store one chunk (checked by the caller); False when it was already there (a duplicate)."""
        if offset in self.have:
            return False
        try:
            view = memoryview(data)
            position = offset
            while view:
                written = os.pwrite(self._part, view, position)
                view, position = view[written:], position + written
            os.write(self._journal, _OFFSET.pack(offset))
        except OSError as exc:
            raise TransferError(f"cannot write the download of {self.sha256[:12]}: {exc.strerror or exc}") from None
        self.have.add(offset)
        if offset == self._hashed and self._hash is not None:
            self._hash.update(data)
            self._hashed += len(data)
            if self._hashed in self.have:
                self._catch_up()
        return True

    def _catch_up(self) -> None:
        """Extend the hashed prefix over chunks already stored, reading them back from the .part file."""
        try:
            while self._hash is not None and self._hashed < self.size and self._hashed in self.have:
                length = self.expected_length(self._hashed)
                data = os.pread(self._part, length, self._hashed)
                if len(data) != length:  # the file is shorter than it should be: hash the whole file instead
                    self._hash = None
                    return
                self._hash.update(data)
                self._hashed += length
                self.read_back += length
        except (OSError, TypeError):  # TypeError: closed (no descriptor)
            self._hash = None

    def digest(self) -> str:
        """SHA-256 of the .part file: the running one when it covers the whole file, else read from disk."""
        if self._hash is not None and self._hashed < self.size and self._hashed in self.have:
            self._catch_up()
        if self._hash is not None and self._hashed == self.size:
            return self._hash.hexdigest()
        h = hashlib.sha256()
        with open(self.part_path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        return h.hexdigest()

    def sync(self) -> None:
        """The data on disk before the install goes on. Not the journal: a complete download is hashed
        next and its journal deleted; a crash before that hashes the .part file again anyway."""
        os.fsync(self._part)

    def reset(self) -> None:
        """Discard everything received (the digest did not match) and start over."""
        self.close()
        self._create()

    def close(self) -> None:
        for fd in (getattr(self, "_part", None), getattr(self, "_journal", None)):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._part = self._journal = None

    def remove(self) -> None:
        """Close and delete both files (the blob was moved away, or is not wanted any more)."""
        self.close()
        self.part_path.unlink(missing_ok=True)
        self.journal_path.unlink(missing_ok=True)

    def detach_part(self) -> Path:
        """Close, drop the journal and hand over the .part file (to be moved into a slot)."""
        self.close()
        self.journal_path.unlink(missing_ok=True)
        return self.part_path


@dataclass(frozen=True)
class ChunkOutcome:
    kind: str                              # stored | duplicate | dropped | error | unknown
    download: BlobDownload | None = None
    reason: str = ""


SUBSCRIBING, WAITING, OVER = "subscribing", "waiting", "over"
_MAX_OFFERS = 16


class _Cast:
    """One download's broadcast: subscribing -> waiting (ready sent) -> over (unicast for the rest)."""

    def __init__(self, offer: transfer_pb2.BlobBroadcast, now: float) -> None:
        self.offer = offer
        self.topic = topics.broadcast(offer.transfer_id)
        self.cipher = blobcrypt.ChunkCipher(offer.key, offer.transfer_id, offer.sha256)
        self.state = SUBSCRIBING
        self.subscribed = False
        self.since = now   # last sign of life: subscribe asked, SUBACK, a broadcast chunk


class Fetcher:
    """Asks for the missing chunks of its downloads, W at a time, in the order downloads were added."""

    def __init__(
        self,
        send: Callable[[transfer_pb2.BlobRequest], None],
        *,
        clock: Callable[[], float],
        window: int = 8,
        timeout_s: float = 10.0,
        refill: int | None = None,
    ) -> None:
        if window < 1:
            raise ValueError(f"window must be at least 1, got {window}")
        refill = max(1, window // 2) if refill is None else refill
        if not 1 <= refill <= window:
            raise ValueError(f"refill must be between 1 and the window ({window}), got {refill}")
        if timeout_s <= 0:
            raise ValueError(f"chunk timeout must be above 0, got {timeout_s}")
        self._send = send
        self._clock = clock
        self.window = window
        self.refill = refill
        self.timeout_s = timeout_s
        self._downloads: dict[str, BlobDownload] = {}
        self._outstanding: dict[tuple[str, int], float] = {}   # (sha256, offset) -> when asked
        self.requested = 0      # chunk requests sent, including repeats
        self.rerequested = 0    # of which repeats after a timeout, a reconnect or a bad chunk
        self.dropped = 0        # chunks that did not fit
        self.duplicates = 0
        self.broadcast_chunks = 0    # stored from a broadcast
        self.broadcast_rejected = 0  # broadcast chunks that did not authenticate
        self._subscribe: Callable[[str, Callable[[bool], None]], None] | None = None
        self._unsubscribe: Callable[[str], None] = lambda topic: None
        self._offers: dict[str, transfer_pb2.BlobBroadcast] = {}  # sha256 -> the latest offer
        self._casts: dict[str, _Cast] = {}                           # sha256 -> its broadcast

    # -- broadcast ----------------------------------------------------------------------------

    def enable_broadcast(self, subscribe: Callable[[str, Callable[[bool], None]], None], unsubscribe: Callable[[str], None]) -> None:
        """subscribe(topic, done): subscribe at QoS 1 and call done(granted) once the SUBACK is in (in the
        thread that calls this Fetcher); unsubscribe(topic). Without this, offers are ignored: unicast only."""
        self._subscribe = subscribe
        self._unsubscribe = unsubscribe

    def set_offers(self, offers) -> int:
        """A new Deploy command's broadcast offers replace any earlier ones (a broadcast already under way
        goes on); malformed ones are ignored. Returns how many were taken."""
        self._offers = {}
        for broadcast in list(offers)[:_MAX_OFFERS]:
            if not topics.valid_transfer_id(broadcast.transfer_id) or len(broadcast.key) != blobcrypt.KEY_BYTES or not broadcast.chunk_size:
                log.warning("ignored a malformed broadcast offer for blob %s", broadcast.sha256[:12])
                continue
            self._offers[broadcast.sha256] = broadcast
        return len(self._offers)

    def _start_cast(self, download: BlobDownload) -> None:
        offer = self._offers.get(download.sha256)
        cast = self._casts.get(download.sha256)
        if (self._subscribe is None or offer is None or offer.chunk_size != download.chunk_size or download.complete
                or (cast is not None and cast.offer.transfer_id == offer.transfer_id)):
            return  # no offer, or this transfer was tried already (a refetch goes by unicast)
        if cast is not None:
            self._end_cast(download.sha256, "a newer broadcast was offered")
        cast = self._casts[download.sha256] = _Cast(offer, self._clock())
        sha, transfer_id = download.sha256, offer.transfer_id
        try:
            self._subscribe(cast.topic, lambda granted: self.on_subscribed(sha, transfer_id, granted))
        except Exception as exc:  # noqa: BLE001 - no broadcast then, the download goes on by unicast
            log.warning("cannot subscribe to the broadcast of %s: %s", sha[:12], exc)
            cast.state = OVER

    def on_subscribed(self, sha256: str, transfer_id: str, granted: bool) -> None:
        """The SUBACK of a broadcast topic: say ready, or (refused) fetch by unicast."""
        cast = self._casts.get(sha256)
        if cast is None or cast.offer.transfer_id != transfer_id or cast.state != SUBSCRIBING:
            if granted and (cast is None or cast.offer.transfer_id != transfer_id):
                self._unsubscribe(topics.broadcast(transfer_id))  # the download went away meanwhile
            return
        if not granted:
            log.info("broadcast topic of %s refused by the broker: fetching by unicast", sha256[:12])
            cast.state = OVER
            self.pump()
            return
        cast.subscribed = True
        cast.state = WAITING
        cast.since = self._clock()
        download = self._downloads.get(sha256)
        self._send(transfer_pb2.BlobRequest(sha256=sha256, transfer_id=transfer_id, ready=True,
                                            chunk_size=download.chunk_size if download else cast.offer.chunk_size))

    def _end_cast(self, sha256: str, why: str, *, drop: bool = False) -> None:
        cast = self._casts.get(sha256)
        if cast is None:
            return
        if cast.state != OVER:
            log.debug("broadcast of %s over (%s)", sha256[:12], why)
        cast.state = OVER
        if cast.subscribed:
            cast.subscribed = False
            try:
                self._unsubscribe(cast.topic)
            except Exception as exc:  # noqa: BLE001
                log.debug("unsubscribe from %s failed: %s", cast.topic, exc)
        if drop:
            del self._casts[sha256]

    def broadcasting(self, sha256: str) -> bool:
        """Whether a download waits for its broadcast (and asks for nothing by unicast)."""
        cast = self._casts.get(sha256)
        return cast is not None and cast.state != OVER

    def _on_broadcast_chunk(self, chunk: transfer_pb2.BlobChunk) -> tuple[bytes | None, ChunkOutcome | None]:
        """(plaintext, None) for a chunk to store, or (None, outcome) when there is nothing to store."""
        download = self._downloads.get(chunk.sha256)
        cast = self._casts.get(chunk.sha256)
        if download is None or cast is None or cast.offer.transfer_id != chunk.transfer_id:
            return None, ChunkOutcome("unknown", reason=f"no broadcast {chunk.transfer_id[:8]} of blob {chunk.sha256[:12]} expected")
        if chunk.end:
            self._end_cast(chunk.sha256, "end of the broadcast")
            self.pump()
            return None, ChunkOutcome("duplicate", download, "end of the broadcast")  # nothing new stored
        cast.since = self._clock()
        index, rest = divmod(chunk.offset, cast.offer.chunk_size)
        try:
            if rest:
                raise blobcrypt.ChunkRejected(f"offset {chunk.offset} is not a chunk boundary")
            return cast.cipher.open(index, chunk.data), None
        except blobcrypt.ChunkRejected as exc:
            self.dropped += 1
            self.broadcast_rejected += 1
            return None, ChunkOutcome("dropped", download, f"broadcast chunk rejected: {exc}")

    # -- downloads ----------------------------------------------------------------------------

    def add(self, download: BlobDownload) -> None:
        self._downloads[download.sha256] = download
        self._start_cast(download)

    def get(self, sha256: str) -> BlobDownload | None:
        return self._downloads.get(sha256)

    def discard(self, sha256: str) -> None:
        self._end_cast(sha256, "download discarded", drop=True)
        self._downloads.pop(sha256, None)
        for key in [k for k in self._outstanding if k[0] == sha256]:
            del self._outstanding[key]

    @property
    def outstanding(self) -> int:
        return len(self._outstanding)

    def outstanding_offsets(self, sha256: str) -> list[int]:
        return sorted(offset for sha, offset in self._outstanding if sha == sha256)

    # -- flow ---------------------------------------------------------------------------------

    def pump(self) -> int:
        """Ask for missing chunks until `window` are outstanding; returns how many were asked for."""
        free = self.window - len(self._outstanding)
        if free <= 0:
            return 0
        now = self._clock()
        requests = []
        for sha, download in self._downloads.items():
            if free <= 0:
                break
            if self.broadcasting(sha):
                continue
            batch = []
            for offset in download.iter_missing():
                if free <= 0:
                    break
                if (sha, offset) in self._outstanding:
                    continue
                batch.append(offset)
                self._outstanding[(sha, offset)] = now
                free -= 1
            if batch:
                requests.append(transfer_pb2.BlobRequest(sha256=sha, offsets=batch, chunk_size=download.chunk_size))
        asked = sum(len(r.offsets) for r in requests)
        self.requested += asked
        for request in requests:  # after the loop: sending may hand back chunks that change the downloads
            self._send(request)
        return asked

    def _refill(self) -> None:
        """After a chunk: ask for more once `refill` slots are free (or nothing is outstanding)."""
        if not self._outstanding or self.window - len(self._outstanding) >= self.refill:
            self.pump()

    def expire(self) -> int:
        """Ask again for chunks outstanding longer than the timeout; returns how many."""
        now = self._clock()
        quiet = [sha for sha, cast in self._casts.items() if cast.state != OVER and now - cast.since >= self.timeout_s]
        for sha in quiet:
            log.info("no broadcast chunk of %s for %gs: fetching the rest by unicast", sha[:12], self.timeout_s)
            self._end_cast(sha, "quiet")
        late = [key for key, asked_at in self._outstanding.items() if now - asked_at >= self.timeout_s]
        for key in late:
            del self._outstanding[key]
        if late:
            self.rerequested += len(late)
            log.info("%d chunk(s) not received within %gs; asking again", len(late), self.timeout_s)
        if late or quiet:
            self.pump()
        return len(late)

    def forget_outstanding(self) -> None:
        """After a reconnect: answers to earlier requests may be lost, ask again for everything missing."""
        self.rerequested += len(self._outstanding)
        self._outstanding.clear()
        for sha in list(self._casts):
            self._end_cast(sha, "reconnected: broadcast chunks may have been lost")
        self.pump()

    def on_chunk(self, chunk: transfer_pb2.BlobChunk) -> ChunkOutcome:
        """One chunk, by unicast or broadcast. Outcomes: stored, duplicate (nothing new stored: a repeat, or
        a broadcast's end), dropped (did not fit or did not authenticate: asked for again), error, unknown."""
        # Read once: each read of a bytes field is a fresh copy of the chunk (upb), and a broadcast chunk's
        # ciphertext is only needed to get its plaintext.
        if chunk.transfer_id:
            data, outcome = self._on_broadcast_chunk(chunk)
            if outcome is not None:
                return outcome
        else:
            data = chunk.data
        download = self._downloads.get(chunk.sha256)
        if download is None:
            return ChunkOutcome("unknown", reason=f"no download of blob {chunk.sha256[:12] or '(none)'} in progress")
        key = (chunk.sha256, chunk.offset)
        if chunk.error:
            self._outstanding.pop(key, None)
            return ChunkOutcome("error", download, f"coordinator could not serve blob {chunk.sha256[:12]}: {chunk.error}")
        expected = download.expected_length(chunk.offset)
        reason = ""
        if chunk.total_size and chunk.total_size != download.size:
            reason = f"total_size {chunk.total_size} but the manifest says {download.size}"
        elif expected is None:
            reason = f"offset {chunk.offset} is not a chunk boundary below {download.size}"
        elif len(data) != expected:
            reason = f"chunk at offset {chunk.offset} has {len(data)} bytes, expected {expected}"
        if reason:
            self.dropped += 1
            if key in self._outstanding:  # ask again now rather than after the timeout
                del self._outstanding[key]
                self.rerequested += 1
            self._refill()
            return ChunkOutcome("dropped", download, reason)
        self._outstanding.pop(key, None)
        stored = download.write(chunk.offset, data)
        if not stored:
            self.duplicates += 1
        elif chunk.transfer_id:
            self.broadcast_chunks += 1
        if download.complete:
            self._end_cast(chunk.sha256, "download complete")
        self._refill()
        return ChunkOutcome("stored" if stored else "duplicate", download)

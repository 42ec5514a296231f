"""The blob server with a recording publisher: grants, errors, caps, de-duplication, in-flight budget."""
from __future__ import annotations

import hashlib
import os
import threading
from datetime import datetime, timezone

import pytest

from coordinator.transfer.blobs import NOT_GRANTED, BlobServer, OpenFiles
from coordinator.transfer.grants import BlobGrants, grant
from edgefleet import envelope, topics
from edgefleet.v1 import transfer_pb2

NOW = datetime(2026, 11, 21, tzinfo=timezone.utc)
CHUNK = 4096


class Info:
    """Stands in for paho's MQTTMessageInfo; acknowledged at once unless the publisher holds acks."""

    def __init__(self, pub: "Publisher"):
        self.pub = pub
        self.rc = 0

    def is_published(self) -> bool:
        return not self.pub.hold.is_set()

    def wait_for_publish(self, timeout=None) -> None:
        self.pub.waiting.set()
        self.pub.release.wait(timeout)


class Publisher:
    def __init__(self):
        self.messages: list[tuple[str, transfer_pb2.BlobChunk]] = []
        self.cond = threading.Condition()
        self.hold = threading.Event()  # set: publishes stay unacknowledged
        self.release = threading.Event()
        self.waiting = threading.Event()
        self.rc = 0

    def __call__(self, topic, payload, qos=1):
        assert qos == 1
        env = envelope.decode(payload, expect="blob_chunk")
        with self.cond:
            self.messages.append((topic, env.blob_chunk))
            self.cond.notify_all()
        info = Info(self)
        info.rc = self.rc
        return info

    def chunks(self, device_id="d-a"):
        with self.cond:
            return [c for t, c in self.messages if t == topics.blob(device_id)]


@pytest.fixture
def blob(tmp_path):
    data = os.urandom(10 * CHUNK + 123)
    sha = hashlib.sha256(data).hexdigest()
    (tmp_path / sha).write_bytes(data)
    return sha, data, tmp_path


def make_server(store, blob, **kw):
    sha, data, root = blob
    pub = Publisher()
    with store.session() as s:
        grant(s, "d-a", sha, sequence=1, at=NOW)
    known = {"d-a", "d-b"}

    def resolve(digest):
        p = root / digest
        return p if p.exists() else None

    server = BlobServer(BlobGrants(store), resolve, pub, is_known=known.__contains__, **kw)
    return server, pub


def request(device_id, sha, offsets, chunk_size=CHUNK):
    return envelope.wrap(device_id, blob_request=transfer_pb2.BlobRequest(sha256=sha, offsets=offsets, chunk_size=chunk_size))


def reassemble(chunks, size):
    buf = bytearray(size)
    for c in chunks:
        assert not c.error, c.error
        buf[c.offset:c.offset + len(c.data)] = c.data
    return bytes(buf)


def test_granted_blob_is_served_in_chunks_that_reassemble(store, blob):
    sha, data, _ = blob
    server, pub = make_server(store, blob)
    try:
        offsets = list(range(0, len(data), CHUNK))
        assert server.handle(request("d-a", sha, offsets[::-1]))  # out of order is fine
        assert server.wait_idle(10)
        got = pub.chunks()
        assert sorted(c.offset for c in got) == offsets
        assert {c.total_size for c in got} == {len(data)} and {c.sha256 for c in got} == {sha}
        assert len(got[0].data) == CHUNK or got[0].offset == offsets[-1]
        assert hashlib.sha256(reassemble(got, len(data))).hexdigest() == sha
        assert server.stats["bytes"] == len(data)
    finally:
        server.close()


def test_not_granted_unknown_device_and_bad_requests(store, blob):
    sha, data, _ = blob
    server, pub = make_server(store, blob)
    try:
        assert server.handle(request("d-b", sha, [0, CHUNK]))  # known device, someone else's blob
        assert server.handle(request("d-a", "ff" * 32, [0]))  # a blob nobody was granted
        assert server.handle(request("d-stranger", sha, [0])) is False  # ingest counts an unknown device
        assert server.handle(request("d-a", "NOT-A-SHA", [0]))
        assert server.handle(request("d-a", sha, [0], chunk_size=4 * 1024 * 1024))
        assert server.handle(request("d-a", sha, [len(data) + 5]))
        assert server.wait_idle(10)
        b = pub.chunks("d-b")
        assert [(c.error, c.data, c.offset) for c in b] == [(NOT_GRANTED, b"", 0)]
        a = [c.error for c in pub.chunks("d-a")]
        assert a[0] == NOT_GRANTED  # same words for a blob that does not exist: nothing leaks
        assert "malformed sha256" in a[1]
        assert "chunk_size 4194304 is over the 1048576-byte limit" in a[2]
        assert f"past the end of the {len(data)}-byte blob" in a[3]
        assert pub.chunks("d-stranger") == []
        assert all(not c.data for _, c in pub.messages)
    finally:
        server.close()


def test_granted_but_missing_file_says_so(store, blob):
    sha, _, root = blob
    server, pub = make_server(store, blob)
    try:
        (root / sha).unlink()
        server.handle(request("d-a", sha, [0]))
        assert server.wait_idle(10)
        assert "granted but not stored on the coordinator" in pub.chunks()[0].error
    finally:
        server.close()


def test_requests_are_capped_and_duplicates_queued_once(store, blob):
    sha, data, _ = blob
    server, pub = make_server(store, blob, max_chunks_per_request=4, max_inflight_bytes=CHUNK)
    pub.hold.set()  # nothing acknowledged: the worker sends one chunk and waits
    try:
        server.handle(request("d-a", sha, [0, 0, CHUNK, 2 * CHUNK, 3 * CHUNK, 4 * CHUNK, 5 * CHUNK]))
        assert pub.waiting.wait(10)
        # one chunk is out, unacknowledged; asking again for waiting offsets does not queue them twice
        server.handle(request("d-a", sha, [CHUNK, 2 * CHUNK, 3 * CHUNK]))
        assert len(pub.chunks()) == 1
        assert server.stats["dropped"] == 2  # offsets beyond the 4 per request (after de-duplication)
        pub.hold.clear()
        pub.release.set()
        assert server.wait_idle(10)
        assert sorted(c.offset for c in pub.chunks()) == [0, CHUNK, 2 * CHUNK, 3 * CHUNK]
    finally:
        pub.release.set()
        server.close()


def test_in_flight_bytes_per_device_are_bounded(store, blob):
    sha, data, _ = blob
    server, pub = make_server(store, blob, max_inflight_bytes=3 * CHUNK)
    pub.hold.set()
    try:
        server.handle(request("d-a", sha, list(range(0, len(data), CHUNK))))
        assert pub.waiting.wait(10)  # blocked on the oldest PUBACK after filling the budget
        assert len(pub.chunks()) == 3
        pub.hold.clear()
        pub.release.set()
        assert server.wait_idle(10)
        assert len(pub.chunks()) == 11
    finally:
        pub.release.set()
        server.close()


def test_a_down_link_drops_the_queue_for_the_agent_to_ask_again(store, blob):
    sha, data, _ = blob
    server, pub = make_server(store, blob)
    pub.rc = 4  # MQTT_ERR_NO_CONN
    try:
        server.handle(request("d-a", sha, list(range(0, len(data), CHUNK))))
        assert server.wait_idle(10)
        assert len(pub.chunks()) == 1  # the first publish failed; the rest were not read at all
        assert server.stats["dropped"] == 10
        pub.rc = 0
        server.handle(request("d-a", sha, [CHUNK]))
        assert server.wait_idle(10)
        assert pub.chunks()[-1].offset == CHUNK and pub.chunks()[-1].data
    finally:
        server.close()


def test_open_files_are_an_lru(tmp_path):
    blobs = {}
    for i in range(3):
        data = bytes([i]) * 100
        sha = hashlib.sha256(data).hexdigest()
        (tmp_path / sha).write_bytes(data)
        blobs[sha] = data
    opened = []

    def resolve(sha):
        opened.append(sha)
        return tmp_path / sha

    files = OpenFiles(resolve, capacity=2)
    a, b, c = blobs
    assert files.read(a, 10, 5) == (blobs[a][10:15], 100)
    assert files.read(b, 95, 50) == (blobs[b][95:], 100)  # short at the end
    files.read(a, 0, 1)  # a is now the most recent
    files.read(c, 0, 1)  # evicts b
    files.read(a, 0, 1)
    files.read(b, 0, 1)  # b opened again
    assert opened == [a, b, c, b]
    files.close()

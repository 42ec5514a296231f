"""coordinator.transfer.broadcast: one publish per chunk for every ready device, encrypted per transfer,
started when the wave is ready or after the gather deadline (injected clock), `end` for the unknown."""
from __future__ import annotations

import pytest

from coordinator.transfer.blobs import NOT_GRANTED
from coordinator.transfer.grants import grant
from edgefleet import blobcrypt, envelope, topics
from edgefleet.v1 import transfer_pb2
from tests.unit.transfer.test_blobs import CHUNK, NOW, blob, make_server, request  # noqa: F401 (blob: a fixture)


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def ready(device_id, offer, chunk_size=CHUNK):
    return envelope.wrap(device_id, blob_request=transfer_pb2.BlobRequest(
        sha256=offer.sha256, transfer_id=offer.transfer_id, ready=True, chunk_size=chunk_size))


@pytest.fixture
def setup(store, blob):
    clock = Clock()
    server, pub = make_server(store, blob, broadcast={"clock": clock, "gather_s": 2.0, "threaded": False})
    sha = blob[0]
    with store.session() as s:
        grant(s, "d-b", sha, sequence=1, at=NOW)
    yield server, pub, clock, blob
    server.close()


def on_topic(pub, topic):
    return [c for t, c in pub.messages if t == topic]


def test_each_chunk_is_published_once_for_all_ready_devices(setup):
    server, pub, clock, (sha, data, _) = setup
    offer = server.open_broadcast(sha, CHUNK, ["d-a", "d-b"])
    assert topics.valid_transfer_id(offer.transfer_id) and len(offer.key) == 32
    assert server.handle(ready("d-a", offer))
    assert server.broadcaster.run_due() == 0  # d-b is not ready yet and the gather time has not passed
    assert server.handle(ready("d-b", offer))
    assert server.broadcaster.run_due() == 1
    sent = on_topic(pub, topics.broadcast(offer.transfer_id))
    count = -(-len(data) // CHUNK)
    assert len(sent) == count + 1 and sent[-1].end and not sent[-1].data  # every chunk once, then the end
    assert [c.offset for c in sent[:-1]] == [i * CHUNK for i in range(count)]
    assert not pub.chunks("d-a") and not pub.chunks("d-b")  # nothing by unicast
    assert server.broadcaster.stats["chunks"] == count and server.broadcaster.stats["broadcasts"] == 1
    # Ciphertext on the topic: decrypted with the transfer's key it is the blob; without it, not readable.
    cipher = blobcrypt.ChunkCipher(offer.key, offer.transfer_id, sha)
    plain = b"".join(cipher.open(i, c.data) for i, c in enumerate(sent[:-1]))
    assert plain == data
    assert all(c.data[:64] not in data for c in sent[:-1])
    other = blobcrypt.ChunkCipher(blobcrypt.new_transfer()[1], offer.transfer_id, sha)
    with pytest.raises(blobcrypt.ChunkRejected):
        other.open(0, sent[0].data)


def test_the_gather_deadline_starts_without_the_missing_device(setup):
    server, pub, clock, (sha, data, _) = setup
    offer = server.open_broadcast(sha, CHUNK, ["d-a", "d-b"])
    server.handle(ready("d-a", offer))
    clock.now += 1.9
    assert server.broadcaster.run_due() == 0
    clock.now += 0.2
    assert server.broadcaster.run_due() == 1
    # d-b turns up late: told at once (its own topic) that the broadcast is over, to fetch by unicast.
    server.handle(ready("d-b", offer))
    end = pub.chunks("d-b")
    assert len(end) == 1 and end[0].end and end[0].transfer_id == offer.transfer_id


def test_a_device_asking_by_unicast_is_not_waited_for(setup):
    server, pub, clock, (sha, data, _) = setup
    offer = server.open_broadcast(sha, CHUNK, ["d-a", "d-b"])
    server.handle(ready("d-a", offer))
    server.handle(request("d-b", sha, [0]))  # d-b could not subscribe: unicast
    assert server.broadcaster.run_due() == 1
    assert server.wait_idle(5)
    assert [c.offset for c in pub.chunks("d-b")] == [0]


def test_unknown_transfer_and_ungranted_blob(setup, store):
    server, pub, clock, (sha, data, _) = setup
    fake = transfer_pb2.BlobBroadcast(sha256=sha, transfer_id="0" * 32, key=b"k" * 32, chunk_size=CHUNK)
    server.handle(ready("d-a", fake))
    assert [(c.end, c.transfer_id) for c in pub.chunks("d-a")] == [(True, "0" * 32)]
    other = transfer_pb2.BlobBroadcast(sha256="ab" * 32, transfer_id="1" * 32, key=b"k" * 32, chunk_size=CHUNK)
    server.handle(ready("d-a", other))
    assert pub.chunks("d-a")[-1].error == NOT_GRANTED


def test_a_transfer_nobody_got_ready_for_expires(setup):
    server, pub, clock, (sha, data, _) = setup
    server.open_broadcast(sha, CHUNK, ["d-a"])
    assert server.broadcaster.pending() == 1
    clock.now += server.broadcaster.idle_s
    assert server.broadcaster.run_due() == 0 and server.broadcaster.pending() == 0
    assert not pub.messages


def test_a_down_link_stops_the_broadcast(setup):
    server, pub, clock, (sha, data, _) = setup
    offer = server.open_broadcast(sha, CHUNK, ["d-a"])
    server.handle(ready("d-a", offer))
    pub.rc = 4  # MQTT_ERR_NO_CONN
    server.broadcaster.run_due()
    assert len(pub.messages) == 1 and server.broadcaster.stats["aborted"] == 1 and server.broadcaster.pending() == 0


def test_the_threaded_broadcaster_sends_by_itself(store, blob):
    server, pub = make_server(store, blob, broadcast={"gather_s": 0.05})
    try:
        sha, data, _ = blob
        offer = server.open_broadcast(sha, CHUNK, ["d-a", "d-b"])
        server.handle(ready("d-a", offer))  # d-b never comes: the gather deadline starts it
        topic = topics.broadcast(offer.transfer_id)
        with pub.cond:
            assert pub.cond.wait_for(lambda: any(t == topic and c.end for t, c in pub.messages), 10)
    finally:
        server.close()


def test_the_waves_devices_need_no_grant_query(setup):
    """open_broadcast is given devices whose grants are committed: their ready requests (a whole wave at
    once on the ingest thread) are not each a query; a device outside the wave still is."""
    server, pub, clock, (sha, data, _) = setup
    asked = []
    allowed = server.grants.allowed
    server.grants.allowed = lambda device_id, digest: asked.append(device_id) or allowed(device_id, digest)
    offer = server.open_broadcast(sha, CHUNK, ["d-a", "d-b"])
    assert server.handle(ready("d-a", offer)) and server.handle(ready("d-b", offer))
    assert server.broadcaster.run_due() == 1 and asked == []
    assert server.handle(request("d-c", sha, [0])) is False  # not in the wave: looked up, not granted (unknown)
    assert asked == ["d-c"] and not pub.chunks("d-c")

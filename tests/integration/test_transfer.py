"""Blob transfer over a real private mosquitto: the coordinator's link, ingest and blob server on one
side, a device-side paho client fetching a ~1 MB artifact chunk by chunk on the other."""
from __future__ import annotations

import hashlib
import os
import queue
import threading
from types import SimpleNamespace

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from coordinator.config import MqttConfig
from coordinator.ingest import Ingest
from coordinator.link import CoordinatorLink
from coordinator.metrics import CoordinatorMetrics
from coordinator.signing import Signer
from coordinator.store.db import Store
from coordinator.store.devices import DeviceRegistry
from coordinator.transfer.blobs import NOT_GRANTED, setup_blob_server
from coordinator.transfer.manifests import ManifestIssuer, ManifestSpec, verify_manifest
from edgefleet import envelope, session, topics
from edgefleet.v1 import transfer_pb2
from tests.mosquitto import MosquittoProcess, mosquitto_binary

pytestmark = pytest.mark.skipif(mosquitto_binary() is None, reason="mosquitto is not installed")

CHUNK = 64 * 1024
WAIT_S = 10.0


class DeviceClient:
    """What an agent does for a transfer, reduced to the wire: subscribe to its blob topic, ask for offsets."""

    def __init__(self, broker: MosquittoProcess, device_id: str):
        self.device_id = device_id
        self.broker = broker
        self.chunks: queue.Queue = queue.Queue()
        self.subscribed = threading.Event()
        self.client = None

    def connect(self) -> "DeviceClient":
        self.subscribed.clear()
        c = session.make_client(f"agent-{self.device_id}", "5")
        c.on_connect = lambda client, ud, flags, rc, props: client.subscribe(topics.blob(self.device_id), qos=1)
        c.on_subscribe = lambda *a: self.subscribed.set()
        c.on_message = lambda client, ud, msg: self.chunks.put(envelope.decode(bytes(msg.payload), expect="blob_chunk").blob_chunk)
        session.connect_async(c, session.parse_broker_url(f"mqtt://{self.broker.host}:{self.broker.port}"), keepalive=30, session_expiry_s=0)
        c.loop_start()
        assert self.subscribed.wait(WAIT_S), "device client did not subscribe"
        self.client = c
        return self

    def disconnect(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def ask(self, sha: str, offsets: list[int], chunk_size: int = CHUNK) -> None:
        req = transfer_pb2.BlobRequest(sha256=sha, offsets=offsets, chunk_size=chunk_size)
        self.client.publish(topics.blob_req(self.device_id), envelope.encode(self.device_id, blob_request=req), qos=1).wait_for_publish(WAIT_S)

    def receive(self, sha: str, want: set[int], have: dict[int, bytes], *, ask_again: bool = True) -> None:
        """Wait until every offset in `want` arrived; ask again for what is still missing after a quiet spell
        (the coordinator may have subscribed after the first request: that is what agents do too)."""
        rounds = 0
        while not want <= set(have):
            try:
                c = self.chunks.get(timeout=2.0)
            except queue.Empty:
                rounds += 1
                assert ask_again and rounds < 5, f"missing chunks {sorted(want - set(have))}"
                self.ask(sha, sorted(want - set(have)))
                continue
            assert not c.error, c.error
            assert c.sha256 == sha
            have[c.offset] = c.data

    def next_error(self) -> transfer_pb2.BlobChunk:
        while True:
            c = self.chunks.get(timeout=WAIT_S)
            if c.error:
                return c


@pytest.fixture
def setup(tmp_path):
    broker = MosquittoProcess("allow_anonymous true\n", tmp_path / "broker").start()
    store = Store(f"sqlite:///{tmp_path / 'coordinator.db'}")
    registry = DeviceRegistry(store)
    a = registry.register("cam-a", {}, 600).device.id
    b = registry.register("cam-b", {}, 600).device.id
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    blobs = {}
    for name, size in (("model", 1_000_003), ("other", 70_000)):
        data = os.urandom(size)
        sha = hashlib.sha256(data).hexdigest()
        (artifacts / sha).write_bytes(data)
        blobs[name] = (sha, data)

    def resolve(sha):
        p = artifacts / sha
        return p if p.is_file() else None

    ingest = Ingest(registry, CoordinatorMetrics())
    link = CoordinatorLink(MqttConfig(url=f"mqtt://{broker.host}:{broker.port}", client_id="coordinator-test"), ingest.handle)
    ctx = SimpleNamespace(store=store, registry=registry, link=link, ingest=ingest)
    server = setup_blob_server(ctx, resolve, max_inflight_bytes=4 * CHUNK)
    link.start()
    assert link.connected.wait(WAIT_S)
    signer = Signer(Ed25519PrivateKey.generate())
    issuer = ManifestIssuer(store, signer)
    model_sha, model = blobs["model"]
    other_sha, other = blobs["other"]
    manifest_a = issuer.issue(a, ManifestSpec("cam", "1", "fp32", "baseline", model_sha, len(model), chunk_size=CHUNK))
    issuer.issue(b, ManifestSpec("cam", "1", "tiny", "baseline", other_sha, len(other), chunk_size=CHUNK))
    devices = []
    yield SimpleNamespace(broker=broker, a=a, b=b, blobs=blobs, manifest_a=manifest_a, signer=signer, server=server, devices=devices, ingest=ingest)
    for d in devices:
        if d.client is not None:
            d.client.disconnect()
            d.client.loop_stop()
    link.stop()
    server.close()
    store.close()
    broker.stop()


def test_resumable_chunked_transfer_of_a_granted_blob(setup):
    m = verify_manifest(setup.manifest_a, setup.signer.public_raw, device_id=setup.a)
    sha, size, chunk = m.sha256, m.size_bytes, m.chunk_size
    offsets = list(range(0, size, chunk))
    assert len(offsets) == 16
    dev = DeviceClient(setup.broker, setup.a).connect()
    setup.devices.append(dev)
    have: dict[int, bytes] = {}

    # out of order, with duplicates inside one request and across two
    first = [offsets[3], offsets[1], offsets[1], offsets[0], offsets[5], offsets[3]]
    dev.ask(sha, first)
    dev.ask(sha, [offsets[5], offsets[6]])
    dev.receive(sha, {offsets[i] for i in (0, 1, 3, 5, 6)}, have)

    # mid-transfer the device drops off (no persistent session: what was in flight is lost), comes
    # back, and asks for what is missing only
    dev.ask(sha, offsets[7:12])
    c = dev.chunks.get(timeout=WAIT_S)
    have[c.offset] = c.data
    dev.disconnect()
    dev.chunks = queue.Queue()
    dev.connect()
    missing = [o for o in offsets if o not in have]
    assert 5 <= len(missing) <= 10
    dev.ask(sha, missing[::-1])
    dev.receive(sha, set(offsets), have)

    data = b"".join(have[o] for o in offsets)
    assert len(data) == size
    assert hashlib.sha256(data).hexdigest() == sha == setup.blobs["model"][0]
    assert setup.server.wait_idle(WAIT_S)
    assert setup.server.stats["bytes"] >= size


def test_blobs_not_granted_to_the_device_get_an_error_chunk(setup):
    model_sha, _ = setup.blobs["model"]
    other_sha, _ = setup.blobs["other"]
    a = DeviceClient(setup.broker, setup.a).connect()
    b = DeviceClient(setup.broker, setup.b).connect()
    setup.devices += [a, b]

    # A was granted the model only: the other blob (B's) is refused
    a.ask(other_sha, [0])
    err = a.next_error()
    assert (err.sha256, err.error, err.data) == (other_sha, NOT_GRANTED, b"")

    # B cannot fetch A's model, but gets its own blob
    b.ask(model_sha, [0, CHUNK])
    err = b.next_error()
    assert (err.sha256, err.error, err.data) == (model_sha, NOT_GRANTED, b"")
    have: dict[int, bytes] = {}
    b.ask(other_sha, [0, CHUNK])
    b.receive(other_sha, {0, CHUNK}, have)
    assert hashlib.sha256(have[0] + have[CHUNK]).hexdigest() == other_sha
    assert setup.server.wait_idle(WAIT_S)
    assert setup.server.stats["denied"] == 2
    # nothing of A's model ever reached B
    leftovers = []
    while not b.chunks.empty():
        leftovers.append(b.chunks.get_nowait())
    assert all(c.sha256 != model_sha or (c.error and not c.data) for c in leftovers)


# -- broadcast: the agent's own link and Fetcher against the blob server's broadcaster ------------------


class BroadcastDevice:
    """AgentLink (SUBACK-paced subscribe, broadcast envelopes) + Fetcher + BlobDownload, as the Deployer wires them."""

    def __init__(self, broker: MosquittoProcess, device_id: str, tmp, sha: str, size: int, protocol: str = "5"):
        import time as _time

        from agent.identity import Identity, MqttIdentity
        from agent.link import AgentLink
        from agent.transfer import BlobDownload, Fetcher
        from edgefleet.v1 import device_pb2

        ident = Identity(device_id=device_id, device_name=device_id, coordinator="127.0.0.1:1",
                         mqtt=MqttIdentity(url=f"mqtt://{broker.host}:{broker.port}", client_id=device_id, username="", password="",
                                           protocol=protocol, session_expiry_s=0),
                         public_key_hex="", key_id="")
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.link = AgentLink(ident, lambda: device_pb2.Hello(protocol_version=1), on_command=self._on_env)
        self.fetcher = Fetcher(self._send, clock=_time.monotonic, window=8, timeout_s=5.0)
        self.fetcher.enable_broadcast(self.link.subscribe, self.link.unsubscribe)  # done() runs on the link's worker
        self.download = BlobDownload(tmp / device_id, sha, size, CHUNK)
        self.device_id = device_id

    def _send(self, req) -> None:
        self.link.publish(topics.blob_req(self.device_id), envelope.encode(self.device_id, blob_request=req), qos=1)

    def _on_env(self, env) -> None:
        if env.WhichOneof("body") != "blob_chunk":
            return
        with self.lock:
            self.fetcher.on_chunk(env.blob_chunk)
            if self.download.complete:
                self.done.set()

    def start(self, offer=None) -> "BroadcastDevice":
        self.link.start()
        assert self.link.connected.wait(WAIT_S)
        with self.lock:
            if offer is not None:
                self.fetcher.set_offers([offer])
            self.fetcher.add(self.download)
            self.fetcher.pump()
        return self

    def stop(self) -> None:
        self.link.stop()
        self.download.close()


def _blob_server_stats(server):
    return server.broadcaster.stats["chunks"], server.stats["chunks"]


def test_broadcast_once_for_ready_devices_and_a_late_joiner_repaired_by_unicast(setup, tmp_path):
    from coordinator.transfer.grants import grant

    sha, data = setup.blobs["model"]
    with setup.server.grants.store.session() as s:
        grant(s, setup.b, sha, sequence=9, at=__import__("datetime").datetime.now(__import__("datetime").timezone.utc))
    c = setup.server  # the broadcaster waits 2 s after the first ready device for the others
    offer = c.open_broadcast(sha, CHUNK, [setup.a, setup.b, "cam-late"])
    ready = [BroadcastDevice(setup.broker, d, tmp_path, sha, len(data)).start(offer) for d in (setup.a, setup.b)]
    try:
        for d in ready:
            assert d.done.wait(WAIT_S), f"{d.device_id} did not get the blob"
            assert d.download.digest() == sha and d.fetcher.broadcast_chunks == 16 and d.fetcher.requested == 0
        assert _blob_server_stats(c) == (16, 0)  # 16 publishes for both devices, none by unicast

        # A device that comes after the broadcast: told `end` at once, fetches everything by unicast.
        late = BroadcastDevice(setup.broker, setup.a, tmp_path / "late", sha, len(data)).start(offer)
        ready.append(late)
        assert late.done.wait(WAIT_S) and late.download.digest() == sha
        assert late.fetcher.broadcast_chunks == 0 and _blob_server_stats(c) == (16, 16)
    finally:
        for d in ready:
            d.stop()


def test_broadcast_over_mqtt_311(setup, tmp_path):
    sha, data = setup.blobs["model"]
    offer = setup.server.open_broadcast(sha, CHUNK, [setup.a])
    d = BroadcastDevice(setup.broker, setup.a, tmp_path, sha, len(data), protocol="3.1.1").start(offer)
    try:
        assert d.done.wait(WAIT_S) and d.download.digest() == sha and d.fetcher.broadcast_chunks == 16
    finally:
        d.stop()


def test_a_device_without_the_key_reads_only_ciphertext(setup, tmp_path):
    sha, data = setup.blobs["model"]
    offer = setup.server.open_broadcast(sha, CHUNK, [setup.a])
    eavesdropped: queue.Queue = queue.Queue()
    spy = session.make_client("spy", "5")
    spy.on_connect = lambda client, ud, flags, rc, props: client.subscribe(topics.all_broadcasts(), qos=1)
    spy.on_subscribe = lambda *a: eavesdropped.put("subscribed")
    spy.on_message = lambda client, ud, msg: eavesdropped.put(envelope.decode(bytes(msg.payload)).blob_chunk)
    session.connect_async(spy, session.parse_broker_url(f"mqtt://{setup.broker.host}:{setup.broker.port}"), keepalive=30, session_expiry_s=0)
    spy.loop_start()
    try:
        assert eavesdropped.get(timeout=WAIT_S) == "subscribed"
        d = BroadcastDevice(setup.broker, setup.a, tmp_path, sha, len(data)).start(offer)
        try:
            assert d.done.wait(WAIT_S)
        finally:
            d.stop()
        seen = []
        while len(seen) < 17:
            seen.append(eavesdropped.get(timeout=WAIT_S))
        assert seen[-1].end and all(c.transfer_id == offer.transfer_id for c in seen)
        for c in seen[:-1]:
            plain = data[c.offset:c.offset + CHUNK]
            assert c.data != plain and plain[:32] not in c.data
    finally:
        spy.disconnect()
        spy.loop_stop()

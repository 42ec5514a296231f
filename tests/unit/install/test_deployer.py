"""agent.deployer: the facade the daemon wires in (worker thread, envelopes in, events out) and
on-device profiling of candidates that are never activated."""
from __future__ import annotations

import threading
from pathlib import Path

import pytest

from agent.deployer import Deployer
from edgefleet import envelope
from edgefleet.v1 import commands_pb2, events_pb2, hardware_pb2
from tests.unit.install import harness
from tests.unit.install.harness import DEVICE_ID, BlobServer


class Events:
    def __init__(self) -> None:
        self.items: list[events_pb2.Event] = []
        self.cond = threading.Condition()

    def __call__(self, event: events_pb2.Event) -> None:
        with self.cond:
            self.items.append(event)
            self.cond.notify_all()

    def wait(self, predicate, timeout: float = 30.0) -> events_pb2.Event:
        with self.cond:
            found = self.cond.wait_for(lambda: next((e for e in self.items if predicate(e)), None), timeout)
        assert found, f"no matching event within {timeout}s; got {[e.WhichOneof('kind') for e in self.items]}"
        return found

    def of(self, kind: str) -> list:
        with self.cond:
            return [getattr(e, kind) for e in self.items if e.WhichOneof("kind") == kind]


def committed(version: str):
    return lambda e: e.WhichOneof("kind") == "install" and e.install.state == events_pb2.INSTALL_STATE_COMMITTED and e.install.version == version


def command(cmd: commands_pb2.Command) -> object:
    return envelope.wrap(DEVICE_ID, command=cmd)


def test_threaded_deployer_installs_from_envelopes(tmp_path: Path, signer, models):
    server = BlobServer()
    events = Events()
    changes: list[tuple[Path | None, str | None]] = []
    holder: dict[str, Deployer] = {}

    def publish(topic: str, payload: bytes, qos: int) -> None:
        request = envelope.decode(payload, expect="blob_request").blob_request
        for chunk in server.answer(request):
            holder["d"].handle(envelope.wrap(DEVICE_ID, blob_chunk=chunk))  # only queues: no re-entry

    deployer = Deployer(tmp_path, harness.identity(signer), publish, events, tick_interval_s=0.05, acceptance_runs=3,
                        on_active_changed=lambda path, m: changes.append((path, m.version if m else None)))
    holder["d"] = deployer
    try:
        deployer.resume()
        model = (models / "float32.tflite").read_bytes()
        server.add(model)
        signed = signer.manifest(harness.manifest(model, version="7", sequence=3))
        assert deployer.handle(command(harness.deploy_command(signed, "c-1")))
        events.wait(committed("7"))
        assert deployer.active_model().version == "7" and deployer.last_sequence == 3
        assert deployer.active_model_path().read_bytes() == model
        assert deployer.active_manifest().sha256 == harness.sha256(model)
        assert changes == [(deployer.active_model_path(), "7")]
        # not for the deployer: a ping, a hello
        assert not deployer.handle(command(commands_pb2.Command(command_id="p", ping=commands_pb2.Ping(nonce="x"))))
        assert deployer.wait_idle(10)
    finally:
        deployer.close()


def test_reconnect_asks_again_for_missing_chunks(tmp_path: Path, signer, models):
    sent: list = []
    connects = {"n": 0}
    deployer = Deployer(tmp_path, harness.identity(signer), lambda t, p, q: sent.append(envelope.decode(p).blob_request),
                        lambda e: None, threaded=False, connection_count=lambda: connects["n"], window=2)
    deployer.resume()
    model = (models / "float32.tflite").read_bytes()
    deployer.handle(command(harness.deploy_command(signer.manifest(harness.manifest(model, version="1", sequence=1)), "c")))
    assert [list(r.offsets) for r in sent] == [[0, 256]]
    connects["n"] = 1      # the first connect: requests made before it wait in paho's queue
    deployer.tick()
    assert len(sent) == 1
    connects["n"] = 2      # a reconnect: answers to those requests may be lost, ask again
    deployer.tick()
    assert [list(r.offsets) for r in sent] == [[0, 256], [0, 256]]


def profile_request(signer, candidates, request_id="prof-1") -> commands_pb2.Command:
    return commands_pb2.Command(command_id=f"cmd-{request_id}", profile=commands_pb2.ProfileRequest(
        request_id=request_id, candidates=candidates, runs=5, warmup=1))


class InlineServer:
    """For threaded=False deployers: requests are collected, and answered by drain() (no re-entry)."""

    def __init__(self) -> None:
        self.server = BlobServer()
        self.pending: list = []
        self.deployer: Deployer | None = None

    def publish(self, topic, payload, qos) -> None:
        self.pending.append(envelope.decode(payload, expect="blob_request").blob_request)

    def handle(self, env) -> None:
        self.deployer.handle(env)
        self.drain()

    def drain(self) -> None:
        while self.pending:
            for chunk in self.server.answer(self.pending.pop(0)):
                self.deployer.handle(envelope.wrap(DEVICE_ID, blob_chunk=chunk))


def test_profiling_scales_simulated_latency_and_never_activates(tmp_path: Path, signer, models):
    inline = InlineServer()
    events = Events()
    calls: list[Path] = []

    def fake_profile(path, **kw):
        calls.append(Path(path))
        assert Path(path).read_bytes() == model  # the verified bytes
        return {"load_ms": 1.0, "p50_ms": 2.0, "p95_ms": 3.0, "peak_rss_bytes": 1234}

    hw = hardware_pb2.HardwareProfile(simulated=True, latency_factor=4.0)
    deployer = inline.deployer = Deployer(tmp_path, harness.identity(signer), inline.publish, events, threaded=False,
                                          hardware=lambda: hw, run_profile=fake_profile)
    deployer.resume()
    model = (models / "float32.tflite").read_bytes()
    inline.server.add(model)
    good = signer.manifest(harness.manifest(model, version="1", sequence=1, variant_id="fp32"))
    forged = harness.Signer().manifest(harness.manifest(model, version="1", sequence=1, variant_id="forged"), key_id=signer.key_id)
    inline.handle(command(profile_request(signer, [good, forged])))
    results = {r.variant_id: r for r in events.of("profile_result")}
    assert results["fp32"].p50_ms == 8.0 and results["fp32"].p95_ms == 12.0 and results["fp32"].load_ms == 4.0
    assert results["fp32"].simulated and results["fp32"].peak_rss_bytes == 1234 and not results["fp32"].error
    assert "bad signature" in results["forged"].error
    assert deployer.active_model() is None and deployer.last_sequence == 0     # nothing activated or accepted
    assert not calls[0].exists()                                               # the scratch copy is gone
    assert not events.of("install")


def test_profiling_with_the_real_runtime(tmp_path: Path, signer, models):
    inline = InlineServer()
    events = Events()
    deployer = inline.deployer = Deployer(tmp_path, harness.identity(signer), inline.publish, events, threaded=False)
    deployer.resume()
    good = (models / "float32.tflite").read_bytes()
    bad = (models / "custom_op.tflite").read_bytes()
    inline.server.add(good)
    inline.server.add(bad)
    candidates = [signer.manifest(harness.manifest(good, version="1", sequence=1, variant_id="fp32")),
                  signer.manifest(harness.manifest(bad, version="1", sequence=1, variant_id="custom"))]
    inline.handle(command(profile_request(signer, candidates)))
    results = {r.variant_id: r for r in events.of("profile_result")}
    assert not results["fp32"].error and results["fp32"].p50_ms > 0 and results["fp32"].peak_rss_bytes > 0
    assert not results["fp32"].simulated
    assert "BesselI0e" in results["custom"].error


def test_deploy_command_before_resume_waits_for_it(tmp_path: Path, signer, models):
    """The link may deliver before the daemon called resume(): the envelope waits in the queue."""
    events = Events()
    deployer = Deployer(tmp_path, harness.identity(signer), lambda *a: None, events, tick_interval_s=0.05)
    try:
        model = (models / "float32.tflite").read_bytes()
        forged = harness.Signer().manifest(harness.manifest(model, version="1", sequence=1))
        deployer.handle(command(harness.deploy_command(forged, "c-early")))
        assert not events.items
        deployer.resume()
        assert "signed with key" in events.wait(lambda e: e.WhichOneof("kind") == "rejected").rejected.reason
    finally:
        deployer.close()


@pytest.mark.parametrize("ok", [True, False])
def test_trial_outcome_from_the_monitor(tmp_path: Path, signer, models, ok):
    inline = InlineServer()
    events = Events()
    deployer = inline.deployer = Deployer(tmp_path, harness.identity(signer), inline.publish, events, threaded=False,
                                          acceptance_runs=3)
    deployer.resume()
    model = (models / "float32.tflite").read_bytes()
    inline.server.add(model)
    inline.handle(command(harness.deploy_command(
        signer.manifest(harness.manifest(model, version="1", sequence=1, trial_inferences=100)), "c")))
    assert deployer.trial_active() and deployer.trial_policy().inferences == 100
    assert deployer.record_trial_outcome(ok, "error rate 0.3 over 0.05", {"error_rate": 0.3})
    last = events.of("install")[-1]
    assert last.state == (events_pb2.INSTALL_STATE_COMMITTED if ok else events_pb2.INSTALL_STATE_ROLLED_BACK)
    assert (deployer.active_model() is not None) == ok
    assert not deployer.trial_active() and not deployer.commit()


def test_a_deploy_with_a_broadcast_offer_installs_from_the_broadcast(tmp_path: Path, signer, models):
    """The Deploy command's offer reaches the Fetcher before the command: the download subscribes, says
    ready after the SUBACK, stores the broadcast (sealed) chunks and asks nothing by unicast."""
    from edgefleet import blobcrypt, topics
    from edgefleet.v1 import transfer_pb2

    inline = InlineServer()
    events = Events()
    subscribed: dict[str, object] = {}
    deployer = inline.deployer = Deployer(tmp_path, harness.identity(signer), inline.publish, events, threaded=False,
                                          acceptance_runs=3, subscribe=lambda topic, done: subscribed.__setitem__(topic, done),
                                          unsubscribe=subscribed.pop)
    deployer.resume()
    model = (models / "float32.tflite").read_bytes()
    sha = inline.server.add(model)
    m = harness.manifest(model, version="1", sequence=1, chunk_size=4096)
    tid, key = blobcrypt.new_transfer()
    offer = transfer_pb2.BlobBroadcast(sha256=sha, transfer_id=tid, key=key, chunk_size=4096)
    cmd = commands_pb2.Command(command_id="c1", deploy=commands_pb2.Deploy(manifest=signer.manifest(m), broadcasts=[offer]))
    deployer.handle(command(cmd))
    topic = topics.broadcast(tid)
    assert list(subscribed) == [topic] and inline.pending == []  # nothing asked before the SUBACK
    subscribed[topic](True)
    assert [(r.ready, r.transfer_id, list(r.offsets)) for r in inline.pending] == [(True, tid, [])]
    inline.pending.clear()
    cipher = blobcrypt.ChunkCipher(key, tid, sha)
    for i, offset in enumerate(range(0, len(model), 4096)):
        chunk = transfer_pb2.BlobChunk(sha256=sha, offset=offset, total_size=len(model), transfer_id=tid,
                                       data=cipher.seal(i, model[offset:offset + 4096]))
        deployer.handle(envelope.wrap("", blob_chunk=chunk))
    events.wait(committed("1"), timeout=10)
    assert inline.pending == [] and topic not in subscribed  # no unicast, and unsubscribed
    assert deployer.installer.fetcher.broadcast_chunks == -(-len(model) // 4096)

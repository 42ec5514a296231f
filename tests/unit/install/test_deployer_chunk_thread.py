"""agent.deployer: chunks stored on the caller's thread (the link's worker) while the deployer's worker is
idle, one thread hop less per chunk; queued behind the worker's items otherwise; the end of a download and
everything after it on the worker."""
from __future__ import annotations

import queue
import threading
from pathlib import Path

from agent.deployer import Deployer
from edgefleet import envelope
from edgefleet.v1 import events_pb2
from tests.unit.install import harness
from tests.unit.install.harness import DEVICE_ID, BlobServer
from tests.unit.install.test_deployer import Events, command, committed

WAIT_S = 30


class Wire:
    """Records which thread published each chunk request and emitted each install state."""

    def __init__(self) -> None:
        self.requests: queue.Queue = queue.Queue()
        self.request_threads: list[str] = []
        self.state_threads: dict[int, str] = {}
        self.events = Events()

    def publish(self, topic: str, payload: bytes, qos: int) -> None:
        self.request_threads.append(threading.current_thread().name)
        self.requests.put(envelope.decode(payload, expect="blob_request").blob_request)

    def emit(self, event: events_pb2.Event) -> None:
        if event.WhichOneof("kind") == "install":
            self.state_threads.setdefault(event.install.state, threading.current_thread().name)
        self.events(event)


def _deployer(tmp_path: Path, signer, wire: Wire, ticked: threading.Event) -> Deployer:
    # One tick at start (it takes the lock), then none for an hour: the worker is idle between items.
    deployer = Deployer(tmp_path, harness.identity(signer), wire.publish, wire.emit, tick_interval_s=3600,
                        acceptance_runs=3, connection_count=lambda: ticked.set() or 0)
    deployer.resume()
    assert ticked.wait(WAIT_S), "the worker's first tick never ran"
    return deployer


def test_chunks_are_stored_on_the_callers_thread_and_the_install_finishes_on_the_worker(tmp_path: Path, signer, models):
    wire, ticked, server = Wire(), threading.Event(), BlobServer()
    deployer = _deployer(tmp_path, signer, wire, ticked)
    stop = threading.Event()

    def link_worker() -> None:
        while not stop.is_set():
            try:
                request = wire.requests.get(timeout=0.05)
            except queue.Empty:
                continue
            assert deployer.wait_idle(WAIT_S)  # the worker has nothing left to do: chunks go inline
            for chunk in server.answer(request):
                assert deployer.handle(envelope.wrap(DEVICE_ID, blob_chunk=chunk))

    feeder = threading.Thread(target=link_worker, name="link-worker", daemon=True)
    try:
        model = (models / "float32.tflite").read_bytes()
        golden = harness.golden_npz(models)
        server.add(model)
        server.add(golden)
        signed = signer.manifest(harness.manifest(model, version="7", sequence=3, golden=golden, chunk_size=128))
        ticked.wait(WAIT_S)
        deployer.handle(command(harness.deploy_command(signed, "c-1")))
        feeder.start()
        wire.events.wait(committed("7"), timeout=WAIT_S)
        assert deployer.active_model().version == "7"
        # The deploy command asked for the first window on the worker; every later request was sent by the
        # thread that stored the chunk freeing its slot: the caller's.
        assert wire.request_threads[0] == "deployer" and len(wire.request_threads) > 2
        assert set(wire.request_threads[1:]) == {"link-worker"}, wire.request_threads
        S = events_pb2
        assert wire.state_threads[S.INSTALL_STATE_DOWNLOADING] == "deployer"
        for state in (S.INSTALL_STATE_VERIFYING, S.INSTALL_STATE_STAGED, S.INSTALL_STATE_TRIAL, S.INSTALL_STATE_COMMITTED):
            assert wire.state_threads[state] == "deployer", (state, wire.state_threads)
    finally:
        stop.set()
        if feeder.is_alive():
            feeder.join(WAIT_S)
        deployer.close()


def test_a_chunk_waits_behind_what_the_worker_has_queued(tmp_path: Path, signer, models):
    wire, ticked, server = Wire(), threading.Event(), BlobServer()
    deployer = _deployer(tmp_path, signer, wire, ticked)
    release, busy = threading.Event(), threading.Event()
    try:
        model = (models / "float32.tflite").read_bytes()
        sha = server.add(model)
        deployer.handle(command(harness.deploy_command(
            signer.manifest(harness.manifest(model, version="1", sequence=1, chunk_size=512)), "c-1")))
        first = wire.requests.get(timeout=WAIT_S)
        assert deployer.wait_idle(WAIT_S)
        download = deployer.installer.fetcher.get(sha)
        deployer._run(lambda: (busy.set(), release.wait(WAIT_S)))  # the worker is busy with an earlier item
        assert busy.wait(WAIT_S)
        chunk = server.answer(first)[0]
        assert deployer.handle(envelope.wrap(DEVICE_ID, blob_chunk=chunk))
        assert download.bytes_done == 0  # queued, not stored past the worker's item
        release.set()
        assert deployer.wait_idle(WAIT_S)
        assert download.bytes_done == len(chunk.data)
    finally:
        release.set()
        deployer.close()


def test_a_chunk_before_resume_waits_for_it(tmp_path: Path, signer, models):
    """Before resume() the install a chunk belongs to is not open: the chunk is queued, not dropped."""
    wire = Wire()
    deployer = Deployer(tmp_path, harness.identity(signer), wire.publish, wire.emit, tick_interval_s=3600, acceptance_runs=3)
    server = BlobServer()
    try:
        model = (models / "float32.tflite").read_bytes()
        sha = server.add(model)
        deployer.resume()
        deployer.handle(command(harness.deploy_command(
            signer.manifest(harness.manifest(model, version="1", sequence=1, chunk_size=512)), "c-1")))
        first = wire.requests.get(timeout=WAIT_S)
        assert deployer.wait_idle(WAIT_S)
        deployer.close()  # persisted mid-download; a new deployer on the same state resumes it
        again = Deployer(tmp_path, harness.identity(signer), wire.publish, wire.emit, tick_interval_s=3600, acceptance_runs=3)
        chunk = server.answer(first)[0]
        assert again.handle(envelope.wrap(DEVICE_ID, blob_chunk=chunk))  # before resume: queued
        again.resume()
        assert again.wait_idle(WAIT_S)
        assert again.installer.fetcher.get(sha).bytes_done >= len(chunk.data)
        again.close()
    finally:
        deployer.close()

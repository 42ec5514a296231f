"""agent.transfer: windowed requests, out-of-order and duplicate chunks, bad chunks dropped and asked
again, timeouts on an injected clock, and resume from disk fetching only missing chunks."""
from __future__ import annotations

import hashlib
import random

import pytest

from agent.transfer import BlobDownload, Fetcher
from edgefleet.v1 import transfer_pb2
from tests.unit.install.harness import BlobServer, FakeClock

DATA = bytes(random.Random(1).randrange(256) for _ in range(10_000))
SHA = hashlib.sha256(DATA).hexdigest()
CHUNK = 1000


def make(tmp_path, window=3, timeout_s=5.0):
    clock = FakeClock()
    sent: list[transfer_pb2.BlobRequest] = []
    fetcher = Fetcher(sent.append, clock=clock, window=window, timeout_s=timeout_s)
    download = BlobDownload(tmp_path, SHA, len(DATA), CHUNK)
    fetcher.add(download)
    return fetcher, download, sent, clock


def offsets(sent):
    return [o for r in sent for o in r.offsets]


def chunk(offset, data=None):
    return transfer_pb2.BlobChunk(sha256=SHA, offset=offset, total_size=len(DATA),
                                  data=DATA[offset:offset + CHUNK] if data is None else data)


def test_window_limits_outstanding_requests(tmp_path):
    fetcher, download, sent, _ = make(tmp_path, window=3)
    assert fetcher.pump() == 3
    assert offsets(sent) == [0, 1000, 2000] and sent[0].chunk_size == CHUNK and sent[0].sha256 == SHA
    assert fetcher.pump() == 0  # the window is full
    fetcher.on_chunk(chunk(1000))
    assert offsets(sent)[3:] == [3000]  # one in, one more asked for


def test_out_of_order_and_duplicate_chunks(tmp_path):
    fetcher, download, sent, _ = make(tmp_path, window=20)
    fetcher.pump()
    order = list(range(0, len(DATA), CHUNK))
    random.Random(2).shuffle(order)
    kinds = [fetcher.on_chunk(chunk(o)).kind for o in order + order[:3]]
    assert kinds.count("stored") == 10 and kinds.count("duplicate") == 3
    assert download.complete and download.digest() == SHA and download.bytes_done == len(DATA)


def test_a_chunk_that_does_not_fit_is_dropped_and_asked_again(tmp_path):
    fetcher, download, sent, _ = make(tmp_path, window=2)
    fetcher.pump()
    outcome = fetcher.on_chunk(chunk(0, DATA[:CHUNK - 1]))
    assert outcome.kind == "dropped" and "has 999 bytes, expected 1000" in outcome.reason
    assert offsets(sent) == [0, 1000, 0]           # asked again at once, not after the timeout
    assert fetcher.on_chunk(chunk(123)).kind == "dropped"   # not a chunk boundary
    assert 0 not in download.have and fetcher.dropped == 2
    # the last chunk is short by design
    assert fetcher.on_chunk(chunk(9000)).kind == "stored" and download.expected_length(9000) == 1000


def test_unanswered_chunks_are_asked_again_after_the_timeout(tmp_path):
    fetcher, download, sent, clock = make(tmp_path, window=2, timeout_s=5.0)
    fetcher.pump()
    clock.advance(4.9)
    assert fetcher.expire() == 0 and len(offsets(sent)) == 2
    clock.advance(0.1)
    assert fetcher.expire() == 2
    assert offsets(sent) == [0, 1000, 0, 1000] and fetcher.rerequested == 2


def test_resume_after_reopen_fetches_only_missing_chunks(tmp_path):
    fetcher, download, sent, _ = make(tmp_path, window=10)
    fetcher.pump()
    for o in (0, 3000, 4000, 9000):
        fetcher.on_chunk(chunk(o))
    download.close()  # the agent dies here
    again = BlobDownload(tmp_path, SHA, len(DATA), CHUNK)
    assert again.resumed == 4
    sent2: list[transfer_pb2.BlobRequest] = []
    fetcher2 = Fetcher(sent2.append, clock=FakeClock(), window=10)
    fetcher2.add(again)
    fetcher2.pump()
    assert offsets(sent2) == [1000, 2000, 5000, 6000, 7000, 8000]
    for o in offsets(sent2):
        fetcher2.on_chunk(chunk(o))
    assert again.complete and again.digest() == SHA


def _file_sha(download):
    return hashlib.sha256(download.part_path.read_bytes()).hexdigest()


def test_in_order_chunks_are_hashed_as_written_without_reading_the_file_back(tmp_path, monkeypatch):
    download = BlobDownload(tmp_path, SHA, len(DATA), CHUNK)
    for o in range(0, len(DATA), CHUNK):
        assert download.write(o, DATA[o:o + CHUNK])
    import agent.transfer as transfer

    def no_reads(*a, **kw):
        raise AssertionError("read the file back although every chunk came in order")

    monkeypatch.setattr(transfer.os, "pread", no_reads)
    monkeypatch.setattr("builtins.open", no_reads)
    assert download.digest() == SHA and download.read_back == 0


def test_out_of_order_chunks_are_read_back_into_the_running_digest(tmp_path):
    download = BlobDownload(tmp_path, SHA, len(DATA), CHUNK)
    order = [1000, 0, 3000, 2000, *range(4000, len(DATA), CHUNK)]  # 1000 and 3000 ahead of the prefix
    for o in order:
        download.write(o, DATA[o:o + CHUNK])
    assert download.digest() == SHA and download.read_back == 2 * CHUNK
    # Wrong bytes stored out of order make the digest wrong: it is the file's, not the manifest's.
    other = BlobDownload(tmp_path / "b", SHA, len(DATA), CHUNK)
    for o in reversed(range(0, len(DATA), CHUNK)):
        other.write(o, b"\0" * CHUNK if o == 5000 else DATA[o:o + CHUNK])
    assert other.digest() == _file_sha(other) != SHA


def test_after_a_resume_the_chunks_found_on_disk_are_hashed_from_the_file(tmp_path):
    download = BlobDownload(tmp_path, SHA, len(DATA), CHUNK)
    for o in (0, 1000, 4000):
        download.write(o, DATA[o:o + CHUNK])
    download.close()
    # A power cut: the journal claims chunk 4000 but the disk lost it (zeros).
    with open(download.part_path, "r+b") as f:
        f.seek(4000)
        f.write(b"\0" * CHUNK)
    again = BlobDownload(tmp_path, SHA, len(DATA), CHUNK)
    assert again.resumed == 3
    for o in range(2000, len(DATA), CHUNK):
        if o != 4000:
            again.write(o, DATA[o:o + CHUNK])
    assert again.complete and again.digest() == _file_sha(again) != SHA
    again.reset()  # start over: the running digest starts over too
    for o in range(0, len(DATA), CHUNK):
        again.write(o, DATA[o:o + CHUNK])
    assert again.digest() == SHA == _file_sha(again)


def test_a_torn_journal_record_is_ignored(tmp_path):
    fetcher, download, sent, _ = make(tmp_path, window=10)
    fetcher.pump()
    fetcher.on_chunk(chunk(0))
    fetcher.on_chunk(chunk(1000))
    download.close()
    with open(download.journal_path, "ab") as f:
        f.write(b"\x01\x02\x03")  # half a record: the crash happened mid-write
    again = BlobDownload(tmp_path, SHA, len(DATA), CHUNK)
    assert again.have == {0, 1000}


def test_reconnect_asks_again_for_outstanding_chunks(tmp_path):
    fetcher, download, sent, _ = make(tmp_path, window=2)
    fetcher.pump()
    fetcher.forget_outstanding()
    assert offsets(sent) == [0, 1000, 0, 1000]


def test_error_and_unknown_chunks(tmp_path):
    fetcher, download, sent, _ = make(tmp_path)
    fetcher.pump()
    assert fetcher.on_chunk(transfer_pb2.BlobChunk(sha256="f" * 64, offset=0, data=b"x")).kind == "unknown"
    err = fetcher.on_chunk(transfer_pb2.BlobChunk(sha256=SHA, offset=0, error="unknown blob"))
    assert err.kind == "error" and "unknown blob" in err.reason


def test_two_downloads_share_one_window(tmp_path):
    fetcher, first, sent, _ = make(tmp_path, window=12)
    server = BlobServer()
    other = b"golden" * 300
    second = BlobDownload(tmp_path, server.add(other), len(other), CHUNK)
    fetcher.add(second)
    fetcher.pump()
    assert [len(r.offsets) for r in sent] == [10, 2] and sent[1].sha256 == second.sha256
    assert fetcher.outstanding == 12


@pytest.mark.parametrize("window", [0, -1])
def test_window_must_be_positive(window):
    with pytest.raises(ValueError, match="window must be at least 1"):
        Fetcher(lambda r: None, clock=FakeClock(), window=window)


def test_chunks_are_asked_for_in_batches_of_refill(tmp_path):
    sent = []
    download = BlobDownload(tmp_path, SHA, len(DATA), CHUNK)
    fetcher = Fetcher(sent.append, clock=FakeClock(), window=8)  # refill: half the window
    fetcher.add(download)
    assert fetcher.pump() == 8 and len(sent) == 1
    for offset in (0, 1000, 2000):
        fetcher.on_chunk(chunk(offset))
    assert len(sent) == 1 and fetcher.outstanding == 5  # three slots free: not yet
    fetcher.on_chunk(chunk(3000))
    assert len(sent) == 2 and offsets(sent)[8:] == [8000, 9000]  # four free, two chunks left: both in one request
    for offset in range(4000, 10000, 1000):
        fetcher.on_chunk(chunk(offset))
    assert download.complete and len(sent) == 2


@pytest.mark.parametrize("refill", [0, 9])
def test_refill_must_fit_the_window(refill):
    with pytest.raises(ValueError, match="refill must be between 1 and the window"):
        Fetcher(lambda r: None, clock=FakeClock(), window=8, refill=refill)


# -- broadcast ------------------------------------------------------------------------------------

from edgefleet import blobcrypt, topics  # noqa: E402

COUNT = len(DATA) // CHUNK


class Subs:
    """The link's subscribe/unsubscribe: SUBACKs are answered by the test."""

    def __init__(self):
        self.pending: dict[str, object] = {}
        self.active: set[str] = set()

    def subscribe(self, topic, done):
        self.pending[topic] = done

    def unsubscribe(self, topic):
        self.active.discard(topic)

    def suback(self, topic, granted=True):
        if granted:
            self.active.add(topic)
        self.pending.pop(topic)(granted)


def broadcast_setup(tmp_path, window=4, timeout_s=5.0):
    tid, key = blobcrypt.new_transfer()
    offer = transfer_pb2.BlobBroadcast(sha256=SHA, transfer_id=tid, key=key, chunk_size=CHUNK)
    clock = FakeClock()
    sent: list[transfer_pb2.BlobRequest] = []
    fetcher = Fetcher(sent.append, clock=clock, window=window, timeout_s=timeout_s)
    subs = Subs()
    fetcher.enable_broadcast(subs.subscribe, subs.unsubscribe)
    assert fetcher.set_offers([offer]) == 1
    download = BlobDownload(tmp_path, SHA, len(DATA), CHUNK)
    fetcher.add(download)
    fetcher.pump()
    return fetcher, download, sent, clock, subs, offer


def sealed(offer, index, data=None, key=None):
    cipher = blobcrypt.ChunkCipher(key or offer.key, offer.transfer_id, SHA)
    plain = DATA[index * CHUNK:(index + 1) * CHUNK]
    return transfer_pb2.BlobChunk(sha256=SHA, offset=index * CHUNK, total_size=len(DATA), transfer_id=offer.transfer_id,
                                  data=data if data is not None else cipher.seal(index, plain))


def end(offer):
    return transfer_pb2.BlobChunk(sha256=SHA, transfer_id=offer.transfer_id, end=True)


def test_broadcast_download_subscribes_says_ready_and_asks_nothing_by_unicast(tmp_path):
    fetcher, download, sent, clock, subs, offer = broadcast_setup(tmp_path)
    topic = topics.broadcast(offer.transfer_id)
    assert list(subs.pending) == [topic] and sent == []  # nothing asked before the SUBACK
    subs.suback(topic)
    assert len(sent) == 1 and sent[0].ready and sent[0].transfer_id == offer.transfer_id and not sent[0].offsets
    kinds = [fetcher.on_chunk(sealed(offer, i)).kind for i in range(COUNT)]
    assert kinds == ["stored"] * COUNT and len(sent) == 1  # every chunk from the broadcast, no unicast
    assert download.complete and download.digest() == SHA and fetcher.broadcast_chunks == COUNT
    assert topic not in subs.active  # unsubscribed once complete
    assert fetcher.on_chunk(end(offer)).kind == "duplicate" and len(sent) == 1


def test_a_late_joiner_gets_the_rest_from_the_broadcast_and_the_start_by_unicast(tmp_path):
    fetcher, download, sent, clock, subs, offer = broadcast_setup(tmp_path, window=10)
    subs.suback(topics.broadcast(offer.transfer_id))
    for i in range(4, COUNT):  # subscribed after chunks 0-3 went out
        assert fetcher.on_chunk(sealed(offer, i)).kind == "stored"
    assert offsets(sent) == []
    fetcher.on_chunk(end(offer))
    assert offsets(sent) == [0, 1000, 2000, 3000] and not sent[-1].ready
    for o in offsets(sent):
        fetcher.on_chunk(chunk(o))
    assert download.complete and download.digest() == SHA


def test_a_tampered_or_foreign_broadcast_chunk_is_rejected_and_fetched_again(tmp_path):
    fetcher, download, sent, clock, subs, offer = broadcast_setup(tmp_path, window=10)
    subs.suback(topics.broadcast(offer.transfer_id))
    good = sealed(offer, 2).data
    flipped = bytes([good[0] ^ 1]) + good[1:]
    outcome = fetcher.on_chunk(sealed(offer, 2, data=flipped))
    assert outcome.kind == "dropped" and "does not authenticate" in outcome.reason
    other_key = blobcrypt.new_transfer()[1]  # a device without the key sees only ciphertext it cannot open
    assert fetcher.on_chunk(sealed(offer, 3, key=other_key)).kind == "dropped"
    assert fetcher.broadcast_rejected == 2 and 2000 not in download.have and 3000 not in download.have
    for i in range(COUNT):
        if i not in (2, 3):
            fetcher.on_chunk(sealed(offer, i))
    fetcher.on_chunk(end(offer))
    assert offsets(sent) == [2000, 3000]  # repaired by unicast
    fetcher.on_chunk(chunk(2000))
    fetcher.on_chunk(chunk(3000))
    assert download.complete and download.digest() == SHA


def test_without_the_key_the_broadcast_is_ignored(tmp_path):
    clock = FakeClock()
    fetcher = Fetcher(lambda r: None, clock=clock, window=4)
    download = BlobDownload(tmp_path, SHA, len(DATA), CHUNK)
    fetcher.add(download)
    tid, key = blobcrypt.new_transfer()
    offer = transfer_pb2.BlobBroadcast(sha256=SHA, transfer_id=tid, key=key, chunk_size=CHUNK)
    assert fetcher.on_chunk(sealed(offer, 0)).kind == "unknown" and not download.have


def test_a_quiet_broadcast_falls_back_to_unicast(tmp_path):
    fetcher, download, sent, clock, subs, offer = broadcast_setup(tmp_path, window=3, timeout_s=5.0)
    subs.suback(topics.broadcast(offer.transfer_id))
    fetcher.on_chunk(sealed(offer, 0))
    clock.advance(4.9)
    fetcher.expire()
    assert offsets(sent) == []
    clock.advance(0.2)
    fetcher.expire()
    assert offsets(sent) == [1000, 2000, 3000] and not fetcher.broadcasting(SHA)


def test_a_refused_subscription_or_a_reconnect_means_unicast(tmp_path):
    fetcher, download, sent, clock, subs, offer = broadcast_setup(tmp_path, window=2)
    subs.suback(topics.broadcast(offer.transfer_id), granted=False)
    assert offsets(sent) == [0, 1000] and not any(r.ready for r in sent)

    fetcher, download, sent, clock, subs, offer = broadcast_setup(tmp_path / "b", window=2)
    subs.suback(topics.broadcast(offer.transfer_id))
    fetcher.forget_outstanding()
    assert offsets(sent) == [0, 1000] and topics.broadcast(offer.transfer_id) not in subs.active


def test_malformed_offers_are_ignored(tmp_path):
    fetcher = Fetcher(lambda r: None, clock=FakeClock())
    bad = [transfer_pb2.BlobBroadcast(sha256=SHA, transfer_id="x/#", key=b"k" * 32, chunk_size=CHUNK),
           transfer_pb2.BlobBroadcast(sha256=SHA, transfer_id="a" * 32, key=b"short", chunk_size=CHUNK)]
    assert fetcher.set_offers(bad) == 0

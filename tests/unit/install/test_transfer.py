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

"""Topics, envelopes, labels, and the generated code being current."""
from __future__ import annotations

import filecmp
import subprocess
import sys
from pathlib import Path

import pytest

from edgefleet import envelope, topics
from edgefleet.labels import LabelError, matches, parse_pairs, parse_selector
from edgefleet.v1 import device_pb2

ROOT = Path(__file__).resolve().parents[2]


def test_topics_round_trip():
    assert topics.status("d-1") == "ef/v1/dev/d-1/status"
    assert topics.blob_req("d-1") == "ef/v1/dev/d-1/blob/req"
    assert topics.shared(topics.all_devices("event")) == "$share/coordinators/ef/v1/dev/+/event"
    p = topics.parse("ef/v1/dev/d-1/blob/req")
    assert (p.device_id, p.kind) == ("d-1", "blob/req")
    assert topics.parse("ef/v1/dev/d-1/nope") is None
    assert topics.parse("other/topic") is None
    with pytest.raises(ValueError):
        topics.status("a/b")
    with pytest.raises(ValueError):
        topics.status("+")


def test_envelope_carries_id_time_and_type():
    env = envelope.wrap("d-1", now=1000.0, status=device_pb2.Status(state=device_pb2.DEVICE_STATE_ONLINE))
    back = envelope.decode(env.SerializeToString(), expect="status")
    assert back.message_id == env.message_id and len(back.message_id) == 32
    assert back.sent_at.seconds == 1000
    assert back.WhichOneof("body") == "status"
    with pytest.raises(envelope.BadPayload, match="expected a hello"):
        envelope.decode(env.SerializeToString(), expect="hello")


@pytest.mark.parametrize("payload", [b"\xff\xff\xff", b"garbage that is not protobuf \x00\x01", b"\x0a"])
def test_garbage_is_a_bad_payload(payload):
    with pytest.raises(envelope.BadPayload):
        envelope.decode(payload)


def test_envelope_without_body_or_id_is_bad():
    from edgefleet.v1 import envelope_pb2

    with pytest.raises(envelope.BadPayload, match="message_id"):
        envelope.decode(envelope_pb2.Envelope(protocol_version=1).SerializeToString())
    with pytest.raises(envelope.BadPayload, match="without a body"):
        envelope.decode(envelope_pb2.Envelope(message_id="x", protocol_version=1).SerializeToString())


def test_selectors_and_labels():
    assert parse_selector("role=camera, site=lab") == {"role": "camera", "site": "lab"}
    assert parse_selector("") == {}
    assert matches({"role": "camera", "x": "1"}, {"role": "camera"})
    assert not matches({"role": "gw"}, {"role": "camera"})
    for bad in ("role", "role=", "=x", "ro le=x"):
        with pytest.raises(LabelError):
            parse_selector(bad)
    with pytest.raises(LabelError, match="expected key=value"):
        parse_pairs(["novalue"])


def test_generated_code_is_current(tmp_path):
    """Fails when a .proto changed and `python protos/generate.py` was not run."""
    subprocess.run([sys.executable, str(ROOT / "protos" / "generate.py"), "--out", str(tmp_path)], check=True, capture_output=True)
    fresh = tmp_path / "edgefleet" / "v1"
    committed = ROOT / "protos" / "edgefleet" / "v1"
    names = sorted(p.name for p in fresh.iterdir() if p.is_file())
    assert names, "generator produced nothing"
    stale = [n for n in names if not (committed / n).exists() or not filecmp.cmp(fresh / n, committed / n, shallow=False)]
    assert not stale, f"generated code is stale, run `python protos/generate.py`: {stale}"

"""agent.manifest: only a manifest signed by the enrollment key, for this device, with a fresh
sequence is accepted; a signed rollback order is the one way back."""
from __future__ import annotations

import pytest

from agent.manifest import ManifestRejected, ManifestVerifier
from edgefleet.v1 import commands_pb2
from tests.unit.install import harness
from tests.unit.install.harness import DEVICE_ID, Signer

MODEL = b"\x00tflite-bytes" * 10


@pytest.fixture
def verifier(signer: Signer) -> ManifestVerifier:
    return ManifestVerifier(signer.public_raw, signer.key_id, DEVICE_ID)


def test_a_good_manifest_is_accepted(verifier, signer):
    m = harness.manifest(MODEL, version="1", sequence=5)
    assert verifier.manifest(signer.manifest(m), last_sequence=4) == m


def test_bad_signature(verifier, signer):
    signed = signer.manifest(harness.manifest(MODEL, version="1", sequence=5))
    signed.signature = bytes([signed.signature[0] ^ 1]) + signed.signature[1:]
    with pytest.raises(ManifestRejected, match="bad signature"):
        verifier.manifest(signed, last_sequence=0)


def test_tampered_manifest_bytes(verifier, signer):
    signed = signer.manifest(harness.manifest(MODEL, version="1", sequence=5))
    tampered = harness.manifest(MODEL, version="1", sequence=500)
    signed.manifest = tampered.SerializeToString()  # a bigger sequence, the old signature
    with pytest.raises(ManifestRejected, match="bad signature"):
        verifier.manifest(signed, last_sequence=0)


def test_another_key_claiming_the_trusted_key_id(verifier, signer):
    forger = Signer()
    signed = forger.manifest(harness.manifest(MODEL, version="1", sequence=5), key_id=signer.key_id)
    with pytest.raises(ManifestRejected, match="bad signature"):
        verifier.manifest(signed, last_sequence=0)


def test_wrong_key_id(verifier, signer):
    signed = signer.manifest(harness.manifest(MODEL, version="1", sequence=5), key_id="0123456789abcdef")
    with pytest.raises(ManifestRejected, match="signed with key 0123456789abcdef, but this device trusts key"):
        verifier.manifest(signed, last_sequence=0)


def test_manifest_for_another_device(verifier, signer):
    signed = signer.manifest(harness.manifest(MODEL, version="1", sequence=5, device_id="someone-else"))
    with pytest.raises(ManifestRejected, match="for device someone-else, not this device"):
        verifier.manifest(signed, last_sequence=0)


@pytest.mark.parametrize("sequence", [3, 4], ids=["lower", "replayed"])
def test_sequence_not_above_the_last_accepted(verifier, signer, sequence):
    signed = signer.manifest(harness.manifest(MODEL, version="1", sequence=sequence))
    with pytest.raises(ManifestRejected, match=f"sequence {sequence} is not above the last accepted sequence 4"):
        verifier.manifest(signed, last_sequence=4)


def test_profiling_candidates_skip_the_sequence_rule(verifier, signer):
    signed = signer.manifest(harness.manifest(MODEL, version="1", sequence=1))
    assert verifier.manifest(signed, last_sequence=None).sequence == 1


def test_malformed_fields_are_named(verifier, signer):
    m = harness.manifest(MODEL, version="1", sequence=5)
    m.sha256 = "not-hex"
    m.chunk_size = 0
    m.acceptance.min_metric = 0.9  # and no golden set
    with pytest.raises(ManifestRejected) as info:
        verifier.manifest(signer.manifest(m), last_sequence=0)
    text = str(info.value)
    assert "sha256 must be 64 lowercase hex" in text and "chunk_size" in text and "need a golden set" in text


def test_signed_rollback_order(verifier, signer):
    order = commands_pb2.RollbackOrder(device_id=DEVICE_ID, rollout_id="r1", sequence=9, reason="wave aborted")
    assert verifier.rollback(signer.rollback(order), last_sequence=8) == order
    with pytest.raises(ManifestRejected, match="rollback order sequence 9 is not above"):
        verifier.rollback(signer.rollback(order), last_sequence=9)


def test_rollback_order_forged_or_misaddressed(verifier, signer):
    order = commands_pb2.RollbackOrder(device_id=DEVICE_ID, rollout_id="r1", sequence=9)
    forged = Signer().rollback(order)
    forged.key_id = signer.key_id
    with pytest.raises(ManifestRejected, match="rollback order has a bad signature"):
        verifier.rollback(forged, last_sequence=0)
    other = commands_pb2.RollbackOrder(device_id="other", rollout_id="r1", sequence=9)
    with pytest.raises(ManifestRejected, match="rollback order is for device other"):
        verifier.rollback(signer.rollback(other), last_sequence=0)

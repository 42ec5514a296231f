"""Signed manifests, rollback orders, blob grants and command envelopes."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from coordinator.signing import Signer
from coordinator.transfer.commands import command_message, deploy_command, profile_command, send_command
from coordinator.transfer.grants import BlobGrants
from coordinator.transfer.manifests import ManifestError, ManifestIssuer, ManifestSpec, verify_manifest, verify_rollback
from coordinator.transfer.sequences import SequenceCounter
from edgefleet import envelope, topics
from edgefleet.v1 import commands_pb2, manifest_pb2

MODEL_SHA = "ab" * 32
GOLDEN_SHA = "cd" * 32
NOW = datetime(2026, 11, 21, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def signer():
    return Signer(Ed25519PrivateKey.generate())


@pytest.fixture
def issuer(store, signer):
    return ManifestIssuer(store, signer, clock=lambda: NOW)


def spec(**kw) -> ManifestSpec:
    base = dict(
        model="digits",
        version="3",
        variant_id="int8",
        technique="ptq_int8",
        sha256=MODEL_SHA,
        size_bytes=42_864,
        inputs=[manifest_pb2.TensorSpec(name="x", shape=[1, 8, 8, 1], dtype="int8", scale=0.06, zero_point=-128)],
        outputs=[manifest_pb2.TensorSpec(name="y", shape=[1, 10], dtype="int8", scale=0.0039, zero_point=-128)],
        golden=manifest_pb2.GoldenSet(sha256=GOLDEN_SHA, size_bytes=9000, count=64),
        acceptance=manifest_pb2.AcceptanceThresholds(min_metric=0.95, max_p95_ms=20),
        trial=manifest_pb2.TrialPolicy(inferences=100, seconds=60),
        requires_delegate="",
    )
    base.update(kw)
    return ManifestSpec(**base)


def test_issued_manifest_is_signed_sequenced_and_grants_its_blobs(store, issuer, signer):
    signed = issuer.issue("d-cam1", spec(), rollout_id="r-1")
    assert signed.key_id == signer.key_id
    m = verify_manifest(signed, signer.public_raw, device_id="d-cam1")
    assert (m.device_id, m.model, m.version, m.variant_id, m.sha256, m.size_bytes) == ("d-cam1", "digits", "3", "int8", MODEL_SHA, 42_864)
    assert (m.sequence, m.chunk_size, m.rollout_id, m.task) == (1, 128 * 1024, "r-1", "classification")
    assert m.golden.sha256 == GOLDEN_SHA and m.acceptance.min_metric == 0.95 and m.trial.inferences == 100
    assert m.inputs[0].zero_point == -128 and list(m.outputs[0].shape) == [1, 10]
    assert m.issued_at.ToDatetime(tzinfo=timezone.utc) == NOW
    grants = BlobGrants(store)
    assert sorted(grants.for_device("d-cam1")) == sorted([MODEL_SHA, GOLDEN_SHA])
    assert grants.allowed("d-cam1", MODEL_SHA) and not grants.allowed("d-cam2", MODEL_SHA)
    # the next manifest to the same device carries a higher sequence; the grant is not duplicated
    again = verify_manifest(issuer.issue("d-cam1", spec(variant_id="fp32", technique="baseline")), signer.public_raw)
    assert again.sequence == 2
    assert len(grants.for_device("d-cam1")) == 2


def test_several_manifests_in_one_go_each_get_their_own_sequence(issuer, signer):
    signed = issuer.issue_many("d-x", [spec(variant_id="fp32"), spec(variant_id="int8")], floor=10)
    assert [verify_manifest(s, signer.public_raw).sequence for s in signed] == [11, 12]


def test_tampering_another_key_or_another_device_is_refused(issuer, signer):
    signed = issuer.issue("d-cam1", spec())
    tampered = manifest_pb2.SignedManifest()
    tampered.CopyFrom(signed)
    m = manifest_pb2.ModelManifest.FromString(signed.manifest)
    m.sha256 = "ee" * 32
    tampered.manifest = m.SerializeToString()
    with pytest.raises(ManifestError, match="bad signature"):
        verify_manifest(tampered, signer.public_raw)
    other = Signer(Ed25519PrivateKey.generate())
    with pytest.raises(ManifestError, match=f"expected {other.key_id}"):
        verify_manifest(signed, other.public_raw)
    forged = manifest_pb2.SignedManifest(manifest=signed.manifest, signature=other.sign(signed.manifest), key_id=signer.key_id)
    with pytest.raises(ManifestError, match="bad signature"):
        verify_manifest(forged, signer.public_raw)
    with pytest.raises(ManifestError, match="for device d-cam1, not d-cam2"):
        verify_manifest(signed, signer.public_raw, device_id="d-cam2")


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(sha256="XYZ"), "sha256 must be 64 lowercase hex"),
        (dict(size_bytes=0), "size_bytes must be > 0"),
        (dict(chunk_size=100), "chunk_size 100 is outside"),
        (dict(task="ranking"), "task must be one of"),
        (dict(version=""), "model, version and variant_id are required"),
        (dict(golden=manifest_pb2.GoldenSet(sha256="nope")), "golden set sha256"),
    ],
)
def test_bad_specs_are_refused_before_anything_is_recorded(store, issuer, change, message):
    with pytest.raises(ManifestError, match=message):
        issuer.issue("d-cam1", spec(**change))
    assert SequenceCounter(store).current("d-cam1") == 0
    assert BlobGrants(store).for_device("d-cam1") == []
    with pytest.raises(ManifestError, match="invalid device id"):
        issuer.issue("bad/id", spec())


def test_rollback_order_is_signed_with_its_own_higher_sequence(issuer, signer):
    issuer.issue("d-cam1", spec())
    cmd = issuer.sign_rollback("d-cam1", "r-7", "wave 1 aborted: 40% failed")
    assert cmd.WhichOneof("kind") == "rollback" and len(cmd.command_id) == 32
    order = verify_rollback(cmd.rollback, signer.public_raw, device_id="d-cam1")
    assert (order.device_id, order.rollout_id, order.sequence, order.reason) == ("d-cam1", "r-7", 2, "wave 1 aborted: 40% failed")
    assert verify_manifest(issuer.issue("d-cam1", spec()), signer.public_raw).sequence == 3
    bad = commands_pb2.Rollback()
    bad.CopyFrom(cmd.rollback)
    bad.order = commands_pb2.RollbackOrder(device_id="d-cam1", rollout_id="r-7", sequence=99).SerializeToString()
    with pytest.raises(ManifestError, match="bad signature"):
        verify_rollback(bad, signer.public_raw)


def test_commands_travel_in_envelopes_on_the_device_cmd_topic(issuer):
    signed = issuer.issue("d-cam1", spec())
    deploy = deploy_command(signed, command_id="c-1")
    topic, payload = command_message("d-cam1", deploy)
    assert topic == topics.cmd("d-cam1") == "ef/v1/dev/d-cam1/cmd"
    env = envelope.decode(payload, expect="command")
    assert env.device_id == "d-cam1" and env.command.command_id == "c-1"
    assert env.command.deploy.manifest == signed
    prof = profile_command("p-1", [signed, signed], warmup=3, runs=20)
    assert (prof.profile.request_id, len(prof.profile.candidates), prof.profile.warmup, prof.profile.runs) == ("p-1", 2, 3, 20)
    sent = []
    send_command(lambda topic, payload, qos: sent.append((topic, qos, envelope.decode(payload).command.command_id)), "d-cam1", deploy)
    assert sent == [("ef/v1/dev/d-cam1/cmd", 1, "c-1")]

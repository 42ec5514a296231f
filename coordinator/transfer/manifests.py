"""Signed manifests and rollback orders.

A manifest names one artifact for one device with a sequence from that device's counter; the
coordinator signs the serialized bytes with its Ed25519 key, and the agent verifies those exact bytes
with the public key it got at enrollment. Issuing a manifest also grants the device the blobs it
names (the model artifact and the golden set), in the same transaction as the sequence.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Sequence

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from coordinator.signing import key_id as key_id_of
from coordinator.store.db import Store
from coordinator.transfer.commands import new_command_id
from coordinator.transfer.grants import grant_many
from coordinator.transfer.sequences import next_sequence
from edgefleet import topics
from edgefleet.v1 import commands_pb2, manifest_pb2

DEFAULT_CHUNK_SIZE = 128 * 1024
MIN_CHUNK_SIZE = 4 * 1024
MAX_CHUNK_SIZE = 1024 * 1024
TASKS = ("classification", "regression")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class ManifestError(ValueError):
    """A manifest that cannot be issued or does not verify; the message says what is wrong."""


@dataclass(frozen=True)
class ManifestSpec:
    """Everything a manifest says about the model, before the device, sequence and signature are added."""

    model: str
    version: str
    variant_id: str
    technique: str
    sha256: str
    size_bytes: int
    task: str = "classification"
    inputs: Sequence[manifest_pb2.TensorSpec] = ()
    outputs: Sequence[manifest_pb2.TensorSpec] = ()
    input_features: Sequence[int] = ()
    golden: manifest_pb2.GoldenSet | None = None
    acceptance: manifest_pb2.AcceptanceThresholds | None = None
    trial: manifest_pb2.TrialPolicy | None = None
    calibration: manifest_pb2.CalibrationStats | None = None
    requires_delegate: str = ""
    chunk_size: int = DEFAULT_CHUNK_SIZE
    extra_grants: tuple[str, ...] = field(default=())  # other blobs the device may fetch with it

    def check(self) -> None:
        where = f"manifest for {self.model}:{self.version} variant {self.variant_id!r}"
        if not self.model or not self.version or not self.variant_id:
            raise ManifestError(f"{where}: model, version and variant_id are required")
        if not _SHA256.match(self.sha256 or ""):
            raise ManifestError(f"{where}: sha256 must be 64 lowercase hex digits, got {self.sha256!r}")
        if self.size_bytes <= 0:
            raise ManifestError(f"{where}: size_bytes must be > 0, got {self.size_bytes}")
        if not MIN_CHUNK_SIZE <= self.chunk_size <= MAX_CHUNK_SIZE:
            raise ManifestError(f"{where}: chunk_size {self.chunk_size} is outside {MIN_CHUNK_SIZE}..{MAX_CHUNK_SIZE}")
        if self.task not in TASKS:
            raise ManifestError(f"{where}: task must be one of {', '.join(TASKS)}, got {self.task!r}")
        if self.golden is not None and self.golden.sha256 and not _SHA256.match(self.golden.sha256):
            raise ManifestError(f"{where}: golden set sha256 must be 64 lowercase hex digits, got {self.golden.sha256!r}")
        for sha in self.extra_grants:
            if not _SHA256.match(sha):
                raise ManifestError(f"{where}: extra grant {sha!r} is not a sha256")

    def blobs(self) -> list[str]:
        """Every blob the manifest lets the device fetch."""
        out = [self.sha256]
        if self.golden is not None and self.golden.sha256:
            out.append(self.golden.sha256)
        out += list(self.extra_grants)
        return list(dict.fromkeys(out))


def build_manifest(spec: ManifestSpec, device_id: str, sequence: int, *, rollout_id: str = "", issued_at: datetime | None = None) -> manifest_pb2.ModelManifest:
    m = manifest_pb2.ModelManifest(
        device_id=device_id,
        model=spec.model,
        version=spec.version,
        variant_id=spec.variant_id,
        technique=spec.technique,
        sha256=spec.sha256,
        size_bytes=spec.size_bytes,
        chunk_size=spec.chunk_size,
        sequence=sequence,
        task=spec.task,
        input_features=list(spec.input_features),
        rollout_id=rollout_id,
        requires_delegate=spec.requires_delegate,
    )
    m.inputs.extend(spec.inputs)
    m.outputs.extend(spec.outputs)
    for name in ("golden", "acceptance", "trial", "calibration"):
        value = getattr(spec, name)
        if value is not None:
            getattr(m, name).CopyFrom(value)
    m.issued_at.FromDatetime(issued_at or datetime.now(timezone.utc))
    return m


class ManifestIssuer:
    """Allocates sequences, records blob grants and signs, with ctx.store and ctx.signer."""

    def __init__(self, store: Store, signer, *, clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)):
        self.store = store
        self.signer = signer
        self.clock = clock

    def issue(self, device_id: str, spec: ManifestSpec, *, rollout_id: str = "", floor: int = 0) -> manifest_pb2.SignedManifest:
        """One signed manifest for one device. `floor`: the device's last accepted sequence, if known."""
        return self.issue_many(device_id, [spec], rollout_id=rollout_id, floor=floor)[0]

    def issue_many(self, device_id: str, specs: Sequence[ManifestSpec], *, rollout_id: str = "", floor: int = 0) -> list[manifest_pb2.SignedManifest]:
        """Several manifests for one device in one transaction (profiling candidates), each with its own sequence."""
        if not topics.valid_device_id(device_id):
            raise ManifestError(f"invalid device id {device_id!r}")
        for spec in specs:
            spec.check()
        now = self.clock()
        built = []
        with self.store.session() as s:
            grants = []
            for spec in specs:
                seq = next_sequence(s, device_id, floor=floor)
                grants += [(device_id, sha, seq) for sha in spec.blobs()]
                built.append(build_manifest(spec, device_id, seq, rollout_id=rollout_id, issued_at=now))
            grant_many(s, grants, at=now)
        # Sign after commit: a signature for a sequence the store never recorded must not exist.
        return [self.sign_manifest(m) for m in built]

    def issue_each(self, requests: Sequence[tuple[str, ManifestSpec, int]], *, rollout_id: str = "") -> list[manifest_pb2.SignedManifest]:
        """One manifest per (device_id, spec, floor), all in one transaction (a rollout's wave: one commit
        instead of one per device)."""
        for device_id, spec, _ in requests:
            if not topics.valid_device_id(device_id):
                raise ManifestError(f"invalid device id {device_id!r}")
            spec.check()
        now = self.clock()
        built = []
        with self.store.session() as s:
            grants = []
            for device_id, spec, floor in requests:
                seq = next_sequence(s, device_id, floor=floor)
                grants += [(device_id, sha, seq) for sha in spec.blobs()]
                built.append(build_manifest(spec, device_id, seq, rollout_id=rollout_id, issued_at=now))
            grant_many(s, grants, at=now)
        return [self.sign_manifest(m) for m in built]

    def sign_manifest(self, manifest: manifest_pb2.ModelManifest) -> manifest_pb2.SignedManifest:
        data = manifest.SerializeToString(deterministic=True)
        return manifest_pb2.SignedManifest(manifest=data, signature=self.signer.sign(data), key_id=self.signer.key_id)

    def sign_rollback(self, device_id: str, rollout_id: str, reason: str, *, command_id: str | None = None, floor: int = 0) -> commands_pb2.Command:
        """A Command.rollback: a signed RollbackOrder with its own (new, higher) sequence."""
        return self.sign_rollbacks([(device_id, floor)], rollout_id, reason, command_ids=[command_id] if command_id else None)[0]

    def sign_rollbacks(self, requests: Sequence[tuple[str, int]], rollout_id: str, reason: str, *,
                       command_ids: Sequence[str] | None = None) -> list[commands_pb2.Command]:
        """sign_rollback() for each (device_id, floor), the sequences allocated in one transaction (an abort
        of a 50-device wave: one commit instead of fifty)."""
        for device_id, _ in requests:
            if not topics.valid_device_id(device_id):
                raise ManifestError(f"invalid device id {device_id!r}")
        with self.store.session() as s:
            sequences = [next_sequence(s, device_id, floor=floor) for device_id, floor in requests]
        # Signed after commit, as manifests are.
        out = []
        for i, ((device_id, _), seq) in enumerate(zip(requests, sequences)):
            order = commands_pb2.RollbackOrder(device_id=device_id, rollout_id=rollout_id, sequence=seq, reason=reason)
            data = order.SerializeToString(deterministic=True)
            rollback = commands_pb2.Rollback(order=data, signature=self.signer.sign(data), key_id=self.signer.key_id)
            out.append(commands_pb2.Command(command_id=(command_ids[i] if command_ids else None) or new_command_id(), rollback=rollback))
        return out


def _verify(data: bytes, signature: bytes, key_id: str, public_raw: bytes, what: str) -> None:
    expected = key_id_of(public_raw)
    if key_id != expected:
        raise ManifestError(f"{what} signed with key {key_id or '(none)'}, expected {expected}")
    try:
        Ed25519PublicKey.from_public_bytes(public_raw).verify(signature, data)
    except InvalidSignature:
        raise ManifestError(f"{what}: bad signature") from None


def verify_manifest(signed: manifest_pb2.SignedManifest, public_raw: bytes, *, device_id: str | None = None) -> manifest_pb2.ModelManifest:
    """Check the signature over the exact bytes, then parse; raise ManifestError naming what failed.

    The coordinator-side mirror of what the agent does (tests, tools); the agent has its own copy.
    """
    _verify(signed.manifest, signed.signature, signed.key_id, public_raw, "manifest")
    m = manifest_pb2.ModelManifest()
    m.ParseFromString(signed.manifest)
    if device_id is not None and m.device_id != device_id:
        raise ManifestError(f"manifest is for device {m.device_id}, not {device_id}")
    return m


def verify_rollback(rollback: commands_pb2.Rollback, public_raw: bytes, *, device_id: str | None = None) -> commands_pb2.RollbackOrder:
    _verify(rollback.order, rollback.signature, rollback.key_id, public_raw, "rollback order")
    order = commands_pb2.RollbackOrder()
    order.ParseFromString(rollback.order)
    if device_id is not None and order.device_id != device_id:
        raise ManifestError(f"rollback order is for device {order.device_id}, not {device_id}")
    return order

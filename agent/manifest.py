"""Verify what the coordinator signs: model manifests and rollback orders.

A manifest is accepted only when it is signed (Ed25519) by the key this device got at enrollment,
names this device, and carries a sequence number above every sequence accepted before; the one way
back to an older model is a rollback order, itself signed and sequenced. So a replayed, forged or
misaddressed command is refused, and the reason says which check failed.
"""
from __future__ import annotations

import hashlib
import re

from google.protobuf.message import DecodeError

from edgefleet import libcrypto
from edgefleet.v1 import commands_pb2, manifest_pb2

TASKS = ("classification", "regression")
# A chunk travels in one MQTT message: keep it well under brokers' usual message limits.
MAX_CHUNK_SIZE = 4 * 1024 * 1024
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class ManifestRejected(ValueError):
    """A manifest or rollback order this device must not act on; the message says why."""


def key_id(public_raw: bytes) -> str:
    """First 16 hex digits of SHA-256 of the raw public key (as the coordinator names its key)."""
    return hashlib.sha256(public_raw).hexdigest()[:16]


class ManifestVerifier:
    def __init__(self, public_key: bytes, trusted_key_id: str, device_id: str) -> None:
        if len(public_key) != 32:
            raise ValueError(f"the enrollment public key must be 32 raw Ed25519 bytes, got {len(public_key)}")
        self._public_key = bytes(public_key)
        self._key = None  # cryptography's key, made at the first verification when libcrypto is not usable
        self.key_id = trusted_key_id or key_id(public_key)
        self.device_id = device_id

    def _check_signature(self, data: bytes, signature: bytes, signer_key_id: str, what: str) -> None:
        if signer_key_id != self.key_id:
            raise ManifestRejected(f"{what} signed with key {signer_key_id or '(none)'}, but this device trusts key {self.key_id}")
        if not self._signature_valid(bytes(signature), bytes(data)):
            raise ManifestRejected(f"{what} has a bad signature (key {self.key_id})")

    def _signature_valid(self, signature: bytes, data: bytes) -> bool:
        # The OpenSSL that hashlib already loaded when it can (edgefleet.libcrypto); `cryptography`
        # otherwise, imported only then: it costs about 7 MB resident for good.
        openssl = libcrypto.load()
        if openssl is not None:
            try:
                return openssl.ed25519_verify(self._public_key, signature, data)
            except ValueError:  # OpenSSL refused the key itself: nothing verifies under it
                return False
        from cryptography.exceptions import InvalidSignature

        if self._key is None:
            from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

            self._key = Ed25519PublicKey.from_public_bytes(self._public_key)
        try:
            self._key.verify(signature, data)
        except InvalidSignature:
            return False
        return True

    def _check_sequence(self, sequence: int, last_sequence: int, what: str) -> None:
        if sequence <= last_sequence:
            raise ManifestRejected(
                f"{what} sequence {sequence} is not above the last accepted sequence {last_sequence} (replayed or out of date)")

    def manifest(self, signed: manifest_pb2.SignedManifest, *, last_sequence: int | None) -> manifest_pb2.ModelManifest:
        """The verified manifest; `last_sequence=None` skips the sequence rule (profiling candidates,
        which are never activated)."""
        self._check_signature(signed.manifest, signed.signature, signed.key_id, "manifest")
        manifest = manifest_pb2.ModelManifest()
        try:
            manifest.ParseFromString(signed.manifest)
        except DecodeError as exc:
            raise ManifestRejected(f"signed manifest bytes are not a ModelManifest: {exc}") from None
        if manifest.device_id != self.device_id:
            raise ManifestRejected(f"manifest is for device {manifest.device_id or '(none)'}, not this device ({self.device_id})")
        if last_sequence is not None:
            self._check_sequence(manifest.sequence, last_sequence, "manifest")
        check_fields(manifest)
        return manifest

    def rollback(self, rollback: commands_pb2.Rollback, *, last_sequence: int) -> commands_pb2.RollbackOrder:
        self._check_signature(rollback.order, rollback.signature, rollback.key_id, "rollback order")
        order = commands_pb2.RollbackOrder()
        try:
            order.ParseFromString(rollback.order)
        except DecodeError as exc:
            raise ManifestRejected(f"signed rollback bytes are not a RollbackOrder: {exc}") from None
        if order.device_id != self.device_id:
            raise ManifestRejected(f"rollback order is for device {order.device_id or '(none)'}, not this device ({self.device_id})")
        self._check_sequence(order.sequence, last_sequence, "rollback order")
        return order


def check_fields(m: manifest_pb2.ModelManifest) -> None:
    """Fields the install path relies on; a coordinator bug should fail here, not halfway through."""
    problems = []
    if not m.model or not m.version:
        problems.append("model and version are required")
    if not _SHA256.match(m.sha256):
        problems.append(f"sha256 must be 64 lowercase hex digits, got {m.sha256!r}")
    if m.size_bytes <= 0:
        problems.append("size_bytes must be above 0")
    if not 0 < m.chunk_size <= MAX_CHUNK_SIZE:
        problems.append(f"chunk_size must be between 1 and {MAX_CHUNK_SIZE}, got {m.chunk_size}")
    if m.task and m.task not in TASKS:
        problems.append(f"task must be one of {', '.join(TASKS)}, got {m.task!r}")
    if m.HasField("golden") and m.golden.sha256:
        if not _SHA256.match(m.golden.sha256):
            problems.append(f"golden.sha256 must be 64 lowercase hex digits, got {m.golden.sha256!r}")
        if m.golden.size_bytes <= 0:
            problems.append("golden.size_bytes must be above 0")
        if m.golden.sha256 == m.sha256:
            problems.append("golden.sha256 equals the model's sha256")
    acc = m.acceptance
    if (acc.min_metric or acc.max_metric) and not m.golden.sha256:
        problems.append("acceptance thresholds on the metric need a golden set, and the manifest has none")
    if problems:
        raise ManifestRejected("manifest is malformed: " + "; ".join(problems))

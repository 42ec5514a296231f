"""The coordinator's Ed25519 signing key: manifests and rollback orders are signed with it."""
from __future__ import annotations

import hashlib
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from coordinator.secrets_dir import read_or_create

KEY_FILE = "signing.key"


def key_id(public_raw: bytes) -> str:
    return hashlib.sha256(public_raw).hexdigest()[:16]


class Signer:
    def __init__(self, private_key: Ed25519PrivateKey):
        self._key = private_key
        self.public_raw = private_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self.key_id = key_id(self.public_raw)

    @classmethod
    def load_or_create(cls, data_dir: Path) -> "Signer":
        def make() -> bytes:
            return Ed25519PrivateKey.generate().private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )

        pem = read_or_create(data_dir / KEY_FILE, make)
        return cls(serialization.load_pem_private_key(pem, password=None))

    def sign(self, data: bytes) -> bytes:
        return self._key.sign(data)

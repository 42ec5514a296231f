"""edgefleet.libcrypto (Ed25519 and AES-256-GCM through the libcrypto hashlib loaded) gives the same
answers as `cryptography`, refuses what it refuses, and steps aside when it cannot be used."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from agent.manifest import ManifestRejected, ManifestVerifier
from edgefleet import blobcrypt, libcrypto
from tests.unit.install import harness
from tests.unit.install.harness import DEVICE_ID, Signer

openssl = libcrypto.load()
needs_openssl = pytest.mark.skipif(openssl is None, reason="no usable libcrypto mapped in this process")


def flip(data: bytes, at: int = 0) -> bytes:
    return data[:at] + bytes([data[at] ^ 1]) + data[at + 1:]


@pytest.fixture
def key_pair():
    private = Ed25519PrivateKey.generate()
    return private, private.public_key().public_bytes_raw()


# -- finding the library --------------------------------------------------------------------------


def test_the_library_found_is_the_one_hashlib_mapped():
    path = libcrypto.mapped_libcrypto()
    if sys.platform != "linux":
        pytest.skip("/proc/self/maps is Linux's")
    assert path is not None and os.path.basename(path).startswith("libcrypto.so")
    with open("/proc/self/maps") as maps:
        assert path in maps.read()


def test_no_libcrypto_in_the_maps_means_none(tmp_path):
    maps = tmp_path / "maps"
    maps.write_text("7f00-7f01 r-xp 00000000 fe:00 1 /usr/lib/libc.so.6\n7f02-7f03 rw-p 00000000 00:00 0\n")
    assert libcrypto.mapped_libcrypto(str(maps)) is None
    assert libcrypto.mapped_libcrypto(str(tmp_path / "absent")) is None


@needs_openssl
def test_loading_it_adds_no_library():
    """RTLD_NOLOAD: the process maps the same files before and after (checked in a fresh process)."""
    code = ("import hashlib\nfrom edgefleet import libcrypto\n"
            "def maps():\n    return {l.split(maxsplit=5)[5] for l in open('/proc/self/maps') if len(l.split()) == 6}\n"
            "before = maps()\nassert libcrypto.load() is not None\nadded = maps() - before\n"
            "import sys\nprint(sorted(added))\nprint('cryptography' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True).stdout.split("\n")
    assert out[0] == "[]" and out[1] == "False"


def test_switched_off_by_the_environment(monkeypatch):
    monkeypatch.setenv("EDGEFLEET_LIBCRYPTO", "0")
    libcrypto.load.cache_clear()
    try:
        assert libcrypto.load() is None
    finally:
        monkeypatch.delenv("EDGEFLEET_LIBCRYPTO")
        libcrypto.load.cache_clear()


class _FakeLib:
    """A libcrypto with every symbol; `version` and the verify result chosen by the test."""

    def __init__(self, version: int, verify_result: int = 1):
        self.version, self.verify_result = version, verify_result

    def __getattr__(self, name):
        def call(*args):
            if name == "OpenSSL_version_num":
                return self.version
            if name == "EVP_DigestVerify":
                return self.verify_result
            return 1

        return call


def test_an_openssl_older_than_1_1_1_is_refused():
    with pytest.raises(OSError, match="older than 1.1.1"):
        libcrypto.OpenSSL(_FakeLib(0x1010007F))


def test_a_library_failing_its_self_test_is_not_used():
    # Accepts every signature: the flipped known-answer signature must make the self-test fail.
    assert libcrypto.OpenSSL(_FakeLib(0x30000000, verify_result=1)).self_test() is False


def test_a_missing_symbol_is_an_attribute_error():
    class Partial(_FakeLib):
        def __getattr__(self, name):
            if name == "EVP_DigestVerify":
                raise AttributeError(name)
            return super().__getattr__(name)

    with pytest.raises(AttributeError):
        libcrypto.OpenSSL(Partial(0x30000000))


# -- Ed25519 --------------------------------------------------------------------------------------


@needs_openssl
@pytest.mark.parametrize("size", [0, 1, 64, 1000, 100_000])
def test_ed25519_agrees_with_cryptography(key_pair, size):
    private, public = key_pair
    message = os.urandom(size)
    signature = private.sign(message)
    assert openssl.ed25519_verify(public, signature, message) is True
    private.public_key().verify(signature, message)  # cryptography agrees


@needs_openssl
def test_ed25519_refuses_tampering(key_pair):
    private, public = key_pair
    message = b"a manifest" * 10
    signature = private.sign(message)
    other = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    assert not openssl.ed25519_verify(public, signature, flip(message))          # tampered message
    assert not openssl.ed25519_verify(public, flip(signature), message)          # tampered signature (R)
    assert not openssl.ed25519_verify(public, flip(signature, 40), message)      # tampered signature (S)
    assert not openssl.ed25519_verify(other, signature, message)                 # another key
    assert not openssl.ed25519_verify(public, signature[:63], message)           # short signature
    assert not openssl.ed25519_verify(public, signature + b"\x00", message)      # long signature
    assert not openssl.ed25519_verify(public, b"", message)
    with pytest.raises(ValueError, match="32 bytes, got 31"):
        openssl.ed25519_verify(public[:31], signature, message)


@needs_openssl
def test_failures_leave_no_openssl_error_behind(key_pair):
    """Python's ssl and hashlib read OpenSSL's per-thread error queue: nothing of ours may stay there."""
    import ctypes

    peek = ctypes.CDLL(libcrypto.mapped_libcrypto(), mode=os.RTLD_NOLOAD).ERR_peek_error
    peek.restype = ctypes.c_ulong
    private, public = key_pair
    assert not openssl.ed25519_verify(public, flip(private.sign(b"x")), b"x")
    assert peek() == 0
    key, nonce = os.urandom(32), os.urandom(12)
    with pytest.raises(libcrypto.AuthenticationFailed):
        openssl.aes256gcm_open(key, nonce, flip(openssl.aes256gcm_seal(key, nonce, b"data", b"")), b"")
    assert peek() == 0


# -- AES-256-GCM ----------------------------------------------------------------------------------


@needs_openssl
@pytest.mark.parametrize("size", [0, 1, 2, 15, 16, 17, 4096, 1 << 20])
@pytest.mark.parametrize("aad", [b"", b"edgefleet-blob/t/s"])
def test_gcm_agrees_with_cryptography(size, aad):
    key, nonce, data = os.urandom(32), os.urandom(12), os.urandom(size)
    sealed = openssl.aes256gcm_seal(key, nonce, data, aad)
    assert sealed == AESGCM(key).encrypt(nonce, data, aad)
    assert openssl.aes256gcm_open(key, nonce, sealed, aad) == data
    assert type(sealed) is bytes and len(sealed) == size + 16


@needs_openssl
def test_gcm_results_are_fresh_objects():
    """Results are written into new bytes objects: two results never share one, nor a cached one."""
    key, nonce = os.urandom(32), os.urandom(12)
    empty, one = openssl.aes256gcm_open(key, nonce, AESGCM(key).encrypt(nonce, b"", b""), b""), b"\x07"
    assert empty == b"" and openssl.aes256gcm_open(key, nonce, AESGCM(key).encrypt(nonce, one, b""), b"") == one
    assert b"" == bytes() and bytes([7]) == b"\x07"  # the interpreter's shared objects are untouched
    first = openssl.aes256gcm_seal(key, nonce, b"ab", b"")
    second = openssl.aes256gcm_seal(key, os.urandom(12), b"ab", b"")
    assert first is not second and first != second


@needs_openssl
@pytest.mark.parametrize("change", ["ciphertext", "tag", "key", "nonce", "aad", "truncated"])
def test_gcm_refuses_tampering(change):
    key, nonce, aad, data = os.urandom(32), os.urandom(12), b"edgefleet-blob/t/s", os.urandom(1000)
    sealed = openssl.aes256gcm_seal(key, nonce, data, aad)
    args = {"key": key, "nonce": nonce, "sealed": sealed, "aad": aad}
    if change == "ciphertext":
        args["sealed"] = flip(sealed, 10)
    elif change == "tag":
        args["sealed"] = flip(sealed, len(sealed) - 1)
    elif change == "key":
        args["key"] = flip(key)
    elif change == "nonce":
        args["nonce"] = flip(nonce)
    elif change == "aad":
        args["aad"] = aad + b"x"
    else:
        args["sealed"] = sealed[:15]
    with pytest.raises(libcrypto.AuthenticationFailed):
        openssl.aes256gcm_open(**args)


@needs_openssl
def test_gcm_names_bad_parameters():
    with pytest.raises(ValueError, match="AES-256 key is 32 bytes, got 16"):
        openssl.aes256gcm_seal(bytes(16), bytes(12), b"x", b"")
    with pytest.raises(ValueError, match="nonce must be 12 bytes, got 16"):
        openssl.aes256gcm_seal(bytes(32), bytes(16), b"x", b"")


# -- the callers ----------------------------------------------------------------------------------


@needs_openssl
def test_chunk_cipher_backends_interoperate(monkeypatch):
    """A chunk the coordinator seals with cryptography opens on a device using libcrypto, and back."""
    transfer_id, key = blobcrypt.new_transfer()
    sha = "ab" * 32
    fast = blobcrypt.ChunkCipher(key, transfer_id, sha)  # cryptography is loaded here (this test imports it)
    monkeypatch.delitem(sys.modules, "cryptography")
    device = blobcrypt.ChunkCipher(key, transfer_id, sha)
    assert (fast.backend, device.backend) == ("cryptography", "libcrypto")
    data = os.urandom(70_000)
    assert device.open(3, fast.seal(3, data)) == data and fast.open(3, device.seal(3, data)) == data
    with pytest.raises(blobcrypt.ChunkRejected, match="chunk 4 does not authenticate"):
        device.open(4, fast.seal(3, data))  # another index: another nonce
    other_transfer = blobcrypt.ChunkCipher(key, "0" * 32, sha)
    assert other_transfer.backend == "libcrypto"
    with pytest.raises(blobcrypt.ChunkRejected, match="chunk 3 does not authenticate"):
        other_transfer.open(3, device.seal(3, data))  # another transfer's associated data
    with pytest.raises(blobcrypt.ChunkRejected, match="shorter than the 16-byte tag"):
        device.open(0, b"short")


def test_chunk_cipher_falls_back_to_cryptography(monkeypatch):
    monkeypatch.setattr(libcrypto, "load", lambda: None)
    monkeypatch.delitem(sys.modules, "cryptography", raising=False)
    transfer_id, key = blobcrypt.new_transfer()
    cipher = blobcrypt.ChunkCipher(key, transfer_id, "cd" * 32)
    assert cipher.backend == "cryptography"
    assert cipher.open(1, cipher.seal(1, b"data")) == b"data"
    with pytest.raises(blobcrypt.ChunkRejected):
        cipher.open(1, flip(cipher.seal(1, b"data")))


@pytest.mark.parametrize("backend", ["libcrypto", "cryptography"])
def test_manifest_verification_on_either_backend(monkeypatch, backend):
    if backend == "libcrypto" and openssl is None:
        pytest.skip("no usable libcrypto")
    if backend == "cryptography":
        monkeypatch.setattr(libcrypto, "load", lambda: None)
    signer = Signer()
    verifier = ManifestVerifier(signer.public_raw, signer.key_id, DEVICE_ID)
    m = harness.manifest(b"model" * 20, version="1", sequence=5)
    signed = signer.manifest(m)
    assert verifier.manifest(signed, last_sequence=4) == m
    signed.signature = flip(signed.signature)
    with pytest.raises(ManifestRejected, match="bad signature"):
        verifier.manifest(signed, last_sequence=4)
    assert (verifier._key is None) == (backend == "libcrypto")  # cryptography's key only on its path


@needs_openssl
def test_an_agent_verifying_a_manifest_does_not_import_cryptography():
    code = ("from tests.unit.install import harness\n"
            "from tests.unit.install.harness import Signer, DEVICE_ID\n"
            "signer = Signer()\n"
            "signed = signer.manifest(harness.manifest(b'm' * 50, version='1', sequence=2))\n"
            "raw, key_id, data = signer.public_raw, signer.key_id, signed.SerializeToString()\n"
            "import sys\nfor name in [n for n in sys.modules if n.split('.')[0] == 'cryptography']:\n    del sys.modules[name]\n"
            "from agent.manifest import ManifestVerifier\nfrom edgefleet.v1 import manifest_pb2\nfrom edgefleet import blobcrypt\n"
            "s = manifest_pb2.SignedManifest.FromString(data)\n"
            "ManifestVerifier(raw, key_id, DEVICE_ID).manifest(s, last_sequence=1)\n"
            "c = blobcrypt.ChunkCipher(bytes(32), '0' * 32, 'ab' * 32)\nassert c.open(0, c.seal(0, b'x')) == b'x'\n"
            "print(sorted(n for n in sys.modules if n.split('.')[0] == 'cryptography'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"

"""Ed25519 verification and AES-256-GCM through the OpenSSL libcrypto this process has already loaded.

Python's `hashlib` (its `_hashlib` module) links the system's libcrypto, so every agent has it mapped.
The `cryptography` wheel carries a second, static copy of OpenSSL: about 7 MB more resident memory once
imported, for the two primitives the agent needs (manifest signatures, broadcast chunks). This module
calls the copy already loaded, through ctypes, and never loads one: the library is opened with
RTLD_NOLOAD by the exact path /proc/self/maps shows.

`load()` returns None when that is not possible or not safe: no /proc (not Linux), no libcrypto mapped,
an OpenSSL older than 1.1.1 (no raw Ed25519 keys), a missing symbol, or a known-answer self-test that
fails (RFC 8032 test 1 for Ed25519, a GCM spec vector for AES-256-GCM). Callers then use
`cryptography` (edgefleet.blobcrypt, agent.manifest). tests/unit/test_libcrypto.py holds both to the
same answers, with tampered inputs.

Every call uses its own OpenSSL context, so calls are thread-safe; a failed check clears this thread's
OpenSSL error queue, so Python's ssl and hashlib never report an error left by it.
"""
from __future__ import annotations

import ctypes
import functools
import os
import threading

ED25519_KEY_BYTES = 32
ED25519_SIGNATURE_BYTES = 64
AES256_KEY_BYTES = 32
GCM_NONCE_BYTES = 12
GCM_TAG_BYTES = 16

_NID_ED25519 = 1087           # EVP_PKEY_ED25519
_EVP_CTRL_GCM_SET_IVLEN = 0x9
_EVP_CTRL_GCM_GET_TAG = 0x10
_EVP_CTRL_GCM_SET_TAG = 0x11
_MIN_VERSION = 0x1010100F     # OpenSSL 1.1.1: EVP_PKEY_new_raw_public_key, one-shot EVP_DigestVerify
_INT_MAX = 2**31 - 1          # EVP_*Update take an int length

# RFC 8032, 7.1, test 1 (empty message).
_KAT_ED25519_KEY = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
_KAT_ED25519_SIG = bytes.fromhex("e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b")
# The GCM specification (McGrew and Viega), test case 14: 256-bit zero key, zero nonce, 16 zero bytes.
_KAT_GCM_SEALED = bytes.fromhex("cea7403d4d606b6e074ec5d3baf39d18d0d1c8a799996bf0265b98b5d48ab919")


_bytes_from = ctypes.pythonapi.PyBytes_FromStringAndSize
_bytes_from.restype, _bytes_from.argtypes = ctypes.py_object, [ctypes.c_void_p, ctypes.c_ssize_t]


def _new_bytes(size: int) -> tuple[bytes, int]:
    """A new bytes object of at least `size` (2 or more) and the address of its contents, for OpenSSL
    to write a result into, as a C extension fills the bytes it returns: no zeroing, no copy. Python
    shares its empty and one-byte objects, so no object shorter than 2 is ever written to."""
    out = _bytes_from(None, max(size, 2))  # fresh, uninitialized, referenced only here
    return out, ctypes.cast(ctypes.c_char_p(out), ctypes.c_void_p).value


class AuthenticationFailed(ValueError):
    """An AES-GCM tag that does not match (tampered data, wrong key, nonce or associated data)."""


def mapped_libcrypto(maps_path: str = "/proc/self/maps") -> str | None:
    """Path of the libcrypto this process has mapped (after importing _hashlib), or None."""
    try:
        import _hashlib  # noqa: F401 - what maps libcrypto; hashlib has imported it already
    except ImportError:
        return None
    try:
        with open(maps_path, "rb") as maps:
            lines = maps.read().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split(maxsplit=5)
        if len(fields) == 6 and os.path.basename(fields[5]).startswith(b"libcrypto.so"):
            return os.fsdecode(fields[5])
    return None


class OpenSSL:
    """The two primitives, bound to one loaded libcrypto."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        self.version = lib.OpenSSL_version_num()
        if self.version < _MIN_VERSION:
            raise OSError(f"OpenSSL {self.version:#x} is older than 1.1.1")
        vp, cp, sz, i = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_int
        ip = ctypes.POINTER(ctypes.c_int)

        def bind(name: str, restype, *argtypes):  # noqa: ANN001, ANN202
            fn = getattr(lib, name)  # AttributeError: this libcrypto lacks it
            fn.restype, fn.argtypes = restype, list(argtypes)
            return fn

        self._pkey_new = bind("EVP_PKEY_new_raw_public_key", vp, i, vp, cp, sz)
        self._pkey_free = bind("EVP_PKEY_free", None, vp)
        self._md_new = bind("EVP_MD_CTX_new", vp)
        self._md_free = bind("EVP_MD_CTX_free", None, vp)
        self._verify_init = bind("EVP_DigestVerifyInit", i, vp, vp, vp, vp, vp)
        self._verify = bind("EVP_DigestVerify", i, vp, cp, sz, cp, sz)
        self._aes256gcm = bind("EVP_aes_256_gcm", vp)
        self._cipher_new = bind("EVP_CIPHER_CTX_new", vp)
        self._cipher_free = bind("EVP_CIPHER_CTX_free", None, vp)
        self._cipher_init = bind("EVP_CipherInit_ex", i, vp, vp, vp, cp, cp, i)
        self._ctrl = bind("EVP_CIPHER_CTX_ctrl", i, vp, i, i, vp)
        self._update = bind("EVP_CipherUpdate", i, vp, vp, ip, cp, i)
        self._final = bind("EVP_CipherFinal_ex", i, vp, vp, ip)
        self._clear_errors = bind("ERR_clear_error", None)

    # -- Ed25519 ----------------------------------------------------------------------------------

    def ed25519_verify(self, public_key: bytes, signature: bytes, data: bytes) -> bool:
        """True when `signature` is `public_key`'s Ed25519 signature of `data`."""
        public_key, signature, data = bytes(public_key), bytes(signature), bytes(data)
        if len(public_key) != ED25519_KEY_BYTES:
            raise ValueError(f"an Ed25519 public key is {ED25519_KEY_BYTES} bytes, got {len(public_key)}")
        if len(signature) != ED25519_SIGNATURE_BYTES:
            return False
        pkey = self._pkey_new(_NID_ED25519, None, public_key, len(public_key))
        if not pkey:
            self._clear_errors()
            raise ValueError("OpenSSL refused the Ed25519 public key")
        ctx = self._md_new()
        try:
            if not ctx:
                raise MemoryError("EVP_MD_CTX_new failed")
            if self._verify_init(ctx, None, None, None, pkey) != 1:
                raise OSError("EVP_DigestVerifyInit failed for an Ed25519 key")
            ok = self._verify(ctx, signature, len(signature), data, len(data)) == 1
            return ok
        finally:
            self._clear_errors()  # a bad signature leaves an error on this thread's queue
            self._md_free(ctx)
            self._pkey_free(pkey)

    # -- AES-256-GCM ------------------------------------------------------------------------------

    def _gcm(self, encrypt: bool, key: bytes, nonce: bytes, data: bytes, aad: bytes, tag: bytes | None) -> bytes:
        """Seal `data` (ciphertext + tag), or open it: then `data` ends with `tag`, read in place."""
        if len(key) != AES256_KEY_BYTES:
            raise ValueError(f"an AES-256 key is {AES256_KEY_BYTES} bytes, got {len(key)}")
        if len(nonce) != GCM_NONCE_BYTES:
            raise ValueError(f"the GCM nonce must be {GCM_NONCE_BYTES} bytes, got {len(nonce)}")
        length = len(data) if encrypt else len(data) - GCM_TAG_BYTES
        if length > _INT_MAX or len(aad) > _INT_MAX:
            raise ValueError(f"AES-GCM data and associated data must be under {_INT_MAX + 1} bytes")
        # GCM writes exactly as many bytes as it reads (nothing at Final), and the tag after them.
        size = length + GCM_TAG_BYTES if encrypt else length
        out, address = _new_bytes(size)
        written = ctypes.c_int(0)
        ctx = self._cipher_new()
        try:
            if not ctx:
                raise MemoryError("EVP_CIPHER_CTX_new failed")
            mode = 1 if encrypt else 0
            if (self._cipher_init(ctx, self._aes256gcm(), None, None, None, mode) != 1
                    or self._ctrl(ctx, _EVP_CTRL_GCM_SET_IVLEN, GCM_NONCE_BYTES, None) != 1
                    or self._cipher_init(ctx, None, None, key, nonce, mode) != 1):
                raise OSError("OpenSSL could not set up AES-256-GCM")
            if aad and self._update(ctx, None, ctypes.byref(written), aad, len(aad)) != 1:
                raise OSError("OpenSSL refused the associated data")
            if length:
                if self._update(ctx, address, ctypes.byref(written), data, length) != 1:
                    raise OSError("AES-256-GCM failed")
                if written.value != length:
                    raise OSError(f"AES-256-GCM wrote {written.value} bytes for {length}")
            if not encrypt and self._ctrl(ctx, _EVP_CTRL_GCM_SET_TAG, GCM_TAG_BYTES, tag) != 1:
                raise OSError("OpenSSL refused the GCM tag")
            if self._final(ctx, address + length, ctypes.byref(written)) != 1:
                if encrypt:
                    raise OSError("AES-256-GCM failed to finish")
                raise AuthenticationFailed("AES-GCM tag does not match")
            if written.value != 0:  # GCM has no padding: a non-zero Final would have overrun `out`
                raise OSError(f"AES-256-GCM wrote {written.value} bytes at the end, expected none")
            if encrypt and self._ctrl(ctx, _EVP_CTRL_GCM_GET_TAG, GCM_TAG_BYTES, address + length) != 1:
                raise OSError("OpenSSL did not give the GCM tag")
            return out if len(out) == size else out[:size]
        finally:
            self._clear_errors()
            self._cipher_free(ctx)

    def aes256gcm_seal(self, key: bytes, nonce: bytes, data: bytes, aad: bytes) -> bytes:
        """Ciphertext followed by the 16-byte tag (what cryptography's AESGCM.encrypt returns)."""
        return self._gcm(True, bytes(key), bytes(nonce), bytes(data), bytes(aad), None)

    def aes256gcm_open(self, key: bytes, nonce: bytes, sealed: bytes, aad: bytes) -> bytes:
        """The plaintext of ciphertext + tag; AuthenticationFailed when the tag does not match."""
        sealed = bytes(sealed)
        if len(sealed) < GCM_TAG_BYTES:
            raise AuthenticationFailed(f"{len(sealed)} bytes is shorter than the {GCM_TAG_BYTES}-byte tag")
        # The ciphertext is read in place: its length excludes the tag (no copy of a chunk).
        return self._gcm(False, bytes(key), bytes(nonce), sealed, bytes(aad), sealed[-GCM_TAG_BYTES:])

    def self_test(self) -> bool:
        """Known answers, and a refusal of a flipped bit, for both primitives."""
        try:
            bad_sig = bytes([_KAT_ED25519_SIG[0] ^ 1]) + _KAT_ED25519_SIG[1:]
            zero_key, zero_nonce = bytes(AES256_KEY_BYTES), bytes(GCM_NONCE_BYTES)
            if not (self.ed25519_verify(_KAT_ED25519_KEY, _KAT_ED25519_SIG, b"")
                    and not self.ed25519_verify(_KAT_ED25519_KEY, bad_sig, b"")
                    and self.aes256gcm_seal(zero_key, zero_nonce, bytes(16), b"") == _KAT_GCM_SEALED
                    and self.aes256gcm_open(zero_key, zero_nonce, _KAT_GCM_SEALED, b"") == bytes(16)):
                return False
            try:
                self.aes256gcm_open(zero_key, zero_nonce, _KAT_GCM_SEALED[:-1] + b"\x00", b"")
            except AuthenticationFailed:
                return True
            return False
        except (OSError, ValueError, MemoryError):
            return False


_lock = threading.Lock()


@functools.cache
def load() -> OpenSSL | None:
    """The loaded libcrypto's primitives, or None (see the module docstring): then use cryptography.

    EDGEFLEET_LIBCRYPTO=0 skips it (for comparing, or should a platform's OpenSSL misbehave)."""
    if os.environ.get("EDGEFLEET_LIBCRYPTO", "1") == "0":
        return None
    path = mapped_libcrypto()
    if path is None or not hasattr(os, "RTLD_NOLOAD"):
        return None
    with _lock:
        try:
            openssl = OpenSSL(ctypes.CDLL(path, mode=os.RTLD_NOLOAD | os.RTLD_LOCAL))
        except (OSError, AttributeError):
            return None
    return openssl if openssl.self_test() else None

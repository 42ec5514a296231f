"""Content-addressed artifact store: every file is `<root>/<sha256>` (no extension: the digest is the name).

Uploads (model, data, recipe, spec) and every variant `.tflite` land here. A file appears under its final
name only once it is complete and its digest checked (written beside it, then renamed), so a reader never
sees a partial artifact and a crash leaves at most a stray `.incoming-*` entry. Files are never modified:
the same bytes always have the same path, so storing them twice is a no-op.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import uuid
from pathlib import Path
from typing import BinaryIO, Iterator

_SHA = re.compile(r"^[0-9a-f]{64}$")
CHUNK = 1 << 20


class ArtifactError(RuntimeError):
    """An artifact is missing, or its bytes do not match its digest."""


class ArtifactTooLarge(ValueError):
    """An incoming file went over its size limit."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def check_sha(sha256: str) -> str:
    if not isinstance(sha256, str) or not _SHA.match(sha256):
        raise ArtifactError(f"not a SHA-256 hex digest: {sha256!r}")
    return sha256


class Incoming:
    """A file being received: bytes go to a temporary file in the store, hashed and counted as they come.

    `limit` is checked on every write, so an oversized upload is refused before it fills the disk.
    """

    def __init__(self, store: ArtifactStore, what: str, limit: int | None, filename: str = "upload"):
        self.store = store
        self.what = what
        self.limit = limit
        self.size = 0
        self._hash = hashlib.sha256()
        # Under its upload name while incoming, so that checks on it can name the user's file.
        self._dir = store.root / f".incoming-{uuid.uuid4().hex}"
        self._dir.mkdir()
        self.path = self._dir / filename
        self._file: BinaryIO | None = open(self.path, "wb")

    def write(self, data: bytes) -> None:
        assert self._file is not None, "write after commit/discard"
        self.size += len(data)
        if self.limit is not None and self.size > self.limit:
            raise ArtifactTooLarge(f"{self.what} is over the configured size limit of {self.limit:,} bytes")
        self._hash.update(data)
        self._file.write(data)

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    def close(self) -> None:
        """Finish writing (the file at `path` is then complete, e.g. to be checked before commit)."""
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None

    def commit(self) -> str:
        """Move the file under its digest; returns the digest."""
        self.close()
        sha = self.sha256
        self.store._place(self.path, sha)
        self._dir.rmdir()
        return sha

    def discard(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self.path.unlink(missing_ok=True)
        if self._dir.is_dir():
            self._dir.rmdir()


class ArtifactStore:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, sha256: str) -> Path:
        return self.root / check_sha(sha256)

    def has(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def existing_path(self, sha256: str) -> Path:
        """The path of an artifact that must exist; ArtifactError names it when it does not."""
        path = self.path(sha256)
        if not path.is_file():
            raise ArtifactError(f"artifact {sha256} is missing from {self.root}")
        return path

    def incoming(self, what: str, limit: int | None = None, filename: str = "upload") -> Incoming:
        """A file to receive; `what` names it in the size-limit error."""
        return Incoming(self, what, limit, filename)

    def put_bytes(self, data: bytes) -> str:
        sha = hashlib.sha256(data).hexdigest()
        if not self.has(sha):
            tmp = self.root / f".incoming-{uuid.uuid4().hex}"
            tmp.write_bytes(data)
            self._place(tmp, sha)
        return sha

    def import_file(self, src: Path, sha256: str) -> Path:
        """Store a copy of `src`, checking that it hashes to `sha256`.

        A copy, not a hard link: whoever owns `src` may rewrite it in place later, and an artifact never changes.
        """
        check_sha(sha256)
        if self.has(sha256):
            return self.path(sha256)
        tmp = self.root / f".incoming-{uuid.uuid4().hex}"
        shutil.copyfile(src, tmp)
        actual = sha256_file(tmp)
        if actual != sha256:
            tmp.unlink(missing_ok=True)
            raise ArtifactError(f"{src} hashes to {actual}, not the expected {sha256}")
        self._place(tmp, sha256)
        return self.path(sha256)

    def verify(self, sha256: str) -> bool:
        path = self.path(sha256)
        return path.is_file() and sha256_file(path) == sha256

    def read_chunks(self, sha256: str, chunk_size: int = CHUNK) -> Iterator[bytes]:
        """The artifact's bytes in chunks; raises ArtifactError at the end if they do not hash to the digest."""
        h = hashlib.sha256()
        with open(self.existing_path(sha256), "rb") as f:
            for chunk in iter(lambda: f.read(chunk_size), b""):
                h.update(chunk)
                yield chunk
        if h.hexdigest() != sha256:
            raise ArtifactError(f"artifact {sha256} is corrupt: its bytes hash to {h.hexdigest()}")

    def _place(self, tmp: Path, sha256: str) -> None:
        final = self.path(sha256)
        if final.exists():
            tmp.unlink(missing_ok=True)  # same bytes already stored
            return
        os.chmod(tmp, 0o644)
        os.replace(tmp, final)

"""The content-addressed artifact store: names are digests, writes are atomic, digests are checked."""
from __future__ import annotations

import hashlib

import pytest

from coordinator.models.artifacts import ArtifactError, ArtifactStore, ArtifactTooLarge


def leftovers(store: ArtifactStore) -> list[str]:
    return sorted(p.name for p in store.root.iterdir() if p.name.startswith(".incoming"))


def test_put_bytes_names_the_file_by_its_digest_and_is_idempotent(artifacts):
    sha = artifacts.put_bytes(b"model bytes")
    assert sha == hashlib.sha256(b"model bytes").hexdigest()
    assert artifacts.path(sha).read_bytes() == b"model bytes"
    assert artifacts.put_bytes(b"model bytes") == sha
    assert sorted(p.name for p in artifacts.root.iterdir()) == [sha]
    assert artifacts.verify(sha)


def test_incoming_is_hashed_while_written_and_appears_only_on_commit(artifacts):
    incoming = artifacts.incoming("model m.keras", limit=100, filename="m.keras")
    incoming.write(b"abc")
    incoming.write(b"def")
    assert incoming.path.name == "m.keras"  # checks made before commit see the user's file name
    sha = hashlib.sha256(b"abcdef").hexdigest()
    assert not artifacts.has(sha)
    assert incoming.commit() == sha
    assert artifacts.path(sha).read_bytes() == b"abcdef"
    incoming.discard()  # after commit: nothing to do, the artifact stays
    assert artifacts.has(sha)
    assert leftovers(artifacts) == []


def test_incoming_over_its_limit_is_refused_and_leaves_nothing(artifacts):
    incoming = artifacts.incoming("model big.keras", limit=5)
    incoming.write(b"12345")
    with pytest.raises(ArtifactTooLarge, match="model big.keras is over the configured size limit of 5 bytes"):
        incoming.write(b"6")
    incoming.discard()
    assert list(artifacts.root.iterdir()) == []


def test_import_file_checks_the_digest(artifacts, tmp_path):
    src = tmp_path / "v.tflite"
    src.write_bytes(b"tflite")
    good = hashlib.sha256(b"tflite").hexdigest()
    with pytest.raises(ArtifactError, match="hashes to"):
        artifacts.import_file(src, hashlib.sha256(b"other").hexdigest())
    assert leftovers(artifacts) == []
    assert artifacts.import_file(src, good).read_bytes() == b"tflite"
    src.write_bytes(b"rewritten in place")  # the source's owner changing it later must not change the artifact
    assert artifacts.verify(good)


def test_read_chunks_detects_a_corrupt_artifact(artifacts):
    sha = artifacts.put_bytes(b"x" * 10)
    assert b"".join(artifacts.read_chunks(sha, chunk_size=3)) == b"x" * 10
    artifacts.path(sha).write_bytes(b"y" * 10)
    with pytest.raises(ArtifactError, match="corrupt"):
        list(artifacts.read_chunks(sha))


def test_paths_only_for_digests(artifacts):
    with pytest.raises(ArtifactError, match="not a SHA-256"):
        artifacts.path("../etc/passwd")
    with pytest.raises(ArtifactError, match="missing"):
        artifacts.existing_path("0" * 64)

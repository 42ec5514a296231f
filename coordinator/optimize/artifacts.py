"""Content-addressed artifact store: `workdir/artifacts/<sha256>.tflite`, plus a build cache.

Conversions and fine-tunes are slow, so a finished build is remembered under a key made of everything
that decides its output (model and data digests, technique, parameters, library versions); running the
same upload again reuses the artifact instead of rebuilding it.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Bump when a technique changes what it builds, so old cache entries stop matching.
CACHE_VERSION = 1


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def cache_key(**parts: Any) -> str:
    text = json.dumps({"v": CACHE_VERSION, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class CachedBuild:
    sha256: str
    figures: dict[str, float] = field(default_factory=dict)
    input_features: list[int] | None = None
    params: dict[str, Any] = field(default_factory=dict)
    suffix: str | None = None


class ArtifactStore:
    def __init__(self, workdir: Path):
        self.root = Path(workdir) / "artifacts"
        self.cache_dir = Path(workdir) / "cache"
        self.root.mkdir(parents=True, exist_ok=True)
        self.cache_dir.mkdir(parents=True, exist_ok=True)

    def path(self, sha: str) -> Path:
        return self.root / f"{sha}.tflite"

    def put(self, data: bytes) -> tuple[str, Path]:
        sha = sha256_bytes(data)
        path = self.path(sha)
        if not path.exists():
            _atomic_write(path, data)
        return sha, path

    def read(self, sha: str) -> bytes:
        return self.path(sha).read_bytes()

    def lookup(self, key: str) -> list[CachedBuild] | None:
        """The remembered builds for a key, if every artifact is still present and intact."""
        entry = self.cache_dir / f"{key}.json"
        if not entry.exists():
            return None
        try:
            builds = [CachedBuild(**b) for b in json.loads(entry.read_text())]
        except (ValueError, TypeError):
            return None
        for b in builds:
            p = self.path(b.sha256)
            if not p.exists() or sha256_bytes(p.read_bytes()) != b.sha256:
                return None
        return builds

    def remember(self, key: str, builds: list[CachedBuild]) -> None:
        _atomic_write(self.cache_dir / f"{key}.json", json.dumps([b.__dict__ for b in builds]).encode())


def _atomic_write(path: Path, data: bytes) -> None:
    # A reader never sees half a file, even if the worker is killed mid-write.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)

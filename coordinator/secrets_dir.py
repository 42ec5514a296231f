"""Files in the coordinator's data directory that hold secrets: created once, 0600, never rewritten."""
from __future__ import annotations

import os
from pathlib import Path


def write_secret(path: Path, data: bytes) -> None:
    """Create `path` with mode 0600 and `data`, atomically; refuse to overwrite an existing file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, 0o600)
    # link() fails when the target exists: two coordinators starting at once keep the first secret.
    try:
        os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_or_create(path: Path, make) -> bytes:
    if not path.exists():
        try:
            write_secret(path, make())
        except FileExistsError:
            pass
    return path.read_bytes()

"""Read sysfs, procfs and /etc files that may be missing, unreadable or odd.

Every reader here returns None (or an empty list) instead of raising: a probe must
describe whatever it can find and leave the rest empty.
"""
from __future__ import annotations

from pathlib import Path


def read_text(path: Path) -> str | None:
    """The file's text without surrounding whitespace or device-tree NULs, or None."""
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip().strip("\x00").strip()
    except (OSError, ValueError):
        return None


def read_int(path: Path, base: int = 10) -> int | None:
    text = read_text(path)
    if text is None:
        return None
    try:
        return int(text, base)
    except ValueError:
        return None


def children(directory: Path, pattern: str) -> list[Path]:
    """Entries of `directory` matching a glob pattern, sorted by name; [] when it cannot be listed."""
    try:
        return sorted(directory.glob(pattern), key=lambda p: _natural_key(p.name))
    except OSError:
        return []


def _natural_key(name: str) -> list[object]:
    # cpu10 after cpu9, hwmon10 after hwmon2: the order a reader expects.
    parts: list[object] = []
    digits = ""
    text = ""
    for ch in name:
        if ch.isdigit():
            if text:
                parts.append(text)
                text = ""
            digits += ch
        else:
            if digits:
                parts.append(int(digits))
                digits = ""
            text += ch
    if digits:
        parts.append(int(digits))
    if text:
        parts.append(text)
    # Mixed int/str comparisons would raise: tag each part with its type.
    return [(0, p) if isinstance(p, int) else (1, p) for p in parts]


def exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:
        return False

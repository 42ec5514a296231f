"""/proc/meminfo: total and available memory in bytes, as psutil.virtual_memory() reads them on Linux."""
from __future__ import annotations

from pathlib import Path


def read_meminfo(proc_root: Path = Path("/proc")) -> dict[str, int]:
    """Every `Key: N kB` line of {proc}/meminfo, in bytes. Raises OSError when the file cannot be read."""
    values: dict[str, int] = {}
    for line in (proc_root / "meminfo").read_text(encoding="ascii", errors="replace").splitlines():
        key, sep, rest = line.partition(":")
        parts = rest.split()
        if sep and parts and parts[0].isdigit():
            values[key.strip()] = int(parts[0]) * 1024
    return values


def memory_available_bytes(values: dict[str, int]) -> int:
    """MemAvailable; on kernels older than 3.14 (no such line), MemFree + Buffers + Cached."""
    if "MemAvailable" in values:
        return values["MemAvailable"]
    if "MemFree" not in values:
        raise ValueError("/proc/meminfo has neither MemAvailable nor MemFree")
    return values["MemFree"] + values.get("Buffers", 0) + values.get("Cached", 0)


def memory_total_bytes(values: dict[str, int]) -> int:
    if "MemTotal" not in values:
        raise ValueError("/proc/meminfo has no MemTotal")
    return values["MemTotal"]

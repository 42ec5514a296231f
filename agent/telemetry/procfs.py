"""Linux /proc and /sys readers for the figures telemetry reports, read the way psutil reads them.

They replace psutil on the running agent: importing psutil costs about 0.5-1 MB resident for a handful of
numbers that are one small file each. Each reader raises OSError/ValueError when its file is missing or
odd; callers decide what an absent figure means. `on_linux(proc_root)` tells whether to use them at all
(psutil, imported lazily, remains the fallback elsewhere).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from agent.probe import meminfo
from agent.probe.sysfs import children, read_text

PROC = Path("/proc")
SYS = Path("/sys")


def on_linux(proc_root: Path = PROC) -> bool:
    """True when procfs is mounted at `proc_root` (the readers here then work)."""
    try:
        return (proc_root / "self/stat").is_file() and (proc_root / "meminfo").is_file()
    except OSError:
        return False


def _clock_ticks() -> int:
    try:
        return int(os.sysconf("SC_CLK_TCK")) or 100
    except (ValueError, OSError, AttributeError):
        return 100


def _page_size() -> int:
    try:
        return int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 4096


def process_cpu_seconds(proc_root: Path = PROC, ticks_per_second: int | None = None) -> float:
    """User + system CPU time of this process (all threads), from /proc/self/stat utime and stime."""
    text = (proc_root / "self/stat").read_text(encoding="ascii", errors="replace")
    # comm (field 2) is in parentheses and may itself contain spaces or ')': split after the last one.
    fields = text[text.rindex(")") + 2:].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    return (utime + stime) / float(ticks_per_second or _clock_ticks())


def process_rss_bytes(proc_root: Path = PROC, page_size: int | None = None) -> int:
    """Resident set size of this process: /proc/self/statm's second field (pages), as psutil reads it."""
    fields = (proc_root / "self/statm").read_text(encoding="ascii").split()
    return int(fields[1]) * (page_size or _page_size())


def memory_available_bytes(proc_root: Path = PROC) -> int:
    """MemAvailable from {proc}/meminfo (MemFree + Buffers + Cached on kernels older than 3.14)."""
    return meminfo.memory_available_bytes(meminfo.read_meminfo(proc_root))


class ProcessCpuPercent:
    """This process's CPU % of one core since the previous call (psutil.Process().cpu_percent semantics).

    The first call returns 0.0 (there is no interval yet); above 100 when several cores were kept busy.
    """

    def __init__(self, proc_root: Path = PROC, clock: Callable[[], float] = time.monotonic) -> None:
        self.proc_root = proc_root
        self._clock = clock
        self._last: tuple[float, float] | None = None

    def __call__(self) -> float:
        now = (self._clock(), process_cpu_seconds(self.proc_root))
        last, self._last = self._last, now
        if last is None or now[0] <= last[0]:
            return 0.0
        return max(0.0, (now[1] - last[1]) / (now[0] - last[0]) * 100.0)


def cpu_times(proc_root: Path = PROC) -> tuple[float, float]:
    """(busy, total) jiffies of the whole device from /proc/stat's aggregate `cpu` line.

    As psutil counts them: guest and guest_nice are already inside user and nice, so they are not added
    again; idle and iowait are not busy.
    """
    for line in (proc_root / "stat").read_text(encoding="ascii", errors="replace").splitlines():
        parts = line.split()
        if parts and parts[0] == "cpu":
            values = [float(v) for v in parts[1:]] + [0.0] * 10
            user, nice, system, idle, iowait, irq, softirq, steal, guest, guest_nice = values[:10]
            total = user + nice + system + idle + iowait + irq + softirq + steal
            return total - idle - iowait, total
    raise ValueError(f"{proc_root / 'stat'} has no aggregate cpu line")


class DeviceCpuUtilisation:
    """Whole-device CPU utilisation (0..1) since the previous call; 0.0 on the first call."""

    def __init__(self, proc_root: Path = PROC) -> None:
        self.proc_root = proc_root
        self._last = cpu_times(proc_root)

    def __call__(self) -> float:
        now = cpu_times(self.proc_root)
        last, self._last = self._last, now
        busy, total = now[0] - last[0], now[1] - last[1]
        if total <= 0:
            return 0.0
        return min(max(busy / total, 0.0), 1.0)


@dataclass(frozen=True)
class TemperatureReading:
    label: str
    current: float  # °C


def _temperature(path: Path) -> float | None:
    text = read_text(path)
    try:
        return float(text) / 1000.0 if text is not None else None
    except ValueError:
        return None


def hwmon_temperatures(sys_root: Path = SYS) -> dict[str, list[TemperatureReading]]:
    """Temperatures by chip name as psutil.sensors_temperatures() gives them on Linux.

    Every {sys}/class/hwmon/hwmon*/[device/]temp*_input (m°C) under its chip's `name`; only when no
    hwmon temperature exists, the thermal zones under their `type` (psutil's order of sources).
    """
    found: dict[str, list[TemperatureReading]] = {}
    inputs = []
    for hwmon in children(sys_root / "class/hwmon", "hwmon*"):
        for directory in (hwmon, hwmon / "device"):
            inputs.extend((directory, p) for p in children(directory, "temp*_input"))
    for directory, path in inputs:
        current, name = _temperature(path), read_text(directory / "name")
        if current is None or name is None:
            continue
        label = read_text(directory / path.name.replace("_input", "_label")) or ""
        found.setdefault(name, []).append(TemperatureReading(label, current))
    if inputs:
        return found
    for zone in children(sys_root / "class/thermal", "thermal_zone*"):
        current, name = _temperature(zone / "temp"), read_text(zone / "type")
        if current is not None and name is not None:
            found.setdefault(name, []).append(TemperatureReading("", current))
    return found

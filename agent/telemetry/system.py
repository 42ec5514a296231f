"""The agent process and its device, per telemetry window: CPU %, RSS, temperature, free memory and storage.

CPU % is the agent process's share of one core since the previous sample (above 100 when it kept
several cores busy). Temperature is the hottest CPU/SoC sensor (hwmon chips coretemp, k10temp,
cpu_thermal...), else the hottest of any sensor, else the hottest /sys/class/thermal zone; readings
outside -50..150 °C are sensor faults and ignored. `has_temperature` is false when nothing was found.

On Linux every figure comes from /proc and /sys (agent.telemetry.procfs, read as psutil reads them);
psutil is imported, lazily, only where there is no procfs: it costs ~0.5-1 MB resident in the daemon.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from agent.probe.sysfs import children, read_int
from agent.telemetry import procfs
from edgefleet.v1 import telemetry_pb2

log = logging.getLogger(__name__)

CPU_SENSORS = ("coretemp", "k10temp", "zenpower", "cpu_thermal", "cpu-thermal", "soc_thermal", "soc-thermal",
               "cpu", "tegra_thermal", "thermal-fan-est")
PLAUSIBLE_C = (-50.0, 150.0)

Sensors = Callable[[], Mapping[str, Sequence[Any]]]


def _plausible(value: Any) -> float | None:
    try:
        c = float(value)
    except (TypeError, ValueError):
        return None
    return c if PLAUSIBLE_C[0] < c < PLAUSIBLE_C[1] else None


def _psutil_sensors() -> Mapping[str, Sequence[Any]]:
    import psutil

    read = getattr(psutil, "sensors_temperatures", None)  # absent on some platforms
    return read() if read is not None else {}


def _platform_sensors() -> Mapping[str, Sequence[Any]]:
    """Stands for "this platform's sensors" as a default argument; `platform_sensors` gives the real one."""
    raise NotImplementedError  # never called: replaced by platform_sensors(sys_root, proc_root)


def platform_sensors(sys_root: Path, proc_root: Path = procfs.PROC) -> Sensors:
    """hwmon under `sys_root` on Linux (procfs at `proc_root`), else psutil's sensors."""
    return (lambda: procfs.hwmon_temperatures(sys_root)) if procfs.on_linux(proc_root) else _psutil_sensors


def read_temperature(sys_root: Path = Path("/sys"), sensors: Sensors | None = _platform_sensors,
                     proc_root: Path = procfs.PROC) -> float | None:
    """The device temperature in °C by the rule in the module docstring; None when no sensor exists."""
    if sensors is _platform_sensors:
        sensors = platform_sensors(sys_root, proc_root)
    found: dict[str, list[float]] = {}
    if sensors is not None:
        try:
            for name, entries in (sensors() or {}).items():
                values = [v for v in (_plausible(getattr(e, "current", None)) for e in entries) if v is not None]
                if values:
                    found[name] = values
        except Exception as exc:  # noqa: BLE001 - a sensor driver error must not stop telemetry
            log.debug("temperature sensors failed: %s", exc)
    cpu = [v for name in CPU_SENSORS for v in found.get(name, [])]
    if cpu:
        return max(cpu)
    if found:
        return max(v for values in found.values() for v in values)
    zones = [_plausible(t / 1000.0) for t in (read_int(z / "temp") for z in children(sys_root / "class/thermal", "thermal_zone*")) if t is not None]
    zones = [z for z in zones if z is not None]
    return max(zones) if zones else None


class _PsutilProcess:
    """The process figures from psutil, for platforms without procfs."""

    def __init__(self, process: Any = None) -> None:
        import psutil

        self._psutil = psutil
        self._process = process if process is not None else psutil.Process()
        self._process.cpu_percent(None)  # the first call only starts the measurement

    def cpu_percent(self) -> float:
        return float(self._process.cpu_percent(None))

    def rss_bytes(self) -> int:
        return int(self._process.memory_info().rss)

    def memory_available_bytes(self) -> int:
        return int(self._psutil.virtual_memory().available)


class _ProcProcess:
    """The same figures from /proc (Linux)."""

    def __init__(self, proc_root: Path, clock: Callable[[], float]) -> None:
        self.proc_root = proc_root
        self.cpu_percent = procfs.ProcessCpuPercent(proc_root, clock)
        try:
            self.cpu_percent()  # the first call only starts the measurement
        except (OSError, ValueError, IndexError) as exc:
            log.debug("process CPU time unavailable: %s", exc)

    def rss_bytes(self) -> int:
        return procfs.process_rss_bytes(self.proc_root)

    def memory_available_bytes(self) -> int:
        return procfs.memory_available_bytes(self.proc_root)


class SystemSampler:
    def __init__(
        self,
        state_dir: Path | None = None,
        *,
        sys_root: Path = Path("/sys"),
        proc_root: Path = procfs.PROC,
        sensors: Sensors | None = _platform_sensors,
        process: Any = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`process`: a psutil.Process to report on (forces psutil); by default this process, from /proc."""
        self.state_dir = Path(state_dir) if state_dir is not None else None
        self.sys_root = sys_root
        self.proc_root = proc_root
        if sensors is _platform_sensors:
            sensors = platform_sensors(sys_root, proc_root)
        self._sensors = sensors
        if process is None and procfs.on_linux(proc_root):
            self._figures: _ProcProcess | _PsutilProcess = _ProcProcess(proc_root, clock)
        else:
            self._figures = _PsutilProcess(process)

    def sample(self) -> telemetry_pb2.SystemTelemetry:
        out = telemetry_pb2.SystemTelemetry()
        # Each figure on its own: one unreadable file must not blank the others.
        for field, read in (("cpu_percent", self._figures.cpu_percent), ("rss_bytes", self._figures.rss_bytes),
                            ("memory_available_bytes", self._figures.memory_available_bytes)):
            try:
                setattr(out, field, read())
            except Exception as exc:  # noqa: BLE001 - report what can be read
                log.debug("%s unavailable: %s", field, exc)
        temperature = read_temperature(self.sys_root, self._sensors)
        if temperature is not None:
            out.has_temperature = True
            out.temperature_c = temperature
        if self.state_dir is not None:
            try:
                out.storage_free_bytes = shutil.disk_usage(self.state_dir).free
            except OSError as exc:
                log.debug("storage figures unavailable for %s: %s", self.state_dir, exc)
        return out

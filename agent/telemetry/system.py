"""The agent process and its device, per telemetry window: CPU %, RSS, temperature, free memory and storage.

CPU % is the agent process's share of one core since the previous sample (psutil; above 100 when it
kept several cores busy). Temperature is the hottest CPU/SoC sensor psutil reports (coretemp, k10temp,
cpu_thermal...), else the hottest of any sensor, else the hottest /sys/class/thermal zone; readings
outside -50..150 °C are sensor faults and ignored. `has_temperature` is false when nothing was found.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from agent.probe.sysfs import children, read_int
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


def read_temperature(sys_root: Path = Path("/sys"), sensors: Sensors | None = _psutil_sensors) -> float | None:
    """The device temperature in °C by the rule in the module docstring; None when no sensor exists."""
    found: dict[str, list[float]] = {}
    if sensors is not None:
        try:
            for name, entries in (sensors() or {}).items():
                values = [v for v in (_plausible(getattr(e, "current", None)) for e in entries) if v is not None]
                if values:
                    found[name] = values
        except Exception as exc:  # noqa: BLE001 - a sensor driver error must not stop telemetry
            log.debug("psutil temperature sensors failed: %s", exc)
    cpu = [v for name in CPU_SENSORS for v in found.get(name, [])]
    if cpu:
        return max(cpu)
    if found:
        return max(v for values in found.values() for v in values)
    zones = [_plausible(t / 1000.0) for t in (read_int(z / "temp") for z in children(sys_root / "class/thermal", "thermal_zone*")) if t is not None]
    zones = [z for z in zones if z is not None]
    return max(zones) if zones else None


class SystemSampler:
    def __init__(
        self,
        state_dir: Path | None = None,
        *,
        sys_root: Path = Path("/sys"),
        sensors: Sensors | None = _psutil_sensors,
        process: Any = None,
    ) -> None:
        import psutil

        self._psutil = psutil
        self.state_dir = Path(state_dir) if state_dir is not None else None
        self.sys_root = sys_root
        self._sensors = sensors
        self._process = process if process is not None else psutil.Process()
        self._process.cpu_percent(None)  # the first call only starts the measurement

    def sample(self) -> telemetry_pb2.SystemTelemetry:
        out = telemetry_pb2.SystemTelemetry()
        try:
            out.cpu_percent = float(self._process.cpu_percent(None))
            out.rss_bytes = int(self._process.memory_info().rss)
            out.memory_available_bytes = int(self._psutil.virtual_memory().available)
        except Exception as exc:  # noqa: BLE001 - report what can be read
            log.debug("process figures unavailable: %s", exc)
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

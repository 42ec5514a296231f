"""Power draw of the device, from the best source it has, always labelled with that source.

Sources, in order of preference (each may give no figure at a given moment; the next one is used then):
- `rapl`: Intel/AMD RAPL energy counters, {sys}/class/powercap/intel-rapl:N/energy_uj (µJ), averaged
  over the time since the previous read, wrap-around handled with max_energy_range_uj. A `psys`
  (platform) zone covers everything and is used alone; otherwise the package zones are summed (their
  sub-zones, intel-rapl:N:M, are inside them and are not added again). Root-only on Linux >= 5.10.
- `battery`: {sys}/class/power_supply/BAT*/power_now (µW), or current_now (µA) × voltage_now (µV), only
  while discharging: on mains the battery's flow is its charge, not what the device draws.
- `hwmon`: INA219/INA226/INA3221 current monitors (Jetson rails): power*_input (µW) summed, else
  in*_input (mV) × curr*_input (mA) per channel, summed.
- `estimate`: idle + (active − idle) × whole-device CPU utilisation (/proc/stat), from the hardware
  profile's power_model (bundled profiles carry one). Without a power model and without a sensor there is no figure
  (telemetry then says source "none") rather than a made-up one.

Energy per inference (collector): average watts over the window × mean inference time, whatever the
source. For `estimate` this is exactly the profile's model applied to the inference time.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol, Sequence

from agent.probe.power import Readable, can_read, hwmon, rapl, supplies
from agent.probe.sysfs import children, read_int, read_text
from agent.telemetry import procfs
from edgefleet.v1 import hardware_pb2

log = logging.getLogger(__name__)

NONE = "none"
ON_MAINS = {"Charging", "Full", "Not charging"}


@dataclass(frozen=True)
class PowerReading:
    source: str   # rapl | battery | hwmon | estimate
    watts: float
    detail: str   # what was read: zone names, supply, chip, or the power model


class PowerMeter(Protocol):
    source: str
    detail: str

    def read(self) -> float | None:
        """Watts (an average since the last read, or now); None when this source has no figure now."""


class RaplMeter:
    source = "rapl"

    def __init__(self, zones: Sequence[Path], clock: Callable[[], float] = time.monotonic) -> None:
        """`zones`: powercap zone directories (with energy_uj) whose energy is summed."""
        if not zones:
            raise ValueError("RaplMeter needs at least one zone")
        self.zones = list(zones)
        self.detail = "+".join(read_text(z / "name") or z.name for z in self.zones)
        self._clock = clock
        self._ranges = [read_int(z / "max_energy_range_uj") or 0 for z in self.zones]
        self._last = self._sample()

    def _sample(self) -> tuple[float, list[int]] | None:
        values = [read_int(z / "energy_uj") for z in self.zones]
        if any(v is None for v in values):
            return None
        return self._clock(), [int(v) for v in values]  # type: ignore[arg-type]

    def read(self) -> float | None:
        now = self._sample()
        last, self._last = self._last, now
        if now is None or last is None:
            return None
        seconds = now[0] - last[0]
        if seconds <= 0:
            return None
        joules = 0.0
        for before, after, span in zip(last[1], now[1], self._ranges):
            delta = after - before
            if delta < 0:  # the counter wrapped
                if span <= 0:
                    return None
                delta += span
            joules += delta / 1e6
        return joules / seconds


class BatteryMeter:
    source = "battery"

    def __init__(self, supply: Path) -> None:
        self.supply = supply
        self.detail = supply.name

    def read(self) -> float | None:
        if read_text(self.supply / "status") in ON_MAINS:
            return None
        power = read_int(self.supply / "power_now")
        if power is not None:
            return abs(power) / 1e6  # some drivers report discharge as negative
        current, voltage = read_int(self.supply / "current_now"), read_int(self.supply / "voltage_now")
        if current is None or voltage is None:
            return None
        return abs(current) * voltage / 1e12


class HwmonMeter:
    source = "hwmon"

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.detail = f"{read_text(directory / 'name') or 'hwmon'} ({directory.name})"

    def read(self) -> float | None:
        powers = [read_int(p) for p in children(self.directory, "power*_input")]
        powers = [p for p in powers if p is not None]
        if powers:
            return sum(powers) / 1e6
        watts = 0.0
        found = False
        for current_file in children(self.directory, "curr*_input"):
            channel = current_file.name[len("curr"): -len("_input")]
            milliamps = read_int(current_file)
            millivolts = read_int(self.directory / f"in{channel}_input")
            if milliamps is None or millivolts is None:
                continue
            watts += abs(milliamps) * millivolts / 1e6
            found = True
        return watts if found else None


class EstimateMeter:
    source = "estimate"

    def __init__(self, idle_watts: float, active_watts: float, cpu_utilisation: Callable[[], float]) -> None:
        if idle_watts < 0 or active_watts < idle_watts:
            raise ValueError(f"power model needs 0 <= idle_watts <= active_watts, got {idle_watts} and {active_watts}")
        self.idle_watts = idle_watts
        self.active_watts = active_watts
        self.detail = f"power model: {idle_watts:g} W idle, {active_watts:g} W busy"
        self._utilisation = cpu_utilisation

    def read(self) -> float | None:
        share = min(max(float(self._utilisation()), 0.0), 1.0)
        return self.idle_watts + (self.active_watts - self.idle_watts) * share


class PowerSampler:
    """The first meter with a figure, labelled; `read()` once per telemetry window."""

    def __init__(self, meters: Sequence[PowerMeter]) -> None:
        self.meters = list(meters)

    @property
    def sources(self) -> list[str]:
        return [m.source for m in self.meters]

    def read(self) -> PowerReading | None:
        # Every meter is read, so RAPL's next average starts now even when a better one answered.
        readings = []
        for meter in self.meters:
            try:
                readings.append(meter.read())
            except (OSError, ValueError, ZeroDivisionError):
                readings.append(None)
        for meter, watts in zip(self.meters, readings):
            if watts is not None:
                return PowerReading(meter.source, float(watts), meter.detail)
        return None


def system_cpu_utilisation(proc_root: Path = procfs.PROC) -> Callable[[], float]:
    """Whole-device CPU utilisation (0..1) since the previous call: /proc/stat on Linux, else psutil."""
    if procfs.on_linux(proc_root):
        try:
            return procfs.DeviceCpuUtilisation(proc_root)
        except (OSError, ValueError) as exc:
            log.debug("%s unreadable, using psutil: %s", proc_root / "stat", exc)
    import psutil  # only without procfs: it costs ~0.5-1 MB resident

    psutil.cpu_percent(None)  # the first call only starts the measurement
    return lambda: psutil.cpu_percent(None) / 100.0


def _rapl_zones(sys_root: Path, readable: Readable) -> list[Path]:
    zones = [Path(s.path).parent for s in rapl(sys_root, readable) if s.readable]
    top = [z for z in zones if z.name.count(":") == 1]  # intel-rapl:N; intel-rapl:N:M are inside them
    psys = [z for z in top if read_text(z / "name") == "psys"]
    return psys or top


def power_meters(
    sys_root: Path = Path("/sys"),
    power_model: hardware_pb2.PowerModel | None = None,
    *,
    readable: Readable = can_read,
    clock: Callable[[], float] = time.monotonic,
    cpu_utilisation: Callable[[], float] | None = None,
) -> list[PowerMeter]:
    """Meters for this device in order of preference (see the module docstring)."""
    meters: list[PowerMeter] = []
    zones = _rapl_zones(sys_root, readable)
    if zones:
        meters.append(RaplMeter(zones, clock))
    for source in supplies(sys_root, readable):
        if source.kind == "battery" and source.readable:
            path = Path(source.path)
            meters.append(BatteryMeter(path.parent if path.name == "power_now" else path))
    for source in hwmon(sys_root, readable):
        if source.readable:
            meters.append(HwmonMeter(Path(source.path)))
    if power_model is not None and power_model.active_watts > 0:
        try:
            meters.append(EstimateMeter(power_model.idle_watts, power_model.active_watts,
                                        cpu_utilisation or system_cpu_utilisation()))
        except ValueError as exc:
            log.warning("power estimate disabled: %s", exc)
    return meters

"""Power-measurement sources: RAPL powercap zones, batteries and mains supplies, INA hwmon sensors.

What `path` names, for whoever reads the source later:
- rapl:    {sys}/class/powercap/intel-rapl:*/energy_uj (µJ counter); name from the zone's `name` file.
- battery: {sys}/class/power_supply/X/power_now (µW) when present, else the supply directory, where
           current_now (µA) × voltage_now (µV) gives the power. `readable` is false when neither is
           there or the agent may not read it (the battery still counts: it runs the device).
- ac:      {sys}/class/power_supply/X/online (mains or USB supply, 1 when connected).
- hwmon:   {sys}/class/hwmon/hwmonN for INA current/power monitors (Jetson rails); readable when
           one of its power*/curr*/in*_input files is.

`readable` comes from os.access(R_OK) through an injectable function (probe_power's `readable`, or
the module's can_read): RAPL energy_uj is root-only on Linux >= 5.10, and the agent usually does not
run as root, while tests do (root passes os.access for any mode).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from edgefleet.v1.hardware_pb2 import PowerSource

from agent.probe.sysfs import children, exists, read_text

HWMON_CHIPS = {"ina3221", "ina219", "ina226", "ina2xx"}
AC_TYPES = {"Mains", "USB"}

Readable = Callable[[Path], bool]


def can_read(path: Path) -> bool:
    return os.access(path, os.R_OK)


def probe_power(sys_root: Path, *, readable: Readable | None = None) -> list[PowerSource]:
    readable = readable or can_read  # looked up per call: tests replace can_read
    return [*rapl(sys_root, readable), *supplies(sys_root, readable), *hwmon(sys_root, readable)]


def rapl(sys_root: Path, readable: Readable = can_read) -> list[PowerSource]:
    found = []
    for zone in children(sys_root / "class/powercap", "intel-rapl:*"):
        energy = zone / "energy_uj"
        if not exists(energy):
            continue
        found.append(PowerSource(kind="rapl", path=str(energy), name=read_text(zone / "name") or zone.name,
                                 readable=readable(energy)))
    return found


def supplies(sys_root: Path, readable: Readable = can_read) -> list[PowerSource]:
    found = []
    for supply in children(sys_root / "class/power_supply", "*"):
        kind = read_text(supply / "type")
        if kind == "Battery":
            found.append(_battery(supply, readable))
        elif kind in AC_TYPES:
            online = supply / "online"
            found.append(PowerSource(kind="ac", path=str(online), name=supply.name,
                                     readable=exists(online) and readable(online)))
    return found


def _battery(supply: Path, readable: Readable) -> PowerSource:
    power_now = supply / "power_now"
    if exists(power_now):
        return PowerSource(kind="battery", path=str(power_now), name=supply.name, readable=readable(power_now))
    current, voltage = supply / "current_now", supply / "voltage_now"
    ok = exists(current) and exists(voltage) and readable(current) and readable(voltage)
    return PowerSource(kind="battery", path=str(supply), name=supply.name, readable=ok)


def hwmon(sys_root: Path, readable: Readable = can_read) -> list[PowerSource]:
    found = []
    for mon in children(sys_root / "class/hwmon", "hwmon*"):
        chip = read_text(mon / "name")
        if chip not in HWMON_CHIPS:
            continue
        inputs = [p for pattern in ("power*_input", "curr*_input", "in*_input") for p in children(mon, pattern)]
        found.append(PowerSource(kind="hwmon", path=str(mon), name=chip, readable=any(readable(p) for p in inputs)))
    return found

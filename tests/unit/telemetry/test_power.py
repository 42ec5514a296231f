"""agent.telemetry.power and system: source selection on fake sysfs trees, the labelled estimate, temperature."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from agent.telemetry.power import (
    BatteryMeter,
    EstimateMeter,
    HwmonMeter,
    PowerSampler,
    RaplMeter,
    power_meters,
)
from agent.telemetry.system import SystemSampler, read_temperature
from edgefleet.v1 import hardware_pb2
from tests.unit.telemetry.fakes import Clock, write


def everything_readable(path: Path) -> bool:
    return True


def rapl_zone(sys_root: Path, name: str, label: str, energy: int, max_range: int = 262_143_328_850) -> Path:
    zone = sys_root / "class/powercap" / name
    write(zone / "name", label)
    write(zone / "energy_uj", energy)
    write(zone / "max_energy_range_uj", max_range)
    return zone


def battery(sys_root: Path, name: str = "BAT0", status: str = "Discharging", **files: int) -> Path:
    supply = sys_root / "class/power_supply" / name
    write(supply / "type", "Battery")
    write(supply / "status", status)
    for key, value in files.items():
        write(supply / key, value)
    return supply


def ina(sys_root: Path, name: str = "hwmon3", chip: str = "ina3221", **files: int) -> Path:
    mon = sys_root / "class/hwmon" / name
    write(mon / "name", chip)
    for key, value in files.items():
        write(mon / key, value)
    return mon


MODEL = hardware_pb2.PowerModel(idle_watts=3.0, active_watts=5.0)


def test_rapl_average_power_from_energy_deltas(tmp_path: Path) -> None:
    clock = Clock()
    zone = rapl_zone(tmp_path, "intel-rapl:0", "package-0", 1_000_000)
    rapl_zone(tmp_path, "intel-rapl:0:0", "core", 500_000)  # inside package-0: must not be added
    meters = power_meters(tmp_path, MODEL, readable=everything_readable, clock=clock, cpu_utilisation=lambda: 0.5)
    assert [m.source for m in meters] == ["rapl", "estimate"]
    write(zone / "energy_uj", 7_000_000)  # 6 J ...
    clock.now += 2.0                       # ... in 2 s
    reading = PowerSampler(meters).read()
    assert reading.source == "rapl" and reading.watts == pytest.approx(3.0) and reading.detail == "package-0"


def test_rapl_counter_wrap_around(tmp_path: Path) -> None:
    clock = Clock()
    zone = rapl_zone(tmp_path, "intel-rapl:0", "package-0", 999_000, max_range=1_000_000)
    meter = RaplMeter([zone], clock)
    write(zone / "energy_uj", 1_000)  # wrapped: 1,000 + 1,000 µJ... 2,000 µJ in 1 s
    clock.now += 1.0
    assert meter.read() == pytest.approx(0.002)


def test_rapl_psys_zone_alone_covers_the_platform(tmp_path: Path) -> None:
    rapl_zone(tmp_path, "intel-rapl:0", "package-0", 0)
    rapl_zone(tmp_path, "intel-rapl:1", "psys", 0)
    (meter,) = power_meters(tmp_path, None, readable=everything_readable)
    assert meter.source == "rapl" and meter.detail == "psys"


def test_unreadable_rapl_falls_back_to_the_labelled_estimate(tmp_path: Path) -> None:
    rapl_zone(tmp_path, "intel-rapl:0", "package-0", 0)  # root-only on Linux >= 5.10
    meters = power_meters(tmp_path, MODEL, readable=lambda p: "powercap" not in str(p), cpu_utilisation=lambda: 0.25)
    reading = PowerSampler(meters).read()
    assert reading.source == "estimate"
    assert reading.watts == pytest.approx(3.0 + (5.0 - 3.0) * 0.25)
    assert "3 W idle" in reading.detail


def test_battery_power_now_and_current_times_voltage(tmp_path: Path) -> None:
    battery(tmp_path, "BAT0", power_now=6_500_000)
    meters = power_meters(tmp_path, MODEL, readable=everything_readable, cpu_utilisation=lambda: 0.0)
    assert [m.source for m in meters] == ["battery", "estimate"]
    reading = PowerSampler(meters).read()
    assert reading.source == "battery" and reading.watts == pytest.approx(6.5) and reading.detail == "BAT0"
    other = tmp_path / "other"
    supply = battery(other, "BAT1", current_now=-500_000, voltage_now=7_400_000)  # 0.5 A (negative: discharging) × 7.4 V
    assert BatteryMeter(supply).read() == pytest.approx(3.7)


def test_battery_on_mains_gives_way_to_the_next_source(tmp_path: Path) -> None:
    supply = battery(tmp_path, status="Charging", power_now=20_000_000)
    sampler = PowerSampler(power_meters(tmp_path, MODEL, readable=everything_readable, cpu_utilisation=lambda: 1.0))
    reading = sampler.read()
    assert reading.source == "estimate" and reading.watts == pytest.approx(5.0)
    write(supply / "status", "Discharging")
    assert sampler.read().source == "battery"


def test_hwmon_ina_power_inputs_or_volts_times_amps(tmp_path: Path) -> None:
    ina(tmp_path, power1_input=1_200_000, power2_input=800_000)
    ina(tmp_path, "hwmon0", chip="nct6775", power1_input=99_000_000)  # not a current monitor: ignored
    meters = power_meters(tmp_path, None, readable=everything_readable)
    assert [m.source for m in meters] == ["hwmon"]
    reading = PowerSampler(meters).read()
    assert reading.watts == pytest.approx(2.0) and reading.detail.startswith("ina3221")
    jetson = ina(tmp_path / "j", "hwmon1", in1_input=5000, curr1_input=400, in2_input=5000, curr2_input=200, in3_input=5000)
    assert HwmonMeter(jetson).read() == pytest.approx(5 * 0.4 + 5 * 0.2)


def test_preference_order_rapl_battery_hwmon_estimate(tmp_path: Path) -> None:
    ina(tmp_path, power1_input=1_000_000)
    battery(tmp_path, power_now=4_000_000)
    rapl_zone(tmp_path, "intel-rapl:0", "package-0", 0)
    clock = Clock()
    meters = power_meters(tmp_path, MODEL, readable=everything_readable, clock=clock, cpu_utilisation=lambda: 0.0)
    assert [m.source for m in meters] == ["rapl", "battery", "hwmon", "estimate"]
    sampler = PowerSampler(meters)
    # RAPL needs time between two reads for an average: until then the next source answers
    assert sampler.read().source == "battery"
    clock.now += 10
    assert sampler.read().source == "rapl"


def test_no_sensor_and_no_power_model_gives_no_figure(tmp_path: Path) -> None:
    assert power_meters(tmp_path, hardware_pb2.PowerModel(), readable=everything_readable) == []
    assert PowerSampler([]).read() is None


def test_estimate_is_clamped_and_checked() -> None:
    meter = EstimateMeter(2.0, 4.0, lambda: 1.7)
    assert meter.source == "estimate" and meter.read() == pytest.approx(4.0)
    with pytest.raises(ValueError):
        EstimateMeter(5.0, 4.0, lambda: 0.0)


# -- temperature and the system sample ------------------------------------------------------------


def t(current: float) -> SimpleNamespace:
    return SimpleNamespace(label="", current=current, high=None, critical=None)


def test_temperature_prefers_cpu_sensors() -> None:
    sensors = {"nvme": [t(70.0)], "coretemp": [t(48.0), t(52.0)], "acpitz": [t(30.0)]}
    assert read_temperature(Path("/nonexistent"), lambda: sensors) == 52.0
    assert read_temperature(Path("/nonexistent"), lambda: {"nvme": [t(41.0)], "acpitz": [t(30.0)]}) == 41.0


def test_temperature_from_thermal_zones_and_implausible_values(tmp_path: Path) -> None:
    write(tmp_path / "class/thermal/thermal_zone0/temp", 45_500)
    write(tmp_path / "class/thermal/thermal_zone1/temp", 200_000)  # a broken sensor
    assert read_temperature(tmp_path, lambda: {}) == 45.5
    assert read_temperature(tmp_path, lambda: {"coretemp": [t(-273.0)]}) == 45.5
    assert read_temperature(tmp_path / "none", lambda: {}) is None


def test_system_sample(tmp_path: Path) -> None:
    write(tmp_path / "class/thermal/thermal_zone0/temp", 40_000)
    sample = SystemSampler(tmp_path, sys_root=tmp_path, sensors=lambda: {}).sample()
    assert sample.rss_bytes > 10_000_000 and sample.memory_available_bytes > 0 and sample.storage_free_bytes > 0
    assert sample.has_temperature and sample.temperature_c == 40.0
    assert sample.cpu_percent >= 0
    bare = SystemSampler(None, sys_root=tmp_path / "none", sensors=None).sample()
    assert not bare.has_temperature and bare.storage_free_bytes == 0

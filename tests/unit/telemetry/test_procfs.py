"""agent.telemetry.procfs: the /proc and /sys readers that replace psutil on the running agent.

Fake trees (tmp_path) for every reader, one cross-check against psutil on this machine, and a check that
the telemetry path does not import psutil on Linux.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from agent.probe import meminfo
from agent.telemetry import procfs
from agent.telemetry.power import system_cpu_utilisation
from agent.telemetry.system import SystemSampler, read_temperature
from tests.unit.telemetry.fakes import Clock, write

ROOT = Path(__file__).resolve().parents[3]



def stat_line(utime: int, stime: int, comm: str = "edge-agent") -> str:
    # pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime ...
    return f"4242 ({comm}) S 1 4242 4242 0 -1 4194560 100 0 0 0 {utime} {stime} 0 0 20 0 5 0 123 456 789"


def fake_proc(root: Path, *, utime: int = 0, stime: int = 0, comm: str = "edge-agent") -> Path:
    write(root / "self/stat", stat_line(utime, stime, comm))
    write(root / "self/statm", "50000 7000 3000 10 0 20000 0")
    write(root / "meminfo", "MemTotal:  8000000 kB\nMemFree:  1000000 kB\nMemAvailable:  5000000 kB\n"
                            "Buffers:  100 kB\nCached:  2000000 kB\nHugePages_Total:  0\n")
    write(root / "stat", "cpu  100 0 100 800 0 0 0 0 0 0\ncpu0 50 0 50 400 0 0 0 0 0 0\nintr 1 2 3\n")
    return root


# --- process figures ------------------------------------------------------------------------------

@pytest.mark.parametrize("comm", ["edge-agent", "odd ) name (x", "a b"])
def test_process_cpu_seconds_parses_after_the_command_name(tmp_path: Path, comm: str) -> None:
    proc = fake_proc(tmp_path, utime=250, stime=50, comm=comm)
    assert procfs.process_cpu_seconds(proc, ticks_per_second=100) == 3.0


def test_process_cpu_percent_is_share_of_one_core(tmp_path: Path) -> None:
    proc, clock = fake_proc(tmp_path, utime=1000, stime=0), Clock()
    percent = procfs.ProcessCpuPercent(proc, clock)
    assert percent() == 0.0  # no interval yet
    clock.now += 2.0
    write(proc / "self/stat", stat_line(1000 + 150 * procfs._clock_ticks() // 100, 50 * procfs._clock_ticks() // 100))
    assert percent() == pytest.approx(100.0)  # 2 CPU-seconds in 2 s
    clock.now += 1.0
    write(proc / "self/stat", stat_line(1000 + 350 * procfs._clock_ticks() // 100, 50 * procfs._clock_ticks() // 100))
    assert percent() == pytest.approx(200.0)  # two cores busy


def test_rss_from_statm_pages(tmp_path: Path) -> None:
    assert procfs.process_rss_bytes(fake_proc(tmp_path), page_size=4096) == 7000 * 4096


def test_memory_available(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path)
    assert procfs.memory_available_bytes(proc) == 5_000_000 * 1024
    write(proc / "meminfo", "MemTotal: 8000 kB\nMemFree: 1000 kB\nBuffers: 10 kB\nCached: 200 kB\n")  # < 3.14
    assert procfs.memory_available_bytes(proc) == 1210 * 1024
    values = meminfo.read_meminfo(proc)
    assert meminfo.memory_total_bytes(values) == 8000 * 1024
    write(proc / "meminfo", "nothing useful\n")
    with pytest.raises(ValueError, match="MemAvailable nor MemFree"):
        procfs.memory_available_bytes(proc)
    with pytest.raises(ValueError, match="MemTotal"):
        meminfo.memory_total_bytes(meminfo.read_meminfo(proc))


def test_readers_match_psutil_on_this_machine() -> None:
    psutil = pytest.importorskip("psutil")
    if not procfs.on_linux():
        pytest.skip("no procfs here")
    process = psutil.Process()
    assert procfs.process_rss_bytes() == pytest.approx(process.memory_info().rss, rel=0.05)
    assert procfs.memory_available_bytes() == pytest.approx(psutil.virtual_memory().available, rel=0.2)
    cpu = process.cpu_times()
    assert procfs.process_cpu_seconds() == pytest.approx(cpu.user + cpu.system, abs=0.5)


# --- device CPU utilisation -----------------------------------------------------------------------

def test_device_cpu_utilisation_from_proc_stat_deltas(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path)
    utilisation = system_cpu_utilisation(proc)
    assert isinstance(utilisation, procfs.DeviceCpuUtilisation)
    # +300 busy (user 200, system 50, irq 25, steal 25), +100 idle, +100 iowait; guest (+40) is inside user.
    write(proc / "stat", "cpu  300 0 150 900 100 25 0 25 40 0\n")
    assert utilisation() == pytest.approx(300 / 500)
    assert utilisation() == 0.0  # nothing moved
    write(proc / "stat", "cpu  300 0 150 1900 100 25 0 25 40 0\n")
    assert utilisation() == 0.0  # all idle


def test_device_cpu_utilisation_rejects_a_stat_without_cpu_line(tmp_path: Path) -> None:
    write(tmp_path / "stat", "intr 1 2 3\n")
    with pytest.raises(ValueError, match="no aggregate cpu line"):
        procfs.cpu_times(tmp_path)


def test_device_cpu_utilisation_falls_back_to_psutil_without_procfs(tmp_path: Path, monkeypatch) -> None:
    psutil = pytest.importorskip("psutil")
    monkeypatch.setattr(psutil, "cpu_percent", lambda interval=None: 40.0)
    assert system_cpu_utilisation(tmp_path / "absent")() == pytest.approx(0.4)


# --- temperatures ---------------------------------------------------------------------------------

def test_hwmon_temperatures_by_chip_name(tmp_path: Path) -> None:
    hwmon = tmp_path / "class/hwmon"
    write(hwmon / "hwmon0/name", "acpitz")
    write(hwmon / "hwmon0/temp1_input", 30_000)
    write(hwmon / "hwmon1/name", "coretemp")
    write(hwmon / "hwmon1/temp1_input", 48_000)
    write(hwmon / "hwmon1/temp1_label", "Package id 0")
    write(hwmon / "hwmon1/temp2_input", 52_500)
    write(hwmon / "hwmon2/device/name", "nvme")  # older drivers keep the files under device/
    write(hwmon / "hwmon2/device/temp1_input", 70_000)
    write(hwmon / "hwmon3/temp1_input", 99_000)  # no name: psutil skips it too
    write(hwmon / "hwmon4/name", "broken")
    write(hwmon / "hwmon4/temp1_input", "garbage")
    write(tmp_path / "class/thermal/thermal_zone0/type", "x86_pkg_temp")  # not read: hwmon has temperatures
    write(tmp_path / "class/thermal/thermal_zone0/temp", 90_000)

    found = procfs.hwmon_temperatures(tmp_path)

    assert {name: [r.current for r in readings] for name, readings in found.items()} == {
        "acpitz": [30.0], "coretemp": [48.0, 52.5], "nvme": [70.0]}
    assert found["coretemp"][0].label == "Package id 0"
    assert read_temperature(tmp_path, lambda: found) == 52.5  # CPU sensor first, as before


def test_thermal_zones_by_type_when_no_hwmon(tmp_path: Path) -> None:
    write(tmp_path / "class/thermal/thermal_zone0/type", "cpu-thermal")
    write(tmp_path / "class/thermal/thermal_zone0/temp", 61_300)
    write(tmp_path / "class/thermal/thermal_zone1/type", "gpu-thermal")
    write(tmp_path / "class/thermal/thermal_zone1/temp", 70_000)
    found = procfs.hwmon_temperatures(tmp_path)
    assert {n: [r.current for r in rs] for n, rs in found.items()} == {"cpu-thermal": [61.3], "gpu-thermal": [70.0]}
    assert read_temperature(tmp_path, lambda: found) == pytest.approx(61.3)  # the CPU zone, not the hottest


def test_default_sensors_read_the_given_sys_root_on_linux(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path / "proc")
    sys_root = tmp_path / "sys"
    write(sys_root / "class/hwmon/hwmon0/name", "k10temp")
    write(sys_root / "class/hwmon/hwmon0/temp1_input", 55_000)
    write(sys_root / "class/hwmon/hwmon1/name", "nvme")
    write(sys_root / "class/hwmon/hwmon1/temp1_input", 66_000)
    assert read_temperature(sys_root, proc_root=proc) == 55.0


# --- the sampler ----------------------------------------------------------------------------------

def test_system_sampler_reads_proc_and_sys(tmp_path: Path) -> None:
    proc, clock = fake_proc(tmp_path / "proc"), Clock()
    write(tmp_path / "sys/class/hwmon/hwmon0/name", "cpu_thermal")
    write(tmp_path / "sys/class/hwmon/hwmon0/temp1_input", 47_000)
    sampler = SystemSampler(tmp_path, sys_root=tmp_path / "sys", proc_root=proc, clock=clock)
    ticks = procfs._clock_ticks()
    write(proc / "self/stat", stat_line(ticks // 2, 0))  # 0.5 CPU-seconds
    clock.now += 1.0

    sample = sampler.sample()

    assert sample.cpu_percent == pytest.approx(50.0)
    assert sample.rss_bytes == 7000 * procfs._page_size()
    assert sample.memory_available_bytes == 5_000_000 * 1024
    assert sample.has_temperature and sample.temperature_c == 47.0
    assert sample.storage_free_bytes > 0


def test_system_sampler_reports_what_it_can_read(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path / "proc")
    sampler = SystemSampler(None, sys_root=tmp_path / "sys", proc_root=proc, clock=Clock())
    (proc / "self/statm").unlink()  # RSS unreadable: CPU and memory still reported
    sample = sampler.sample()
    assert sample.rss_bytes == 0 and sample.memory_available_bytes == 5_000_000 * 1024
    assert not sample.has_temperature


def test_system_sampler_uses_psutil_without_procfs(tmp_path: Path) -> None:
    pytest.importorskip("psutil")
    sample = SystemSampler(None, sys_root=tmp_path, proc_root=tmp_path / "absent", sensors=None).sample()
    assert sample.rss_bytes > 10_000_000 and sample.memory_available_bytes > 0


# --- no psutil on the running agent's path ---------------------------------------------------------

def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)


def test_telemetry_on_linux_never_imports_psutil() -> None:
    if not procfs.on_linux():
        pytest.skip("no procfs here")
    # agent.probe.memory (not part of this change) still imports psutil when agent.probe loads: make any
    # later `import psutil` fail, so telemetry construction and sampling must do without it.
    result = _run("""
        import sys
        from pathlib import Path
        import agent.probe
        sys.modules["psutil"] = None
        import agent.cli, agent.daemon, agent.serve.service
        from agent.probe.cpu import probe_cpu
        from agent.telemetry import system
        from agent.telemetry.power import system_cpu_utilisation
        sampler = system.SystemSampler(Path("."))
        assert sampler._sensors is not system._psutil_sensors
        sample = sampler.sample()
        assert sample.rss_bytes > 0 and sample.memory_available_bytes > 0, sample
        assert 0.0 <= system_cpu_utilisation()() <= 1.0
        cpu = probe_cpu(Path("/sys"), Path("/proc"))
        assert cpu.cores_logical > 0, cpu
        print("ok")
        """)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


def test_edge_agent_run_import_path_does_not_import_psutil() -> None:
    if not procfs.on_linux():
        pytest.skip("no procfs here")
    result = _run("""
        import sys
        from pathlib import Path
        import agent.cli, agent.daemon, agent.serve.service
        from agent.probe import probe
        from agent.telemetry.system import SystemSampler
        from agent.telemetry.power import system_cpu_utilisation
        probe(Path("."))
        SystemSampler(Path(".")).sample()
        system_cpu_utilisation()()
        print("psutil" in sys.modules)
        """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"

"""The hardware probe against fake sysfs/dev/proc/etc trees built in tmp_path."""
from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

import agent.probe as probe_pkg
from agent.probe import ProbeRoots, probe
from agent.probe import cpu as cpu_mod
from agent.probe import power as power_mod
from agent.probe import runtime as runtime_mod
from agent.probe.hardware_class import derive_hardware_class
from agent.probe.system import parse_os_release
from edgefleet.v1.hardware_pb2 import Accelerator, CpuInfo, HardwareProfile


@pytest.fixture
def roots(tmp_path: Path) -> ProbeRoots:
    r = ProbeRoots(sys=tmp_path / "sys", dev=tmp_path / "dev", proc=tmp_path / "proc", etc=tmp_path / "etc")
    for d in (r.sys, r.dev, r.proc, r.etc):
        d.mkdir()
    return r


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    d = tmp_path / "state"
    d.mkdir()
    return d


def put(path: Path, text: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def usb_device(roots: ProbeRoots, port: str, vendor: str, product: str) -> None:
    put(roots.sys / "bus/usb/devices" / port / "idVendor", vendor + "\n")
    put(roots.sys / "bus/usb/devices" / port / "idProduct", product + "\n")


# --- accelerators ---------------------------------------------------------------------------------

def test_edgetpu_usb_before_and_after_firmware_load(roots: ProbeRoots, state_dir: Path) -> None:
    usb_device(roots, "1-1", "1a6e", "089a")
    usb_device(roots, "2-1", "18d1", "9302")
    usb_device(roots, "usb1", "1d6b", "0002")  # a root hub: not an accelerator
    (roots.sys / "bus/usb/devices/1-1:1.0").mkdir()  # an interface: no ids at all

    hw = probe(state_dir, roots)

    tpus = [(a.kind, a.bus, a.id, a.name, a.detail) for a in hw.accelerators]
    assert tpus == [
        ("edgetpu", "usb", "1a6e:089a", "Coral USB Accelerator", "firmware not loaded yet"),
        ("edgetpu", "usb", "18d1:9302", "Coral USB Accelerator", "firmware loaded"),
    ]
    assert hw.hardware_class.endswith("-edgetpu")


def test_edgetpu_pcie_apex_node(roots: ProbeRoots, state_dir: Path) -> None:
    put(roots.dev / "apex_0")
    put(roots.dev / "apex_something")  # not an apex_N node

    hw = probe(state_dir, roots)

    assert [(a.kind, a.bus, a.id) for a in hw.accelerators] == [("edgetpu", "pcie", str(roots.dev / "apex_0"))]
    assert hw.hardware_class == f"{derive_hardware_class(HardwareProfile(cpu=hw.cpu))}-edgetpu"


def test_nvidia_pcie_gpu_named_by_driver_and_render_node_not_counted_twice(roots: ProbeRoots, state_dir: Path) -> None:
    for node in ("nvidia0", "nvidiactl", "nvidia-uvm", "nvidia-modeset"):
        put(roots.dev / node)
    put(roots.proc / "driver/nvidia/gpus/0000:01:00.0/information",
        "Model: \t\t Tesla T4\nIRQ:   \t\t 35\nDevice Minor: \t 0\n")
    put(roots.dev / "dri/renderD128")
    put(roots.sys / "class/drm/renderD128/device/vendor", "0x10de\n")

    gpus = [(a.kind, a.bus, a.id, a.name) for a in probe(state_dir, roots).accelerators]

    assert gpus == [("gpu", "pcie", str(roots.dev / "nvidia0"), "Tesla T4")]


def test_tegra_gpu_is_integrated_and_named_from_device_tree(roots: ProbeRoots, state_dir: Path) -> None:
    put(roots.dev / "nvhost-ctrl")
    put(roots.dev / "nvhost-gpu")
    put(roots.sys / "firmware/devicetree/base/compatible", "nvidia,p3450-0000\0nvidia,jetson-nano\0nvidia,tegra210\0")
    put(roots.sys / "firmware/devicetree/base/model", "NVIDIA Jetson Nano Developer Kit\0")

    hw = probe(state_dir, roots)

    assert [(a.kind, a.bus, a.id, a.name) for a in hw.accelerators] == [
        ("gpu", "integrated", str(roots.dev / "nvhost-gpu"), "NVIDIA Tegra X1")
    ]
    assert hw.cpu.model == "NVIDIA Jetson Nano Developer Kit"  # no model line in cpuinfo: device tree
    assert hw.hardware_class.endswith("-gpu")


def test_tegra_with_nvidia_nodes_reports_them_as_integrated(roots: ProbeRoots, state_dir: Path) -> None:
    put(roots.dev / "nvhost-ctrl-gpu")
    put(roots.dev / "nvidia0")

    accs = probe(state_dir, roots).accelerators

    assert [(a.bus, a.id, a.name) for a in accs] == [("integrated", str(roots.dev / "nvidia0"), "NVIDIA Tegra GPU")]


def test_dri_render_nodes(roots: ProbeRoots, state_dir: Path) -> None:
    drm = roots.sys / "class/drm"
    for n in (128, 129, 130, 131):
        put(roots.dev / f"dri/renderD{n}")
    put(roots.dev / "dri/card0")  # a display node, not a render node
    put(drm / "renderD128/device/vendor", "0x8086\n")
    put(drm / "renderD129/device/uevent", "DRIVER=v3d\nOF_NAME=v3d\n")
    put(drm / "renderD130/device/uevent", "DRIVER=vgem\n")  # software only
    put(drm / "renderD131/device/vendor", "0x1002\n")

    accs = probe(state_dir, roots).accelerators

    assert [(a.kind, a.bus, a.id, a.name) for a in accs] == [
        ("gpu", "integrated", str(roots.dev / "dri/renderD128"), "Intel GPU"),
        ("gpu", "integrated", str(roots.dev / "dri/renderD129"), "GPU (v3d)"),
        ("gpu", "pcie", str(roots.dev / "dri/renderD131"), "AMD GPU"),
    ]


# --- power ----------------------------------------------------------------------------------------

def rapl_zones(roots: ProbeRoots) -> tuple[Path, Path]:
    pkg = put(roots.sys / "class/powercap/intel-rapl:0/energy_uj", "123456789\n")
    put(roots.sys / "class/powercap/intel-rapl:0/name", "package-0\n")
    core = put(roots.sys / "class/powercap/intel-rapl:0:0/energy_uj", "42\n")
    put(roots.sys / "class/powercap/intel-rapl:0:0/name", "core\n")
    (roots.sys / "class/powercap/intel-rapl").mkdir()  # the control type dir: no energy_uj
    return pkg, core


def test_rapl_readable_and_unreadable_via_injected_check(roots: ProbeRoots, state_dir: Path, monkeypatch) -> None:
    pkg, core = rapl_zones(roots)
    seen: list[Path] = []

    def only_package_readable(path: Path) -> bool:
        seen.append(path)
        return path == pkg

    monkeypatch.setattr(power_mod, "can_read", only_package_readable)
    sources = probe(state_dir, roots).power_sources

    assert [(s.kind, s.name, s.path, s.readable) for s in sources] == [
        ("rapl", "package-0", str(pkg), True),
        ("rapl", "core", str(core), False),
    ]
    assert set(seen) == {pkg, core}


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a mode-000 file: covered by the injected check above")
def test_rapl_mode_000_is_unreadable_for_a_normal_user(roots: ProbeRoots) -> None:
    pkg, core = rapl_zones(roots)
    pkg.chmod(0o000)
    try:
        flags = {s.name: s.readable for s in power_mod.probe_power(roots.sys)}
    finally:
        pkg.chmod(0o600)
    assert flags == {"package-0": False, "core": True}


def test_default_readable_check_is_os_access(tmp_path: Path, monkeypatch) -> None:
    f = put(tmp_path / "energy_uj", "1")
    calls = []
    monkeypatch.setattr(power_mod.os, "access", lambda p, mode: calls.append((Path(p), mode)) or False)
    assert power_mod.can_read(f) is False
    assert calls == [(f, os.R_OK)]


def test_batteries_ac_supplies(roots: ProbeRoots, state_dir: Path) -> None:
    ps = roots.sys / "class/power_supply"
    put(ps / "BAT0/type", "Battery\n")
    put(ps / "BAT0/power_now", "7350000\n")
    put(ps / "BAT1/type", "Battery\n")
    put(ps / "BAT1/current_now", "512000\n")
    put(ps / "BAT1/voltage_now", "3800000\n")
    put(ps / "BAT2/type", "Battery\n")  # present but no power figure
    put(ps / "BAT2/current_now", "1\n")
    put(ps / "AC/type", "Mains\n")
    put(ps / "AC/online", "1\n")
    put(ps / "hidpp_battery_0/type", "Unknown\n")  # not a supply kind we use
    put(ps / "broken/type")  # empty type file

    sources = probe(state_dir, roots).power_sources

    assert [(s.kind, s.name, s.path, s.readable) for s in sources] == [
        ("ac", "AC", str(ps / "AC/online"), True),
        ("battery", "BAT0", str(ps / "BAT0/power_now"), True),
        ("battery", "BAT1", str(ps / "BAT1"), True),
        ("battery", "BAT2", str(ps / "BAT2"), False),
    ]


def test_hwmon_ina_sensors(roots: ProbeRoots, state_dir: Path) -> None:
    hw_root = roots.sys / "class/hwmon"
    put(hw_root / "hwmon0/name", "coretemp\n")
    put(hw_root / "hwmon1/name", "ina3221\n")
    put(hw_root / "hwmon1/in1_input", "5072\n")
    put(hw_root / "hwmon1/curr1_input", "312\n")
    put(hw_root / "hwmon10/name", "ina219\n")  # no input files: present, not readable

    sources = probe(state_dir, roots).power_sources

    assert [(s.kind, s.name, s.path, s.readable) for s in sources] == [
        ("hwmon", "ina3221", str(hw_root / "hwmon1"), True),
        ("hwmon", "ina219", str(hw_root / "hwmon10"), False),
    ]


# --- cpu, os ---------------------------------------------------------------------------------------

def test_cpufreq_max_over_all_cpus(roots: ProbeRoots, state_dir: Path) -> None:
    cpus = roots.sys / "devices/system/cpu"
    put(cpus / "cpu0/cpufreq/cpuinfo_max_freq", "1416000\n")  # LITTLE
    put(cpus / "cpu4/cpufreq/cpuinfo_max_freq", "1800000\n")  # big
    put(cpus / "cpu5/cpufreq/cpuinfo_max_freq", "garbage\n")
    (cpus / "cpu6").mkdir()  # offline core: no cpufreq
    put(cpus / "cpufreq/policy0/cpuinfo_max_freq", "9999999\n")  # not a cpuN dir

    assert probe(state_dir, roots).cpu.max_freq_mhz == 1800.0


@pytest.mark.parametrize(
    "cpuinfo, expected",
    [
        ("processor\t: 0\ncpu MHz\t\t: 2596.1\n\nprocessor\t: 1\ncpu MHz\t\t: 2600.1\n", 2598.1),  # VMs: the mean
        ("processor\t: 0\ncpu MHz\t\t: garbage\n", 0.0),
        ("processor\t: 0\n", 0.0),
    ],
)
def test_cpufreq_falls_back_to_cpuinfo_mhz(roots: ProbeRoots, cpuinfo: str, expected: float) -> None:
    put(roots.proc / "cpuinfo", cpuinfo)
    assert cpu_mod.max_freq_mhz(roots.sys, roots.proc) == pytest.approx(expected)


def test_cpufreq_scaling_max_when_no_cpuinfo_max(roots: ProbeRoots) -> None:
    put(roots.sys / "devices/system/cpu/cpu0/cpufreq/scaling_max_freq", "1500000\n")
    put(roots.sys / "devices/system/cpu/cpu1/cpufreq/scaling_max_freq", "1200000\n")
    put(roots.proc / "cpuinfo", "cpu MHz\t: 999.0\n")
    assert cpu_mod.max_freq_mhz(roots.sys, roots.proc) == 1500.0


@pytest.mark.parametrize(
    "freq, expected",
    [
        (SimpleNamespace(current=2596.1, min=0.0, max=3400.0), 3400.0),
        (SimpleNamespace(current=2596.1, min=0.0, max=0.0), 2596.1),  # VMs report max 0
        (None, 0.0),
    ],
)
def test_cpufreq_falls_back_to_psutil_without_procfs(roots: ProbeRoots, monkeypatch, freq, expected) -> None:
    import psutil

    monkeypatch.setattr(psutil, "cpu_freq", lambda: freq)
    assert cpu_mod.max_freq_mhz(roots.sys, roots.proc / "absent") == expected


@pytest.mark.parametrize(
    "topology, cpuinfo, expected",
    [
        ({"cpu0": "0-1", "cpu1": "0-1", "cpu2": "2-3", "cpu3": "2-3"}, None, 2),  # SMT pairs
        ({"cpu0": "0", "cpu1": "1", "cpu2": "2"}, None, 3),
        ({}, "processor\t: 0\nphysical id\t: 0\ncpu cores\t: 4\n\nprocessor\t: 1\nphysical id\t: 0\n"
             "cpu cores\t: 4\n\nprocessor\t: 2\nphysical id\t: 1\ncpu cores\t: 4\n", 8),
        ({}, "processor\t: 0\nFeatures\t: fp asimd\n", 0),  # unknown
    ],
)
def test_physical_cores_like_psutil(roots: ProbeRoots, topology: dict, cpuinfo: str | None, expected: int) -> None:
    for cpu, siblings in topology.items():
        put(roots.sys / f"devices/system/cpu/{cpu}/topology/core_cpus_list", siblings + "\n")
    if cpuinfo is not None:
        put(roots.proc / "cpuinfo", cpuinfo)
    assert cpu_mod.physical_cores(roots.sys, roots.proc) == expected


def test_cpu_counts_fall_back_to_psutil_without_procfs(roots: ProbeRoots, monkeypatch) -> None:
    import psutil

    monkeypatch.setattr(cpu_mod.os, "cpu_count", lambda: None)
    monkeypatch.setattr(psutil, "cpu_count", lambda logical=True: 6 if logical else 3)
    absent = roots.proc / "absent"
    assert (cpu_mod.logical_cores(absent), cpu_mod.physical_cores(roots.sys, absent)) == (6, 3)


def test_logical_cores_counts_processor_lines_when_os_cannot(roots: ProbeRoots, monkeypatch) -> None:
    monkeypatch.setattr(cpu_mod.os, "cpu_count", lambda: None)
    put(roots.proc / "cpuinfo", "processor\t: 0\n\nprocessor\t: 1\n\nprocessor\t: 2\n")
    assert cpu_mod.logical_cores(roots.proc) == 3


X86_CPUINFO = """\
processor\t: 0
vendor_id\t: AuthenticAMD
model\t\t: 49
model name\t: AMD EPYC 7B12
flags\t\t: fpu sse sse2 avx avx2 fma avx512f avx512_vnni aes
processor\t: 1
model\t\t: 49
model name\t: AMD EPYC 7B12
flags\t\t: fpu sse sse2 avx avx2 fma avx512f avx512_vnni aes
"""

PI4_CPUINFO = """\
processor\t: 0
BogoMIPS\t: 108.00
Features\t: fp asimd evtstrm crc32 cpuid
CPU part\t: 0xd08

Hardware\t: BCM2835
Revision\t: c03114
Model\t\t: Raspberry Pi 4 Model B Rev 1.4
"""

ARMV7_CPUINFO = """\
model name\t: ARMv7 Processor rev 4 (v7l)
Features\t: half thumb fastmult vfp edsp neon vfpv3 tls vfpv4 idiva idivt vfpd32 lpae evtstrm crc32
Hardware\t: BCM2835
"""


@pytest.mark.parametrize(
    "text, model, features",
    [
        (X86_CPUINFO, "AMD EPYC 7B12", ["avx2", "fma", "avx512f", "avx512_vnni"]),
        (PI4_CPUINFO, "Raspberry Pi 4 Model B Rev 1.4", ["asimd"]),
        (ARMV7_CPUINFO, "ARMv7 Processor rev 4 (v7l)", ["neon"]),
        ("Hardware\t: Freescale i.MX8MQ\nFeatures\t: fp asimd asimddp\n", "Freescale i.MX8MQ", ["asimd", "asimddp"]),
        ("model\t\t: 49\n", "", []),  # a numeric model id is not a name
    ],
)
def test_cpuinfo_model_and_features(roots: ProbeRoots, state_dir: Path, text: str, model: str, features: list[str]) -> None:
    put(roots.proc / "cpuinfo", text)
    cpu = probe(state_dir, roots).cpu
    assert (cpu.model, list(cpu.features)) == (model, features)


def test_cpu_counts_and_arch_come_from_os_sysfs_and_platform(roots: ProbeRoots, state_dir: Path, monkeypatch) -> None:
    monkeypatch.setattr(cpu_mod.platform, "machine", lambda: "aarch64")
    monkeypatch.setattr(cpu_mod.os, "cpu_count", lambda: 8)  # no topology files in the fake tree: 0 cores

    hw = probe(state_dir, roots)

    assert (hw.cpu.arch, hw.cpu.cores_logical, hw.cpu.cores_physical) == ("aarch64", 8, 0)
    assert hw.hardware_class == "aarch64-8c"


def test_os_release(roots: ProbeRoots, state_dir: Path) -> None:
    put(roots.etc / "os-release", textwrap.dedent('''\
        # comment
        NAME="Debian GNU/Linux"
        VERSION_ID="12"
        PRETTY_NAME="Debian GNU/Linux 12 (bookworm) \\"test\\""
        ID=debian
        broken line without equals
        '''))

    os_info = probe(state_dir, roots).os

    assert os_info.distro == 'Debian GNU/Linux 12 (bookworm) "test"'
    assert os_info.system and os_info.kernel and os_info.python and os_info.hostname


def test_os_release_fallbacks(tmp_path: Path) -> None:
    from agent.probe.system import distro_name

    etc = tmp_path / "etc"
    put(tmp_path / "usr/lib/os-release", "NAME='Mendel GNU/Linux'\nVERSION=\"5 (Eagle)\"\n")
    assert distro_name(etc) == "Mendel GNU/Linux 5 (Eagle)"
    put(etc / "os-release", "PRETTY_NAME=\"Ubuntu 22.04.4 LTS\"\n")
    assert distro_name(etc) == "Ubuntu 22.04.4 LTS"
    assert parse_os_release("A='unbalanced\nB=plain\n") == {"A": "unbalanced", "B": "plain"}


# --- whole probe ----------------------------------------------------------------------------------

def test_empty_tree_gives_empty_fields_not_errors(roots: ProbeRoots, state_dir: Path, monkeypatch) -> None:
    hw = probe(state_dir, roots)

    assert list(hw.accelerators) == [] and list(hw.power_sources) == []
    assert (hw.cpu.model, list(hw.cpu.features), hw.cpu.max_freq_mhz) == ("", [], 0.0)
    assert hw.os.distro == ""
    assert (hw.simulated, hw.latency_factor, hw.profile_name, list(hw.overridden)) == (False, 1.0, "", [])
    assert hw.hardware_class == derive_hardware_class(hw)
    assert hw.memory.total_bytes > 0 and hw.storage.free_bytes > 0  # psutil and the real file system


def test_missing_roots_and_odd_files(tmp_path: Path, state_dir: Path) -> None:
    r = ProbeRoots(sys=tmp_path / "nosys", dev=tmp_path / "nodev", proc=tmp_path / "noproc", etc=tmp_path / "noetc")
    assert list(probe(state_dir, r).accelerators) == []

    r2 = ProbeRoots(sys=tmp_path / "sys", dev=tmp_path / "dev", proc=tmp_path / "proc", etc=tmp_path / "etc")
    (tmp_path / "dev").mkdir()
    (r2.sys / "bus/usb/devices/1-1/idVendor").mkdir(parents=True)  # a directory where a file belongs
    (r2.sys / "bus/usb/devices/1-2").mkdir(parents=True)
    (r2.sys / "bus/usb/devices/1-2/idVendor").write_bytes(b"\xff\xfe\x00")
    (r2.sys / "bus/usb/devices/1-2/idProduct").write_bytes(b"\x89\x9a")
    (r2.sys / "class/powercap/intel-rapl:0/energy_uj").mkdir(parents=True)
    put(r2.proc / "cpuinfo", "\x00\x01 no colon\n:\n : \n")
    (r2.etc / "os-release").mkdir(parents=True)

    hw = probe(state_dir, r2)

    assert list(hw.accelerators) == []
    assert hw.os.distro == "" and hw.cpu.model == ""


def test_storage_of_a_state_dir_not_created_yet(tmp_path: Path, roots: ProbeRoots) -> None:
    target = tmp_path / "not/yet/state"
    hw = probe(target, roots)
    assert hw.storage.path == str(target)
    assert hw.storage.total_bytes > 0 and 0 < hw.storage.free_bytes <= hw.storage.total_bytes


def test_a_failing_section_leaves_only_that_section_empty(roots: ProbeRoots, state_dir: Path, monkeypatch) -> None:
    def boom():
        raise RuntimeError("psutil exploded")

    monkeypatch.setattr(probe_pkg, "probe_memory", boom)
    put(roots.dev / "apex_0")

    hw = probe(state_dir, roots)

    assert not hw.HasField("memory")
    assert hw.cpu.cores_logical > 0 and len(hw.accelerators) == 1


@pytest.mark.parametrize(
    "arch, cores, kinds, expected",
    [
        ("x86_64", 2, [], "x86_64-2c"),
        ("AMD64", 8, ["gpu"], "x86_64-8c-gpu"),
        ("arm64", 4, ["gpu", "edgetpu", "edgetpu"], "aarch64-4c-edgetpu-gpu"),
        ("", 0, [], "unknown-0c"),
    ],
)
def test_hardware_class_rule(arch: str, cores: int, kinds: list[str], expected: str) -> None:
    hw = HardwareProfile(cpu=CpuInfo(arch=arch, cores_logical=cores), accelerators=[Accelerator(kind=k) for k in kinds])
    assert derive_hardware_class(hw) == expected


# --- runtime --------------------------------------------------------------------------------------

def test_runtime_in_this_venv_is_ai_edge_litert() -> None:
    info = runtime_mod.detect_runtime()
    assert info.name == "ai-edge-litert"
    assert info.version == importlib.metadata.version("ai-edge-litert")
    assert info.delegates[0] == "xnnpack"


def fake_specs(monkeypatch, modules: dict[str, object], versions: dict[str, str]) -> list[str]:
    asked: list[str] = []

    def find_spec(name: str):
        asked.append(name)
        return modules.get(name)

    monkeypatch.setattr(runtime_mod, "find_spec", find_spec)
    monkeypatch.setattr(runtime_mod, "dist_version", versions.get)
    monkeypatch.setattr(runtime_mod, "find_library", lambda name: None)
    monkeypatch.setattr(runtime_mod, "LIB_DIRS", ())
    return asked


def test_runtime_falls_back_to_tflite_runtime(monkeypatch) -> None:
    asked = fake_specs(monkeypatch, {"tflite_runtime": SimpleNamespace()}, {"tflite-runtime": "2.14.0"})
    info = runtime_mod.detect_runtime()
    assert (info.name, info.version, list(info.delegates)) == ("tflite_runtime", "2.14.0", ["xnnpack"])
    assert asked == ["ai_edge_litert", "tflite_runtime"]


def test_runtime_falls_back_to_tensorflow_lite_without_importing_it(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "tensorflow/lite").mkdir(parents=True)
    spec = SimpleNamespace(submodule_search_locations=[str(tmp_path / "tensorflow")])
    asked = fake_specs(monkeypatch, {"tensorflow": spec}, {"tensorflow-cpu": "2.21.0"})
    info = runtime_mod.detect_runtime()
    assert (info.name, info.version) == ("tensorflow.lite", "2.21.0")
    assert asked == ["ai_edge_litert", "tflite_runtime", "tensorflow"]  # never "tensorflow.lite": that imports tensorflow


def test_runtime_none(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "tensorflow").mkdir()  # a tensorflow without lite/ does not count
    spec = SimpleNamespace(submodule_search_locations=[str(tmp_path / "tensorflow")])
    fake_specs(monkeypatch, {"tensorflow": spec}, {"tensorflow": "2.21.0"})
    info = runtime_mod.detect_runtime()
    assert (info.name, info.version, list(info.delegates)) == ("none", "", [])


def test_runtime_prefers_ai_edge_litert_over_the_others(monkeypatch) -> None:
    present = {m: SimpleNamespace(submodule_search_locations=None) for m in ("ai_edge_litert", "tflite_runtime", "tensorflow")}
    fake_specs(monkeypatch, present, {"ai-edge-litert": "9.9", "tflite-runtime": "2.14.0"})
    assert runtime_mod.detect_runtime().name == "ai-edge-litert"


def test_delegates_edgetpu_from_lib_dir_and_gpu_from_loader(tmp_path: Path, monkeypatch) -> None:
    fake_specs(monkeypatch, {"ai_edge_litert": SimpleNamespace()}, {"ai-edge-litert": "2.3.0"})
    assert list(runtime_mod.detect_runtime().delegates) == ["xnnpack"]

    put(tmp_path / "libedgetpu.so.1")
    monkeypatch.setattr(runtime_mod, "LIB_DIRS", (tmp_path / "missing", tmp_path))
    assert list(runtime_mod.detect_runtime().delegates) == ["xnnpack", "edgetpu"]

    monkeypatch.setattr(runtime_mod, "find_library",
                        lambda name: "libtensorflowlite_gpu_delegate.so" if name == "tensorflowlite_gpu_delegate" else None)
    assert list(runtime_mod.detect_runtime().delegates) == ["xnnpack", "edgetpu", "gpu"]


# --- lightness ------------------------------------------------------------------------------------

def test_probe_and_profile_do_not_import_tensorflow_or_coordinator(tmp_path: Path) -> None:
    code = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from agent.profile import probe_with_profile
        probe_with_profile(Path({str(tmp_path)!r}), "coral-dev-board")
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "tf_keras", "keras", "coordinator"))
        print(",".join(heavy))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""


def test_loader_lookups_are_asked_again_only_when_the_loader_cache_changes(tmp_path: Path, monkeypatch) -> None:
    """find_library runs ldconfig in a subprocess: not on every hello, but again once a library was installed."""
    import ctypes.util

    cache = tmp_path / "ld.so.cache"
    cache.write_bytes(b"one")
    asked: list[str] = []
    answers = {"edgetpu": None}
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: asked.append(name) or answers.get(name))
    monkeypatch.setattr(runtime_mod, "LD_CACHE", cache)
    monkeypatch.setattr(runtime_mod, "_found", {})
    assert runtime_mod.ask_loader("edgetpu") is None
    assert runtime_mod.ask_loader("edgetpu") is None
    assert asked == ["edgetpu"]
    answers["edgetpu"] = "libedgetpu.so.1"
    cache.write_bytes(b"two, after an install")
    assert runtime_mod.ask_loader("edgetpu") == "libedgetpu.so.1"
    assert asked == ["edgetpu", "edgetpu"]
    monkeypatch.setattr(runtime_mod, "LD_CACHE", tmp_path / "missing")  # nothing to watch: asked every time
    runtime_mod.ask_loader("edgetpu")
    runtime_mod.ask_loader("edgetpu")
    assert asked == ["edgetpu"] * 4


def test_probe_memory_reads_proc_meminfo(tmp_path: Path) -> None:
    from agent.probe.memory import probe_memory

    (tmp_path / "meminfo").write_text("MemTotal:        2048000 kB\nMemFree:          100000 kB\nMemAvailable:     512000 kB\n")
    info = probe_memory(tmp_path)
    assert info.total_bytes == 2048000 * 1024
    assert info.available_bytes == 512000 * 1024

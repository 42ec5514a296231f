"""Profile files: loading bundled and user profiles, applying overrides, and the errors for bad ones."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from agent.probe import ProbeRoots, probe
from agent.profile import (
    ProfileError,
    apply_profile,
    bundled_profiles,
    load_profile,
    probe_with_profile,
    profile_name,
)
from edgefleet.v1.hardware_pb2 import Accelerator, CpuInfo, HardwareProfile, MemoryInfo, StorageInfo

REQUIRED = {"raspberry-pi-4", "raspberry-pi-zero-2-w", "coral-dev-board", "jetson-nano", "x86-gateway"}


@pytest.fixture
def probed() -> HardwareProfile:
    """A stand-in for a probe of an x86 host with a GPU."""
    hw = HardwareProfile(
        cpu=CpuInfo(arch="x86_64", cores_logical=2, cores_physical=2, max_freq_mhz=2600.0, model="host cpu", features=["avx2"]),
        memory=MemoryInfo(total_bytes=16 << 30, available_bytes=12 << 30),
        storage=StorageInfo(path="/var/lib/edgefleet", total_bytes=100 << 30, free_bytes=50 << 30),
        accelerators=[Accelerator(kind="gpu", bus="pcie", id="/dev/nvidia0")],
        latency_factor=1.0,
    )
    hw.hardware_class = "x86_64-2c-gpu"
    return hw


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


# --- bundled profiles -----------------------------------------------------------------------------

def test_the_required_profiles_are_bundled() -> None:
    assert REQUIRED <= set(bundled_profiles())


@pytest.mark.parametrize("name", bundled_profiles())
def test_each_bundled_profile_loads_and_applies(name: str, probed: HardwareProfile) -> None:
    hw = apply_profile(probed, load_profile(name), name=name)

    assert (hw.profile_name, hw.hardware_class, hw.simulated) == (name, name, True)
    assert hw.latency_factor >= 1.0
    assert hw.cpu.arch in ("aarch64", "x86_64") and hw.cpu.cores_logical >= 1 and hw.cpu.max_freq_mhz > 0
    assert 0 < hw.memory.available_bytes < hw.memory.total_bytes
    assert hw.os.kernel and hw.os.distro
    assert 0 < hw.power_model.idle_watts < hw.power_model.active_watts
    assert hw.storage == probed.storage  # not set by any bundled profile: stays probed
    assert all(a.id != "/dev/nvidia0" for a in hw.accelerators)  # the host's GPU does not leak in
    assert {"cpu.arch", "memory.available_bytes", "simulated", "latency_factor", "accelerators"} <= set(hw.overridden)
    assert "storage.free_bytes" not in hw.overridden


def test_bundled_accelerators(probed: HardwareProfile) -> None:
    coral = apply_profile(probed, load_profile("coral-dev-board"), name="coral-dev-board")
    jetson = apply_profile(probed, load_profile("jetson-nano"), name="jetson-nano")
    pi = apply_profile(probed, load_profile("raspberry-pi-4"), name="raspberry-pi-4")

    assert [(a.kind, a.bus, a.id) for a in coral.accelerators] == [("edgetpu", "pcie", "/dev/apex_0")]
    assert [(a.kind, a.bus, a.name) for a in jetson.accelerators] == [("gpu", "integrated", "NVIDIA Tegra X1")]
    assert list(pi.accelerators) == []


def test_latency_factors_order_boards_by_cpu_speed() -> None:
    factor = {n: load_profile(n)["latency_factor"] for n in REQUIRED}
    assert factor["x86-gateway"] < factor["jetson-nano"] < factor["raspberry-pi-4"] < factor["coral-dev-board"] < factor["raspberry-pi-zero-2-w"]


def test_probe_with_bundled_profile_keeps_probed_storage(tmp_path: Path) -> None:
    roots = ProbeRoots(sys=tmp_path / "sys", dev=tmp_path / "dev", proc=tmp_path / "proc", etc=tmp_path / "etc")
    plain = probe_with_profile(tmp_path, None, roots)
    pi = probe_with_profile(tmp_path, "raspberry-pi-zero-2-w", roots)

    assert plain.profile_name == "" and not plain.simulated
    assert pi.profile_name == "raspberry-pi-zero-2-w" and pi.cpu.max_freq_mhz == 1000.0
    assert pi.storage.path == str(tmp_path) and pi.storage.total_bytes == plain.storage.total_bytes
    assert pi.runtime.name == plain.runtime.name  # the host's interpreter runs the model
    assert pi.os.hostname == plain.os.hostname


# --- applying -------------------------------------------------------------------------------------

def test_apply_replaces_given_fields_records_paths_and_leaves_input_alone(probed: HardwareProfile) -> None:
    before = HardwareProfile()
    before.CopyFrom(probed)

    hw = apply_profile(probed, {"cpu": {"arch": "aarch64", "features": ["asimd"]}, "memory": {"available_bytes": 1000}}, name="mine")

    assert probed == before
    assert list(hw.overridden) == ["cpu.arch", "cpu.features", "memory.available_bytes"]
    assert (hw.cpu.arch, list(hw.cpu.features), hw.cpu.model, hw.cpu.cores_logical) == ("aarch64", ["asimd"], "host cpu", 2)
    assert (hw.memory.total_bytes, hw.memory.available_bytes) == (16 << 30, 1000)
    assert hw.profile_name == "mine"
    assert (hw.simulated, hw.latency_factor) == (False, 1.0)  # a profile that does not say simulated is not
    assert hw.hardware_class == "aarch64-2c-gpu"  # derived again: the profile did not set it


def test_accelerator_list_is_replaced_not_merged(probed: HardwareProfile) -> None:
    hw = apply_profile(probed, {"accelerators": [{"kind": "edgetpu", "bus": "pcie", "id": "/dev/apex_0"}]}, name="p")
    assert [(a.kind, a.id) for a in hw.accelerators] == [("edgetpu", "/dev/apex_0")]
    assert list(hw.overridden) == ["accelerators"]
    assert hw.hardware_class == "x86_64-2c-edgetpu"


def test_simulated_profile_sets_flag_and_factor(probed: HardwareProfile) -> None:
    hw = apply_profile(probed, {"simulated": True, "latency_factor": 7, "hardware_class": "my-board"}, name="p")
    assert (hw.simulated, hw.latency_factor, hw.hardware_class) == (True, 7.0, "my-board")


def test_applying_twice_keeps_every_overridden_path_once(probed: HardwareProfile) -> None:
    once = apply_profile(probed, {"cpu": {"arch": "aarch64"}}, name="a")
    twice = apply_profile(once, {"cpu": {"arch": "armv7l"}, "memory": {"total_bytes": 5}}, name="b")
    assert list(twice.overridden) == ["cpu.arch", "memory.total_bytes"]
    assert (twice.profile_name, twice.cpu.arch) == ("b", "armv7l")


# --- files ----------------------------------------------------------------------------------------

TOML = """\
hardware_class = "lab-board"
simulated = true
latency_factor = 2.5
power_sources = [{kind = "hwmon", path = "/sys/class/hwmon/hwmon1", name = "ina3221", readable = true}]

[cpu]
arch = "aarch64"
cores_logical = 6

[[accelerators]]
kind = "edgetpu"
bus = "usb"
id = "18d1:9302"
"""

YAML = """\
hardware_class: lab-board
simulated: true
latency_factor: 2.5
power_sources:
  - {kind: hwmon, path: /sys/class/hwmon/hwmon1, name: ina3221, readable: true}
cpu:
  arch: aarch64
  cores_logical: 6
accelerators:
  - kind: edgetpu
    bus: usb
    id: "18d1:9302"
"""


@pytest.mark.parametrize("file_name, text", [("lab.toml", TOML), ("lab.yaml", YAML), ("lab.yml", YAML)])
def test_toml_and_yaml_files(tmp_path: Path, probed: HardwareProfile, file_name: str, text: str) -> None:
    path = write(tmp_path / file_name, text)

    for ref in (path, str(path)):
        hw = apply_profile(probed, load_profile(ref), name=profile_name(ref))
        assert hw.profile_name == "lab"
        assert (hw.cpu.arch, hw.cpu.cores_logical, hw.cpu.model) == ("aarch64", 6, "host cpu")
        assert [(a.kind, a.bus, a.id) for a in hw.accelerators] == [("edgetpu", "usb", "18d1:9302")]
        assert [(s.kind, s.name, s.readable) for s in hw.power_sources] == [("hwmon", "ina3221", True)]
        assert (hw.simulated, hw.latency_factor, hw.hardware_class) == (True, 2.5, "lab-board")
        assert set(hw.overridden) == {"hardware_class", "simulated", "latency_factor", "power_sources",
                                      "cpu.arch", "cpu.cores_logical", "accelerators"}


def test_probe_with_a_profile_file(tmp_path: Path) -> None:
    path = write(tmp_path / "lab.yaml", YAML)
    roots = ProbeRoots(sys=tmp_path / "sys", dev=tmp_path / "dev", proc=tmp_path / "proc", etc=tmp_path / "etc")
    hw = probe_with_profile(tmp_path, path, roots)
    assert (hw.profile_name, hw.cpu.cores_logical, hw.hardware_class) == ("lab", 6, "lab-board")
    assert hw.memory.total_bytes == probe(tmp_path, roots).memory.total_bytes  # not in the file: probed


def test_empty_files_override_nothing(tmp_path: Path, probed: HardwareProfile) -> None:
    for name in ("empty.toml", "empty.yaml"):
        hw = apply_profile(probed, load_profile(write(tmp_path / name, "")), name="empty")
        assert list(hw.overridden) == [] and hw.cpu == probed.cpu


# --- errors ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "text, message",
    [
        ('[cpu]\narchh = "aarch64"\n', "unknown field 'cpu.archh' in profile {path}"),
        ("cores = 4\n", "unknown field 'cores' in profile {path}"),
        ('[[accelerators]]\nkindd = "gpu"\n', "unknown field 'accelerators[0].kindd' in profile {path}"),
        ('[cpu]\ncores_logical = "four"\n', "field 'cpu.cores_logical' in profile {path} must be a non-negative integer, got a string 'four'"),
        ("[cpu]\ncores_logical = true\n", "field 'cpu.cores_logical' in profile {path} must be a non-negative integer, got a boolean True"),
        ("[memory]\ntotal_bytes = -1\n", "field 'memory.total_bytes' in profile {path} must be a non-negative integer between 0 and"),
        ("[cpu]\nmax_freq_mhz = \"fast\"\n", "field 'cpu.max_freq_mhz' in profile {path} must be a number, got a string"),
        ('simulated = "yes"\n', "field 'simulated' in profile {path} must be true or false, got a string 'yes'"),
        ('cpu = "arm"\n', "field 'cpu' in profile {path} must be a table (mapping), got a string"),
        ('[cpu]\nfeatures = "neon"\n', "field 'cpu.features' in profile {path} must be a list, got a string"),
        ("[cpu]\nfeatures = [1]\n", "field 'cpu.features[0]' in profile {path} must be a string, got an integer 1 (quote it)"),
        ('accelerators = {kind = "gpu"}\n', "field 'accelerators' in profile {path} must be a list of tables, got a table"),
        ('accelerators = ["gpu"]\n', "field 'accelerators[0]' in profile {path} must be a table (mapping), got a string"),
        ("latency_factor = 0\n", "field 'latency_factor' in profile {path} must be above 0, got 0"),
        ('overridden = ["cpu.arch"]\n', "field 'overridden' in profile {path} is set by the agent"),
        ('profile_name = "x"\n', "field 'profile_name' in profile {path} is set by the agent"),
    ],
)
def test_bad_toml_profiles_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path / "x.toml", text)
    with pytest.raises(ProfileError) as err:
        load_profile(path)
    assert message.format(path=path) in str(err.value)


def test_yaml_type_errors_say_to_quote(tmp_path: Path) -> None:
    path = write(tmp_path / "x.yaml", "os:\n  kernel: 5.10\n")
    with pytest.raises(ProfileError, match=r"field 'os.kernel' in profile .*x.yaml must be a string, got a number 5.1 \(quote it\)"):
        load_profile(path)
    path = write(tmp_path / "y.yaml", "cpu:\n  model:\n")
    with pytest.raises(ProfileError, match=r"field 'cpu.model' in profile .*y.yaml has no value"):
        load_profile(path)


def test_apply_profile_errors_use_the_given_name(probed: HardwareProfile) -> None:
    with pytest.raises(ProfileError, match=r"^unknown field 'memory.free' in profile lab \(known here: total_bytes, available_bytes\)$"):
        apply_profile(probed, {"memory": {"free": 1}}, name="lab")


@pytest.mark.parametrize(
    "file_name, text, message",
    [
        ("bad.toml", "cpu = [\n", "is not valid TOML"),
        ("bad.yaml", "cpu: [\n", "is not valid YAML"),
        ("list.yaml", "- a\n- b\n", "must be a mapping of field names to values, got a list"),
        ("prof.json", "{}", "expected a .toml, .yaml or .yml file"),
    ],
)
def test_unreadable_files(tmp_path: Path, file_name: str, text: str, message: str) -> None:
    path = write(tmp_path / file_name, text)
    with pytest.raises(ProfileError, match=str(path).replace(".", r"\.")) as err:
        load_profile(path)
    assert message in str(err.value)


def test_missing_file_and_unknown_bundled_name(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="profile file not found: .*nope.toml"):
        load_profile(tmp_path / "nope.toml")
    with pytest.raises(ProfileError, match="no bundled profile 'raspberry-pi-5'; bundled: coral-dev-board, jetson-nano"):
        load_profile("raspberry-pi-5")


def test_profile_names() -> None:
    assert profile_name("jetson-nano") == "jetson-nano"
    assert profile_name("/etc/edgefleet/lab-board.toml") == "lab-board"
    assert profile_name(Path("boards/pi.yml")) == "pi"

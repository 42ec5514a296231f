"""CPU: architecture, cores, maximum clock, model name and the SIMD features kernels care about.

On Linux everything is read from /sys and /proc the way psutil reads it; psutil is imported lazily and
only without procfs (importing it costs the agent daemon ~0.5-1 MB resident).
"""
from __future__ import annotations

import logging
import os
import platform
from dataclasses import dataclass
from pathlib import Path

from edgefleet.v1.hardware_pb2 import CpuInfo

from agent.probe.sysfs import children, read_int, read_text

log = logging.getLogger(__name__)

# Features that change which LiteRT/XNNPACK kernels run: NEON/ASIMD on Arm (asimddp: int8 dot
# product), AVX2/FMA/AVX-512 on x86 (avx512_vnni: int8 dot product). Order here is report order.
FEATURES = ("neon", "asimd", "asimddp", "avx2", "fma", "avx512f", "avx512_vnni")


def probe_cpu(sys_root: Path, proc_root: Path) -> CpuInfo:
    info = CpuInfo(arch=platform.machine())
    info.cores_logical = logical_cores(proc_root)
    info.cores_physical = physical_cores(sys_root, proc_root)
    info.max_freq_mhz = max_freq_mhz(sys_root, proc_root)
    fields = parse_cpuinfo(read_text(proc_root / "cpuinfo") or "")
    info.model = fields.model or _devicetree_model(sys_root, proc_root)
    info.features.extend(f for f in FEATURES if f in fields.flags)
    return info


def logical_cores(proc_root: Path = Path("/proc")) -> int:
    """Online logical CPUs (os.cpu_count(), else `processor` lines, as psutil counts them); 0 when unknown."""
    count = os.cpu_count()
    if count:
        return count
    if not _has_procfs(proc_root):
        return _psutil_cpu_count(logical=True)
    cpuinfo = read_text(proc_root / "cpuinfo") or ""
    return sum(1 for line in cpuinfo.splitlines() if line.partition(":")[0].strip().lower() == "processor")


def _has_procfs(proc_root: Path) -> bool:
    # Linux (or a fake tree in tests): the readers here answer, even if only "unknown".
    try:
        return proc_root.is_dir()
    except OSError:
        return False


def physical_cores(sys_root: Path, proc_root: Path = Path("/proc")) -> int:
    """Distinct cores, as psutil counts them: unique topology/core_cpus_list (else thread_siblings_list)
    sets, else the sum of `cpu cores` over `physical id`s in /proc/cpuinfo; 0 when unknown."""
    cpus = children(sys_root / "devices/system/cpu", "cpu[0-9]*")
    for name in ("core_cpus_list", "thread_siblings_list"):
        sets = {t for cpu in cpus if (t := read_text(cpu / "topology" / name)) is not None}
        if sets:
            return len(sets)
    if not _has_procfs(proc_root):
        return _psutil_cpu_count(logical=False)
    cpuinfo = read_text(proc_root / "cpuinfo") or ""
    cores: dict[str, int] = {}
    for section in cpuinfo.split("\n\n"):
        fields = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in section.splitlines())}
        if fields.get("physical id") is not None and (fields.get("cpu cores") or "").isdigit():
            cores[fields["physical id"]] = int(fields["cpu cores"])
    return sum(cores.values())


def _psutil_cpu_count(*, logical: bool) -> int:
    try:
        import psutil  # only without procfs

        return int(psutil.cpu_count(logical=logical) or 0)
    except Exception:  # psutil raises odd errors inside some containers; a count of 0 means unknown
        log.debug("psutil.cpu_count(logical=%s) failed", logical, exc_info=True)
        return 0


def max_freq_mhz(sys_root: Path, proc_root: Path = Path("/proc")) -> float:
    """Highest cpuinfo_max_freq (kHz) over all CPUs (big.LITTLE cores differ), else the highest
    scaling_max_freq, else the mean `cpu MHz` of /proc/cpuinfo (VMs without cpufreq: the nominal clock,
    what psutil reports there), else psutil's figure where there is no procfs, else 0."""
    cpus = children(sys_root / "devices/system/cpu", "cpu[0-9]*")
    for name in ("cpuinfo_max_freq", "scaling_max_freq"):
        khz = [v for cpu in cpus if (v := read_int(cpu / "cpufreq" / name)) is not None and v > 0]
        if khz:
            return max(khz) / 1000.0
    if _has_procfs(proc_root):
        cpuinfo = read_text(proc_root / "cpuinfo") or ""
        mhz = []
        for line in cpuinfo.splitlines():
            key, _, value = line.partition(":")
            if key.strip().lower() == "cpu mhz":
                try:
                    mhz.append(float(value))
                except ValueError:
                    continue
        return sum(mhz) / len(mhz) if mhz else 0.0
    return _psutil_max_freq_mhz()


def _psutil_max_freq_mhz() -> float:
    try:
        import psutil  # only without procfs

        freq = psutil.cpu_freq()
    except Exception:
        log.debug("psutil.cpu_freq() failed", exc_info=True)
        return 0.0
    if freq is None:
        return 0.0
    # VMs without cpufreq report max 0: the current (nominal) clock is the best figure there.
    return float(freq.max or freq.current or 0.0)


@dataclass(frozen=True)
class CpuinfoFields:
    model: str
    flags: frozenset[str]


def parse_cpuinfo(text: str) -> CpuinfoFields:
    """Model from `model name` (x86), else `Model` (Raspberry Pi), else `Hardware`; flags from `flags`/`Features`."""
    values: dict[str, str] = {}
    flags: set[str] = set()
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key = key.strip().lower()
        value = value.strip()
        if key in ("flags", "features"):
            flags.update(value.lower().split())
        elif key in ("model name", "model", "hardware") and value and not value.isdigit():
            # x86 also has a numeric `model : 49` line: not a name.
            values.setdefault(key, value)
    model = values.get("model name") or values.get("model") or values.get("hardware") or ""
    return CpuinfoFields(model, frozenset(flags))


def _devicetree_model(sys_root: Path, proc_root: Path) -> str:
    # Arm boards without a model line in cpuinfo (Jetson, Coral) name themselves in the device tree.
    for path in (sys_root / "firmware/devicetree/base/model", proc_root / "device-tree/model"):
        text = read_text(path)
        if text:
            return text
    return ""

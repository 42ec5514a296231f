"""CPU: architecture, cores, maximum clock, model name and the SIMD features kernels care about."""
from __future__ import annotations

import logging
import platform
from dataclasses import dataclass
from pathlib import Path

import psutil

from edgefleet.v1.hardware_pb2 import CpuInfo

from agent.probe.sysfs import children, read_int, read_text

log = logging.getLogger(__name__)

# Features that change which LiteRT/XNNPACK kernels run: NEON/ASIMD on Arm (asimddp: int8 dot
# product), AVX2/FMA/AVX-512 on x86 (avx512_vnni: int8 dot product). Order here is report order.
FEATURES = ("neon", "asimd", "asimddp", "avx2", "fma", "avx512f", "avx512_vnni")


def probe_cpu(sys_root: Path, proc_root: Path) -> CpuInfo:
    info = CpuInfo(arch=platform.machine())
    info.cores_logical = _cpu_count(logical=True)
    info.cores_physical = _cpu_count(logical=False)
    info.max_freq_mhz = max_freq_mhz(sys_root)
    fields = parse_cpuinfo(read_text(proc_root / "cpuinfo") or "")
    info.model = fields.model or _devicetree_model(sys_root, proc_root)
    info.features.extend(f for f in FEATURES if f in fields.flags)
    return info


def _cpu_count(*, logical: bool) -> int:
    try:
        return int(psutil.cpu_count(logical=logical) or 0)
    except Exception:  # psutil raises odd errors inside some containers; a count of 0 means unknown
        log.debug("psutil.cpu_count(logical=%s) failed", logical, exc_info=True)
        return 0


def max_freq_mhz(sys_root: Path) -> float:
    """Highest cpuinfo_max_freq (kHz) over all CPUs (big.LITTLE cores differ), else psutil's figure, else 0."""
    khz = [
        v
        for cpu in children(sys_root / "devices/system/cpu", "cpu[0-9]*")
        if (v := read_int(cpu / "cpufreq/cpuinfo_max_freq")) is not None and v > 0
    ]
    if khz:
        return max(khz) / 1000.0
    try:
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

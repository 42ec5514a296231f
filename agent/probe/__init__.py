"""Probe this device's hardware into an edgefleet.v1 HardwareProfile.

    hw = probe(state_dir)                       # the real machine
    hw = probe(state_dir, ProbeRoots(sys=tmp / "sys", dev=tmp / "dev", proc=tmp / "proc", etc=tmp / "etc"))

One module per subject: cpu, memory, storage, system (OS), runtime, accelerators, power. Every
reader tolerates missing, unreadable or odd files and leaves that field empty; probe() itself never
raises because one subject failed (it logs and moves on). A pure probe has simulated=false,
latency_factor=1.0 and a hardware_class derived as described in agent.probe.hardware_class
(`x86_64-2c`, `aarch64-4c-edgetpu`, `aarch64-4c-gpu`). Profiles (agent.profile) override fields.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from edgefleet.v1.hardware_pb2 import HardwareProfile

from agent.probe.accelerators import probe_accelerators
from agent.probe.cpu import probe_cpu
from agent.probe.hardware_class import derive_hardware_class
from agent.probe.memory import probe_memory
from agent.probe.power import probe_power
from agent.probe.runtime import detect_runtime
from agent.probe.storage import probe_storage
from agent.probe.system import probe_os

__all__ = ["ProbeRoots", "probe", "derive_hardware_class", "detect_runtime"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProbeRoots:
    """Where the probe looks for sysfs, device nodes, procfs and /etc (a fake tree in tests)."""

    sys: Path = Path("/sys")
    dev: Path = Path("/dev")
    proc: Path = Path("/proc")
    etc: Path = Path("/etc")


def probe(state_dir: Path, roots: ProbeRoots = ProbeRoots()) -> HardwareProfile:
    hw = HardwareProfile(latency_factor=1.0, simulated=False)
    _section("cpu", lambda: hw.cpu.CopyFrom(probe_cpu(roots.sys, roots.proc)))
    _section("memory", lambda: hw.memory.CopyFrom(probe_memory()))
    _section("storage", lambda: hw.storage.CopyFrom(probe_storage(Path(state_dir))))
    _section("os", lambda: hw.os.CopyFrom(probe_os(roots.etc)))
    _section("runtime", lambda: hw.runtime.CopyFrom(detect_runtime()))
    _section("accelerators", lambda: hw.accelerators.extend(probe_accelerators(roots.sys, roots.dev, roots.proc)))
    _section("power_sources", lambda: hw.power_sources.extend(probe_power(roots.sys)))
    hw.hardware_class = derive_hardware_class(hw)
    return hw


def _section(name: str, fill: Callable[[], object]) -> None:
    # The readers already tolerate odd files; this guards against the unforeseen (a psutil or
    # platform error on an exotic system) so the device still reports everything else.
    try:
        fill()
    except Exception:
        log.warning("hardware probe: %s left empty after an unexpected error", name, exc_info=True)

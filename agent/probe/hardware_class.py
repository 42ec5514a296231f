"""The hardware class of a probed device: devices of one class share measured latencies.

Rule: `{arch}-{logical cores}c`, then `-edgetpu` when it has an Edge TPU, then `-gpu` when it has a
GPU, e.g. `x86_64-2c`, `aarch64-4c-edgetpu`, `aarch64-4c-gpu`. The arch is lower-cased with the
aliases amd64 → x86_64 and arm64 → aarch64 (so macOS/Windows hosts match Linux ones); an unknown arch
is `unknown`. A profile that sets hardware_class (every bundled one does) wins over this rule.
"""
from __future__ import annotations

from edgefleet.v1.hardware_pb2 import HardwareProfile

ARCH_ALIASES = {"amd64": "x86_64", "x64": "x86_64", "arm64": "aarch64"}
ACCELERATOR_SUFFIXES = ("edgetpu", "gpu")


def derive_hardware_class(hw: HardwareProfile) -> str:
    arch = hw.cpu.arch.strip().lower() or "unknown"
    arch = ARCH_ALIASES.get(arch, arch)
    parts = [arch, f"{hw.cpu.cores_logical}c"]
    kinds = {a.kind for a in hw.accelerators}
    parts.extend(kind for kind in ACCELERATOR_SUFFIXES if kind in kinds)
    return "-".join(parts)

"""Memory: total and available bytes (psutil)."""
from __future__ import annotations

import logging

import psutil

from edgefleet.v1.hardware_pb2 import MemoryInfo

log = logging.getLogger(__name__)


def probe_memory() -> MemoryInfo:
    try:
        vm = psutil.virtual_memory()
    except Exception:  # unreadable /proc/meminfo in a locked-down container: leave it empty
        log.warning("cannot read memory figures", exc_info=True)
        return MemoryInfo()
    return MemoryInfo(total_bytes=int(vm.total), available_bytes=int(vm.available))

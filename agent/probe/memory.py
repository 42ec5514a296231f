"""Memory: total and available bytes (/proc/meminfo on Linux, psutil elsewhere)."""
from __future__ import annotations

import logging
from pathlib import Path

from edgefleet.v1.hardware_pb2 import MemoryInfo

from agent.probe import meminfo

log = logging.getLogger(__name__)


def probe_memory(proc_root: Path = Path("/proc")) -> MemoryInfo:
    try:
        if (proc_root / "meminfo").exists():
            values = meminfo.read_meminfo(proc_root)
            return MemoryInfo(total_bytes=meminfo.memory_total_bytes(values),
                              available_bytes=meminfo.memory_available_bytes(values))
        import psutil  # only without procfs: importing it costs the agent daemon ~1 MB resident

        vm = psutil.virtual_memory()
    except Exception:  # unreadable /proc/meminfo in a locked-down container: leave it empty
        log.warning("cannot read memory figures", exc_info=True)
        return MemoryInfo()
    return MemoryInfo(total_bytes=int(vm.total), available_bytes=int(vm.available))

"""Storage: size and free space of the file system that holds the agent's state directory."""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

from edgefleet.v1.hardware_pb2 import StorageInfo

from agent.probe.sysfs import exists

log = logging.getLogger(__name__)


def probe_storage(state_dir: Path) -> StorageInfo:
    info = StorageInfo(path=str(state_dir))
    # Enrollment probes before the state directory exists: measure the file system it will live on.
    target = Path(state_dir).absolute()
    while not exists(target) and target != target.parent:
        target = target.parent
    try:
        usage = shutil.disk_usage(target)
    except OSError as exc:
        log.warning("cannot measure free storage at %s: %s", target, exc)
        return info
    info.total_bytes = usage.total
    info.free_bytes = usage.free
    return info

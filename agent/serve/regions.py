"""Shared-memory regions a client registered on its fast-socket connection (the pattern of Triton's system
shared memory, over a unix socket): tensors by region, offset and length instead of bytes in the frame.

A client creates a memfd, seals it against shrinking (F_SEAL_SHRINK) and sends it with a RegisterRegion
frame (SCM_RIGHTS). The agent maps the whole file, read-write (read-only when the client also sealed
writes), and keeps it until the client unregisters it or the connection ends. The seal is what makes
this safe for the agent: a mapping of a file that someone truncates turns the agent's next read of a
vanished page into SIGBUS, which would end the daemon; a sealed memfd cannot shrink, so every byte of
the mapping stays backed. A file without seals (a disk file, a memfd made without MFD_ALLOW_SEALING,
a pipe) is refused, as is a size above the limit and a region beyond the per-connection count.

A region belongs to one connection, used only by that connection's thread: no lock. Slices are checked
against the size mapped at registration, whatever the file grows to later.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import stat
from dataclasses import dataclass

from agent.runtime.errors import InvalidInput
from edgefleet.v1 import inference_pb2

DEFAULT_MAX_REGIONS = 8                 # per connection
DEFAULT_MAX_REGION_BYTES = 256 << 20    # per region: the address space it takes in the agent
OUTPUT_ALIGNMENT = 64                   # outputs written to a region start on a cache line

_F_GET_SEALS = getattr(fcntl, "F_GET_SEALS", 1034)
_F_SEAL_SHRINK = getattr(fcntl, "F_SEAL_SHRINK", 0x0002)


class RegionError(Exception):
    """A RegisterRegion / UnregisterRegion the agent refuses; the message names what was wrong."""


@dataclass
class _Region:
    name: str
    memory: mmap.mmap
    view: memoryview
    writable: bool


class Regions:
    def __init__(self, *, max_regions: int = DEFAULT_MAX_REGIONS, max_bytes: int = DEFAULT_MAX_REGION_BYTES) -> None:
        if max_regions < 1 or max_bytes < 1:
            raise ValueError(f"max_regions and max_bytes must be at least 1, got {max_regions} and {max_bytes}")
        self.max_regions = max_regions
        self.max_bytes = max_bytes
        self._regions: dict[int, _Region] = {}
        self._next_id = 1

    def __len__(self) -> int:
        return len(self._regions)

    def register(self, fd: int, name: str = "") -> tuple[int, int]:
        """Map the memfd `fd` (always closed here, mapped or not); returns (region id, bytes mapped)."""
        try:
            label = f"region {name!r}" if name else "the region"
            if len(self._regions) >= self.max_regions:
                raise RegionError(f"{label}: this connection already has {self.max_regions} regions, the limit; "
                                  "unregister one first")
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise RegionError(f"{label}: the descriptor is not a memfd (not a regular file)")
            try:
                seals = fcntl.fcntl(fd, _F_GET_SEALS)
            except OSError:
                raise RegionError(f"{label}: the descriptor is not a memfd that takes seals "
                                  "(create it with MFD_ALLOW_SEALING)") from None
            if not seals & _F_SEAL_SHRINK:
                raise RegionError(f"{label}: the memfd is not sealed against shrinking: add F_SEAL_SHRINK "
                                  "(a region that can shrink under the agent would crash it)")
            size = info.st_size
            if size <= 0:
                raise RegionError(f"{label}: the memfd is empty (size it with ftruncate before sealing)")
            if size > self.max_bytes:
                raise RegionError(f"{label}: {size} bytes is above the limit of {self.max_bytes} bytes per region")
            try:
                memory, writable = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE), True
            except PermissionError:  # sealed against writes: inputs only
                memory, writable = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ), False
            except OSError as exc:
                raise RegionError(f"{label}: cannot map it: {exc.strerror or exc}") from None
        finally:
            os.close(fd)  # the mapping keeps the file
        region_id = self._next_id
        self._next_id += 1
        self._regions[region_id] = _Region(name, memory, memoryview(memory), writable)
        return region_id, size

    def unregister(self, region_id: int) -> None:
        region = self._regions.pop(region_id, None)
        if region is None:
            raise RegionError(f"unknown region {region_id}; {self._known()}")
        _unmap(region)

    def close(self) -> None:
        """Unmap every region (the connection ended)."""
        for region in self._regions.values():
            _unmap(region)
        self._regions.clear()

    # -- slices ---------------------------------------------------------------------------------

    def read(self, where: inference_pb2.SharedSlice, what: str) -> memoryview:
        """The bytes `where` names, for `what` (\"input 'x'\"); raises InvalidInput."""
        return self._slice(where, what)[1]

    def write(self, where: inference_pb2.SharedSlice, what: str) -> memoryview:
        region, view = self._slice(where, what)
        if not region.writable:
            raise InvalidInput(f"{what}: region {where.region_id} is sealed against writes (F_SEAL_WRITE): "
                               "the agent cannot put outputs there")
        return view

    def _slice(self, where: inference_pb2.SharedSlice, what: str) -> tuple[_Region, memoryview]:
        region = self._regions.get(where.region_id)
        if region is None:
            raise InvalidInput(f"{what}: unknown shared-memory region {where.region_id} on this connection; {self._known()}")
        size = len(region.view)
        if where.offset > size or where.length > size - where.offset:
            raise InvalidInput(f"{what}: bytes {where.offset}..{where.offset + where.length} are outside region "
                               f"{where.region_id} ({size} bytes)")
        return region, region.view[where.offset:where.offset + where.length]

    def _known(self) -> str:
        if not self._regions:
            return "none is registered (register one with its memfd first)"
        return "registered: " + ", ".join(str(i) for i in self._regions)


def _unmap(region: _Region) -> None:
    try:
        region.view.release()
        region.memory.close()
    except BufferError:  # an array of a request still points into it: unmapped when that goes
        pass

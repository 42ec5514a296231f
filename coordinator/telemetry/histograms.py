"""Latency histograms on the coordinator side: merge bucket counts, read percentiles, name bucket layouts.

Percentiles follow the protocol's rule (edgefleet.histogram, shared with the agent), so a histogram of
one device gives back the figure that device reported, and a merged histogram gives the fleet's true
percentile to within one bucket.
"""
from __future__ import annotations

import hashlib
import struct
from typing import Sequence

from edgefleet.histogram import percentile  # noqa: F401 - re-exported for aggregate.py


def add_counts(into: list[int], counts: Sequence[int]) -> None:
    """Add `counts` bucket by bucket into `into` (same layout)."""
    for i, c in enumerate(counts):
        into[i] += c


def layout_digest(bounds: Sequence[float]) -> str:
    """A short stable name for a list of bucket bounds (16 hex digits of SHA-256 over the packed doubles)."""
    return key_digest(struct.pack(f"<{len(bounds)}d", *bounds))


def key_digest(key: bytes) -> str:
    """layout_digest() of the bounds whose bounds_key() is `key`."""
    return hashlib.sha256(key).hexdigest()[:16]


def bounds_key(histogram) -> bytes:
    """A LatencyHistogram's bounds as packed little-endian doubles, without touching them one by one.

    Iterating a repeated field of 121 doubles costs ~15 us in Python, more than everything else ingest
    does with a report; serializing the message is ~1 us in C. bounds_ms is field 1, a packed double
    list, and protobuf writes fields in number order, so the serialization starts with tag 0x0A, a
    varint length and exactly the bytes we want. b"" when the histogram has no bounds.
    """
    raw = histogram.SerializeToString()
    if not raw or raw[0] != 0x0A:
        return b""
    length = shift = 0
    i = 1
    while True:
        byte = raw[i]
        length |= (byte & 0x7F) << shift
        i += 1
        if byte < 0x80:
            break
        shift += 7
    return raw[i : i + length]


def key_bounds(key: bytes) -> tuple[float, ...]:
    return struct.unpack(f"<{len(key) // 8}d", key)

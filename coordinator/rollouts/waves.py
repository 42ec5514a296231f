"""Which wave each device is in: the canary first, then the rest split into equal waves.

The canary is `canary_count` devices, or `canary_percent` of them rounded up (at least one when the
percentage is above 0). It is chosen to cover as many (hardware class, variant) pairs as it can,
taking one device of each pair in turn, online devices first: a canary that tried only one kind of
board would say nothing about the others. The remaining devices, in name order, go into `waves`
waves of equal size (the first ones one larger when it does not divide). Waves are numbered from 0
(the canary, when there is one); a wave left empty is dropped, so numbers are consecutive.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence


@dataclass(frozen=True)
class WaveMember:
    device_id: str
    name: str
    hardware_class: str
    variant_id: str
    online: bool = False


def canary_size(n: int, *, canary_percent: float = 0.0, canary_count: int = 0) -> int:
    if n <= 0:
        return 0
    if canary_count:
        return min(canary_count, n)
    if canary_percent <= 0:
        return 0
    return min(n, max(1, math.ceil(n * canary_percent / 100 - 1e-9)))


def _canary(members: Sequence[WaveMember], k: int) -> list[WaveMember]:
    groups: dict[tuple[str, str], list[WaveMember]] = {}
    for m in members:
        groups.setdefault((m.hardware_class, m.variant_id), []).append(m)
    for g in groups.values():
        g.sort(key=lambda m: (not m.online, m.name, m.device_id))
    order = sorted(groups)
    picked: list[WaveMember] = []
    while len(picked) < k:
        for key in order:
            if groups[key] and len(picked) < k:
                picked.append(groups[key].pop(0))
    return picked


def assign_waves(members: Sequence[WaveMember], *, canary_percent: float = 0.0, canary_count: int = 0, waves: int = 1) -> list[list[WaveMember]]:
    """The devices of each wave, wave 0 first (the canary when there is one)."""
    if waves < 1:
        raise ValueError(f"waves must be >= 1, got {waves}")
    k = canary_size(len(members), canary_percent=canary_percent, canary_count=canary_count)
    canary = _canary(members, k)
    taken = {m.device_id for m in canary}
    rest = sorted((m for m in members if m.device_id not in taken), key=lambda m: (m.name, m.device_id))
    out = [canary] if canary else []
    size, extra = divmod(len(rest), waves)
    start = 0
    for i in range(waves):
        end = start + size + (1 if i < extra else 0)
        out.append(rest[start:end])
        start = end
    return [w for w in out if w]

"""Which devices benchmark candidates: a few of each hardware class, online ones first."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Iterable, Protocol, TypeVar

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class DeviceLike(Protocol):
    """DeviceRow has these; tests use anything with them."""

    id: str
    hardware_class: str
    state: str
    last_seen: datetime | None


D = TypeVar("D", bound=DeviceLike)


def choose_profile_devices(devices: Iterable[D], per_class: int = 2) -> list[D]:
    """Up to `per_class` devices of each hardware class: online first, then the most recently seen.

    Devices that never reported hardware (no class yet) cannot say what their measurements stand
    for and are left out. Classes come out in name order, devices within a class in preference order.
    """
    if per_class < 1:
        raise ValueError(f"per_class must be >= 1, got {per_class}")
    by_class: dict[str, list[D]] = {}
    for d in devices:
        if d.hardware_class:
            by_class.setdefault(d.hardware_class, []).append(d)

    def preference(d: D):
        seen = d.last_seen or _EPOCH
        if seen.tzinfo is None:  # SQLite hands back naive UTC datetimes
            seen = seen.replace(tzinfo=timezone.utc)
        return (d.state != "online", -seen.timestamp(), d.id)

    out: list[D] = []
    for cls in sorted(by_class):
        out += sorted(by_class[cls], key=preference)[:per_class]
    return out

"""Device names, labels and label selectors (k=v,k2=v2): one grammar for edgectl and the coordinator."""
from __future__ import annotations

import re

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_./-]{0,62}$")
_VALUE = re.compile(r"^[A-Za-z0-9_.:/@+-]{1,128}$")


class LabelError(ValueError):
    pass


def check_name(name: str) -> str:
    if not _NAME.match(name or ""):
        raise LabelError(f"invalid device name {name!r}: use 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit")
    return name


def check_label(key: str, value: str) -> None:
    if not _KEY.match(key or ""):
        raise LabelError(f"invalid label key {key!r}: use letters, digits, '.', '_', '/', '-' (at most 63)")
    if not _VALUE.match(value or ""):
        raise LabelError(f"invalid value {value!r} for label {key!r}: 1-128 of letters, digits, '.', '_', ':', '/', '@', '+', '-'")


def parse_pairs(pairs: list[str] | tuple[str, ...], *, what: str = "label") -> dict[str, str]:
    """['k=v', 'k2=v2'] -> {'k': 'v', 'k2': 'v2'}, rejecting anything else by name."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise LabelError(f"invalid {what} {pair!r}: expected key=value")
        key, value = key.strip(), value.strip()
        check_label(key, value)
        out[key] = value
    return out


def parse_selector(selector: str) -> dict[str, str]:
    """'role=camera,site=lab' -> {'role': 'camera', 'site': 'lab'}; '' selects everything."""
    selector = (selector or "").strip()
    if not selector:
        return {}
    return parse_pairs([p for p in selector.split(",")], what="selector term")


def matches(labels: dict[str, str], selector: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())

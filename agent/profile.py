"""Profiles: TOML/YAML files that override probed hardware fields.

A profile mirrors HardwareProfile (edgefleet/v1/hardware.proto): top-level keys are its fields,
tables are nested messages, arrays of tables replace repeated messages as a whole:

    hardware_class = "coral-dev-board"
    simulated = true
    latency_factor = 5.0
    [cpu]
    arch = "aarch64"
    [[accelerators]]
    kind = "edgetpu"
    bus = "pcie"
    id = "/dev/apex_0"

In TOML, top-level keys go before the first [table]: a key written after it belongs to that table.
Fields a profile does not set keep their probed values (storage, hostname, runtime...). Every
replaced field is recorded as a dotted path in `overridden`; `profile_name` and `overridden` are
the agent's to set, not the profile's. hardware_class is derived again after the overrides unless
the profile sets it. Unknown keys and wrong types raise ProfileError naming the key path.

This is how simulated devices are made: the bundled profiles (agent/profiles/*.toml) describe
boards with `simulated = true` and a latency_factor that scales this host's measured latency.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from edgefleet.v1.hardware_pb2 import HardwareProfile

from agent.probe import ProbeRoots, derive_hardware_class, probe

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

PROFILE_SUFFIXES = (".toml", ".yaml", ".yml")
# Set by apply_profile itself: a profile that sets them would lie about what it changed.
AGENT_FIELDS = ("profile_name", "overridden")


class ProfileError(ValueError):
    """A profile that cannot be found, parsed or applied; the message names the file and the key."""


def bundled_profiles() -> list[str]:
    """Names of the profiles shipped in agent/profiles, e.g. ["coral-dev-board", ...]."""
    return sorted(p.name[: -len(".toml")] for p in _bundled_dir().iterdir() if p.name.endswith(".toml"))


def load_profile(ref: str | Path) -> dict[str, Any]:
    """Read a bundled profile by name ("raspberry-pi-4") or a .toml/.yaml/.yml file, and check it.

    Raises ProfileError when the file is missing or malformed, or names an unknown field or a wrong type.
    """
    source, text, fmt = _read(ref)
    data = _parse(source, text, fmt)
    _apply_fields(HardwareProfile(), data, HardwareProfile.DESCRIPTOR, "", source, [])  # validate only
    return data


def profile_name(ref: str | Path) -> str:
    """The name recorded as profile_name: the bundled name, or the file name without its suffix."""
    return Path(ref).stem if _is_path(ref) else str(ref)


def apply_profile(hw: HardwareProfile, overrides: dict[str, Any], *, name: str) -> HardwareProfile:
    """A copy of `hw` with every field in `overrides` replaced, `overridden` and `profile_name` set."""
    out = HardwareProfile()
    out.CopyFrom(hw)
    paths: list[str] = []
    _apply_fields(out, overrides, HardwareProfile.DESCRIPTOR, "", name, paths)
    recorded = list(out.overridden)
    del out.overridden[:]
    out.overridden.extend(dict.fromkeys([*recorded, *paths]))  # keep order, drop repeats
    out.profile_name = name
    if "hardware_class" not in out.overridden:
        out.hardware_class = derive_hardware_class(out)  # the overrides may have changed arch, cores or accelerators
    return out


def probe_with_profile(state_dir: Path, profile_ref: str | Path | None, roots: ProbeRoots = ProbeRoots()) -> HardwareProfile:
    """probe(), then the profile's overrides when one is given."""
    hw = probe(state_dir, roots)
    if profile_ref is None:
        return hw
    return apply_profile(hw, load_profile(profile_ref), name=profile_name(profile_ref))


# --- reading -------------------------------------------------------------------------------------

def _bundled_dir() -> Traversable:
    import importlib.resources  # here: only a device given a profile pays for it (the idle daemon's RSS)

    return importlib.resources.files("agent").joinpath("profiles")


def _is_path(ref: str | Path) -> bool:
    if isinstance(ref, Path):
        return True
    return ref.endswith(PROFILE_SUFFIXES) or "/" in ref or "\\" in ref or Path(ref).suffix != ""


def _read(ref: str | Path) -> tuple[str, str, str]:
    """(label for messages, text, "toml" | "yaml")."""
    if not _is_path(ref):
        entry = _bundled_dir().joinpath(f"{ref}.toml")
        if not entry.is_file():
            raise ProfileError(
                f"no bundled profile {ref!r}; bundled: {', '.join(bundled_profiles())} "
                "(or give a path to a .toml, .yaml or .yml file)"
            )
        return str(ref), entry.read_text(encoding="utf-8"), "toml"
    path = Path(ref)
    suffix = path.suffix.lower()
    if suffix not in PROFILE_SUFFIXES:
        raise ProfileError(f"profile {path}: expected a .toml, .yaml or .yml file")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ProfileError(f"profile file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ProfileError(f"cannot read profile {path}: {exc}") from None
    return str(path), text, "toml" if suffix == ".toml" else "yaml"


def _parse(source: str, text: str, fmt: str) -> dict[str, Any]:
    if fmt == "toml":
        # Imported here: only a device given a profile pays for the parser (the idle daemon's RSS).
        if sys.version_info >= (3, 11):
            import tomllib
        else:  # pragma: no cover - Python 3.10
            import tomli as tomllib
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ProfileError(f"profile {source} is not valid TOML: {exc}") from None
    try:
        import yaml  # only YAML profiles pay for it
    except ImportError:
        raise ProfileError(f"profile {source}: reading YAML needs PyYAML (pip install pyyaml)") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ProfileError(f"profile {source} is not valid YAML: {exc}") from None
    if data is None:
        return {}  # an empty file: nothing to override, as an empty TOML file
    if not isinstance(data, dict):
        raise ProfileError(f"profile {source} must be a mapping of field names to values, got {_kind(data)}")
    return data


# --- applying ------------------------------------------------------------------------------------

_SCALARS: dict[int, str] = {
    FieldDescriptor.CPPTYPE_STRING: "a string",
    FieldDescriptor.CPPTYPE_BOOL: "true or false",
    FieldDescriptor.CPPTYPE_UINT32: "a non-negative integer",
    FieldDescriptor.CPPTYPE_UINT64: "a non-negative integer",
    FieldDescriptor.CPPTYPE_INT32: "an integer",
    FieldDescriptor.CPPTYPE_INT64: "an integer",
    FieldDescriptor.CPPTYPE_DOUBLE: "a number",
    FieldDescriptor.CPPTYPE_FLOAT: "a number",
}
_LIMITS = {
    FieldDescriptor.CPPTYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.CPPTYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.CPPTYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.CPPTYPE_INT64: (-(2**63), 2**63 - 1),
}


def _apply_fields(msg: Message, data: Any, desc: Descriptor, prefix: str, source: str, paths: list[str]) -> None:
    if not isinstance(data, dict):
        where = f"field '{prefix}'" if prefix else "the top level"
        raise ProfileError(f"{where} in profile {source} must be a table (mapping), got {_kind(data)}")
    for key, value in data.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        field = desc.fields_by_name.get(key) if isinstance(key, str) else None
        if field is None:
            known = ", ".join(f.name for f in desc.fields if not (desc is HardwareProfile.DESCRIPTOR and f.name in AGENT_FIELDS))
            raise ProfileError(f"unknown field '{path}' in profile {source} (known here: {known})")
        if desc is HardwareProfile.DESCRIPTOR and key in AGENT_FIELDS:
            raise ProfileError(f"field '{path}' in profile {source} is set by the agent, not by a profile: remove it")
        if value is None:
            raise ProfileError(f"field '{path}' in profile {source} has no value")
        if field.is_repeated:
            _apply_repeated(msg, field, value, path, source)
            paths.append(path)
        elif field.cpp_type == FieldDescriptor.CPPTYPE_MESSAGE:
            _apply_fields(getattr(msg, key), value, field.message_type, path, source, paths)
        else:
            setattr(msg, key, _scalar(field, value, path, source))
            paths.append(path)


def _apply_repeated(msg: Message, field: FieldDescriptor, value: Any, path: str, source: str) -> None:
    if not isinstance(value, list):
        what = "a list of tables" if field.cpp_type == FieldDescriptor.CPPTYPE_MESSAGE else "a list"
        raise ProfileError(f"field '{path}' in profile {source} must be {what}, got {_kind(value)}")
    target = getattr(msg, field.name)
    del target[:]  # a profile's list replaces the probed one
    for i, item in enumerate(value):
        item_path = f"{path}[{i}]"
        if field.cpp_type == FieldDescriptor.CPPTYPE_MESSAGE:
            _apply_fields(target.add(), item, field.message_type, item_path, source, [])
        else:
            if item is None:
                raise ProfileError(f"field '{item_path}' in profile {source} has no value")
            target.append(_scalar(field, item, item_path, source))


def _scalar(field: FieldDescriptor, value: Any, path: str, source: str) -> Any:
    cpp = field.cpp_type
    if cpp == FieldDescriptor.CPPTYPE_ENUM:
        names = [v.name for v in field.enum_type.values]
        if isinstance(value, str) and value in names:
            return field.enum_type.values_by_name[value].number
        raise ProfileError(f"field '{path}' in profile {source} must be one of {', '.join(names)}, got {_kind(value)} {value!r}")
    expected = _SCALARS.get(cpp)
    if expected is None:  # pragma: no cover - no such field in hardware.proto today
        raise ProfileError(f"field '{path}' in profile {source} cannot be set from a profile")
    ok = (
        isinstance(value, str) if cpp == FieldDescriptor.CPPTYPE_STRING
        else isinstance(value, bool) if cpp == FieldDescriptor.CPPTYPE_BOOL
        else isinstance(value, (int, float)) and not isinstance(value, bool) if expected == "a number"
        else isinstance(value, int) and not isinstance(value, bool)
    )
    if not ok:
        hint = " (quote it)" if cpp == FieldDescriptor.CPPTYPE_STRING and isinstance(value, (int, float)) else ""
        raise ProfileError(f"field '{path}' in profile {source} must be {expected}, got {_kind(value)} {value!r}{hint}")
    if cpp in _LIMITS:
        low, high = _LIMITS[cpp]
        if not low <= value <= high:
            raise ProfileError(f"field '{path}' in profile {source} must be {expected} between {low} and {high}, got {value}")
    if path == "latency_factor" and value <= 0:  # it divides and multiplies latencies
        raise ProfileError(f"field 'latency_factor' in profile {source} must be above 0, got {value}")
    if expected == "a number":
        return float(value)
    return value


def _kind(value: Any) -> str:
    return {
        bool: "a boolean", int: "an integer", float: "a number", str: "a string",
        list: "a list", dict: "a table", type(None): "nothing",
    }.get(type(value), type(value).__name__)

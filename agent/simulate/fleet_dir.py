"""The fleet directory: one enrolled agent state directory per simulated device.

    <fleet dir>/
      cam-1/identity.json     what `edge-agent enroll` (or enroll_fleet) saved
      cam-1/profile           one line: the bundled profile name (raspberry-pi-4) or a profile file path
      cam-1/outbox.db, models/, install/ ...   the device's own state, as `edge-agent run` keeps it
      sensor-7/...

A device directory is an ordinary agent state directory: `edge-agent run --state-dir <fleet dir>/cam-1
--profile raspberry-pi-4` runs that one device on its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from agent.identity import IDENTITY_FILE

PROFILE_FILE = "profile"


class FleetDirError(ValueError):
    """The fleet directory cannot be used; the message names the path and what is missing."""


@dataclass(frozen=True)
class DeviceSpec:
    state_dir: Path
    profile: str

    @property
    def name(self) -> str:
        return self.state_dir.name


def write_profile(state_dir: Path, profile: str) -> None:
    (Path(state_dir) / PROFILE_FILE).write_text(profile.strip() + "\n", encoding="utf-8")


def read_profile(state_dir: Path) -> str | None:
    try:
        text = (Path(state_dir) / PROFILE_FILE).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise FleetDirError(f"cannot read {Path(state_dir) / PROFILE_FILE}: {exc}") from None
    return text.splitlines()[0].strip() if text else None


def discover(fleet_dir: Path, profiles: Mapping[str, str] | None = None, default: str | None = None) -> list[DeviceSpec]:
    """Every subdirectory of `fleet_dir` with an identity.json, sorted by name.

    A device's profile: `profiles[name]` when given, else its `profile` file, else `default`.
    Raises FleetDirError when the directory is missing, holds no enrolled device, a device has no
    profile, or `profiles` names a device that is not there.
    """
    fleet_dir = Path(fleet_dir).expanduser()
    if not fleet_dir.is_dir():
        raise FleetDirError(f"fleet directory {fleet_dir} does not exist")
    profiles = dict(profiles or {})
    specs: list[DeviceSpec] = []
    missing: list[str] = []
    for entry in sorted(fleet_dir.iterdir()):
        if not (entry.is_dir() and (entry / IDENTITY_FILE).is_file()):
            continue
        profile = profiles.pop(entry.name, None) or read_profile(entry) or default
        if profile is None:
            missing.append(entry.name)
            continue
        specs.append(DeviceSpec(entry, profile))
    if profiles:
        raise FleetDirError(f"--profile names devices not enrolled under {fleet_dir}: {', '.join(sorted(profiles))}")
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise FleetDirError(f"no profile for {shown} under {fleet_dir}: write a '{PROFILE_FILE}' file in each device "
                            "directory, or pass --profile NAME=PROFILE (or --profile PROFILE for all)")
    if not specs:
        raise FleetDirError(f"no enrolled device under {fleet_dir} (each is a subdirectory holding {IDENTITY_FILE}): "
                            "enroll them with `edge-agent simulate --enroll-from FILE --coordinator HOST:PORT`")
    return specs

"""Operating system: name, kernel, distribution (os-release), hostname and Python version."""
from __future__ import annotations

import platform
import shlex
import socket
from pathlib import Path

from edgefleet.v1.hardware_pb2 import OsInfo

from agent.probe.sysfs import read_text


def probe_os(etc_root: Path) -> OsInfo:
    return OsInfo(
        system=platform.system(),
        kernel=platform.release(),
        distro=distro_name(etc_root),
        hostname=_hostname(),
        python=platform.python_version(),
    )


def distro_name(etc_root: Path) -> str:
    """PRETTY_NAME, else NAME VERSION, from {etc}/os-release or its fallback {etc}/../usr/lib/os-release."""
    for path in (etc_root / "os-release", etc_root.parent / "usr/lib/os-release"):
        text = read_text(path)
        if text is None:
            continue
        fields = parse_os_release(text)
        if fields.get("PRETTY_NAME"):
            return fields["PRETTY_NAME"]
        name = " ".join(v for v in (fields.get("NAME"), fields.get("VERSION")) if v)
        if name:
            return name
    return ""


def parse_os_release(text: str) -> dict[str, str]:
    """KEY=value lines; values may be quoted shell-style (os-release(5)). Bad lines are skipped."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, raw = line.partition("=")
        if not sep or not key.strip().isidentifier():
            continue
        try:
            words = shlex.split(raw, comments=False, posix=True)
        except ValueError:  # unbalanced quote: keep the raw text rather than nothing
            words = [raw.strip("\"'")]
        fields[key.strip()] = " ".join(words)
    return fields


def _hostname() -> str:
    try:
        return socket.gethostname()
    except OSError:
        return ""

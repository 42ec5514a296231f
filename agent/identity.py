"""The agent's state directory and the identity it got at enrollment (identity.json, mode 0600)."""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

IDENTITY_FILE = "identity.json"
DEFAULT_STATE_DIR = Path("/var/lib/edgefleet-agent")


class StateDirError(RuntimeError):
    """The state directory cannot be used; the message says which path and why."""


@dataclass
class MqttIdentity:
    url: str
    client_id: str
    username: str
    password: str
    protocol: str = "5"
    keepalive_s: int = 30
    session_expiry_s: int = 86400


@dataclass
class Identity:
    device_id: str
    device_name: str
    coordinator: str
    mqtt: MqttIdentity
    public_key_hex: str
    key_id: str
    enrolled_at: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def public_key(self) -> bytes:
        return bytes.fromhex(self.public_key_hex)


def prepare_state_dir(path: Path) -> Path:
    """Create the state directory (0700) and prove it is writable, or say exactly why not."""
    path = Path(path).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        probe = path / ".write-test"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        raise StateDirError(f"agent state directory {path} is not writable: {exc.strerror or exc}") from None
    return path


def save_identity(state_dir: Path, ident: Identity) -> Path:
    target = state_dir / IDENTITY_FILE
    tmp = state_dir / (IDENTITY_FILE + ".tmp")
    data = json.dumps(asdict(ident), indent=2).encode()
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(tmp, 0o600)
        os.replace(tmp, target)
    except OSError as exc:
        raise StateDirError(f"cannot write {target}: {exc.strerror or exc}") from None
    return target


def load_identity(state_dir: Path) -> Identity:
    path = Path(state_dir).expanduser() / IDENTITY_FILE
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise StateDirError(f"{path} not found: enroll this device first (edge-agent enroll --coordinator HOST:PORT --token T)") from None
    except (OSError, ValueError) as exc:
        raise StateDirError(f"cannot read {path}: {exc}") from None
    try:
        raw["mqtt"] = MqttIdentity(**raw["mqtt"])
        return Identity(**raw)
    except (KeyError, TypeError) as exc:
        raise StateDirError(f"{path} is not a valid identity file: {exc}") from None

"""Device credentials in a mosquitto password_file, for brokers without the dynamic security plugin.

The coordinator rewrites the file (atomically) and asks the broker to reload it: SIGHUP to the pid
in mosquitto's pid_file, or a command such as `systemctl reload mosquitto` or
`docker kill -s HUP mosquitto`. On reload mosquitto disconnects clients whose credentials are gone.
Topic rights come from a static acl_file with %u patterns (acl.acl_file_text, deploy/mosquitto/acl.example).

Limits: one coordinator process should own the file (a lock file serializes writers on one host);
a device can claim another device's client id and so kick it off (it still cannot read or write the
other device's topics) -- the dynsec route binds client ids.
"""
from __future__ import annotations

import base64
import fcntl
import hashlib
import logging
import os
import secrets
import shlex
import signal
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Callable

from coordinator.broker.auth import BrokerAuthError, check_device_id

log = logging.getLogger(__name__)

# mosquitto_passwd's format since 2.0: $7$ = PBKDF2-HMAC-SHA512, 12-byte salt, 64-byte hash, 101 rounds.
_SALT_BYTES = 12
DEFAULT_ITERATIONS = 101


def hash_password(password: str, *, salt: bytes | None = None, iterations: int = DEFAULT_ITERATIONS) -> str:
    """The password field of a `mosquitto_passwd -b` line: $7$iterations$salt$hash (base64)."""
    salt = secrets.token_bytes(_SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, 64)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def signal_reload(pid_file: str | Path) -> Callable[[], None]:
    """Reload by SIGHUP to the pid mosquitto wrote to its pid_file."""

    def reload() -> None:
        try:
            pid = int(Path(pid_file).read_text().strip())
            os.kill(pid, signal.SIGHUP)
        except (OSError, ValueError) as exc:
            raise BrokerAuthError(f"cannot signal mosquitto to reload (pid file {pid_file}): {exc}") from None

    return reload


def command_reload(command: str | list[str]) -> Callable[[], None]:
    """Reload by running a command, e.g. 'systemctl reload mosquitto'."""
    argv = shlex.split(command) if isinstance(command, str) else list(command)

    def reload() -> None:
        try:
            subprocess.run(argv, check=True, capture_output=True, text=True, timeout=30)
        except subprocess.CalledProcessError as exc:
            raise BrokerAuthError(f"broker reload command {argv} failed ({exc.returncode}): {exc.stderr.strip()}") from None
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise BrokerAuthError(f"broker reload command {argv} failed: {exc}") from None

    return reload


class PasswordFileBrokerAuth:
    """Per-device lines in a mosquitto password file, then a broker reload."""

    def __init__(self, password_file: str | Path, *, reload: Callable[[], None] | None = None, iterations: int = DEFAULT_ITERATIONS) -> None:
        self.path = Path(password_file)
        self._reload = reload
        self._iterations = iterations
        self._lock = threading.Lock()

    def provision(self, device_id: str, password: str) -> None:
        check_device_id(device_id)
        self._set(device_id, hash_password(password, iterations=self._iterations), replace=True)
        log.info("password file: provisioned device %s", device_id)

    def revoke(self, device_id: str) -> None:
        check_device_id(device_id)
        self._set(device_id, None, replace=True)
        log.info("password file: revoked device %s", device_id)

    def ensure_coordinator_account(self, username: str, password: str) -> None:
        """Add the coordinator's line if missing; an existing line keeps its password."""
        if not username or ":" in username or any(c in username for c in "+#/"):
            raise ValueError(f"invalid coordinator broker username: {username!r}")
        self._set(username, hash_password(password, iterations=self._iterations), replace=False)

    def describe(self) -> str:
        return f"password_file ({self.path}, reload {'configured' if self._reload else 'not configured: reload the broker yourself'})"

    def close(self) -> None:
        pass

    def _set(self, username: str, hashed: str | None, *, replace: bool) -> None:
        with self._lock, self._file_lock():
            try:
                lines = self.path.read_text().splitlines()
                mode = self.path.stat().st_mode & 0o777
            except FileNotFoundError:
                lines, mode = [], 0o640
            except OSError as exc:
                raise BrokerAuthError(f"cannot read the broker password file {self.path}: {exc}") from None
            prefix = username + ":"
            present = any(line.startswith(prefix) for line in lines)
            if present and not replace:
                return
            kept = [line for line in lines if not line.startswith(prefix)]
            if hashed is None and not present:
                return
            if hashed is not None:
                kept.append(prefix + hashed)
            self._write(kept, mode)
        if self._reload is not None:
            self._reload()

    def _write(self, lines: list[str], mode: int) -> None:
        # Write beside the file and rename: mosquitto may reload at any moment and must never
        # read half a file.
        try:
            fd, tmp = tempfile.mkstemp(prefix=".passwd-", dir=self.path.parent)
            try:
                with os.fdopen(fd, "w") as f:
                    f.write("\n".join(lines) + ("\n" if lines else ""))
                    f.flush()
                    os.fsync(f.fileno())
                os.chmod(tmp, mode)
                os.replace(tmp, self.path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise BrokerAuthError(f"cannot write the broker password file {self.path}: {exc}") from None

    def _file_lock(self):  # noqa: ANN202
        return _FileLock(self.path.with_name(self.path.name + ".lock"))


class _FileLock:
    """flock on a side file: serializes writers in other processes on this host."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def __enter__(self) -> "_FileLock":
        try:
            self._fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600)
        except OSError as exc:
            raise BrokerAuthError(f"cannot open the lock file {self.path}: {exc}") from None
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

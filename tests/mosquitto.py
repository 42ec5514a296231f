"""A private mosquitto for tests: its own port, config and data in a temporary directory.

    with MosquittoProcess("allow_anonymous true\\n", tmp_path) as broker:
        client.connect(broker.host, broker.port)

The config text may use two placeholders, replaced before the file is written:
``{port}`` (the listener port) and ``{dir}`` (the temporary directory, e.g.
``persistence_location {dir}/``). When the text has no ``listener``/``port`` line, ``listener
{port} 127.0.0.1`` is appended. When the tests run as root and the text has no ``user`` line,
``user root`` is appended: mosquitto otherwise drops to the ``mosquitto`` user and silently
fails to write persistence or plugin files in a root-owned temporary directory.

Never touches the system broker on 1883. The log (stdout and stderr of every start) is
``{dir}/mosquitto.log``; failures to start quote its tail.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import weakref
from pathlib import Path

HOST = "127.0.0.1"


def mosquitto_binary() -> str | None:
    return shutil.which("mosquitto") or next((p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if os.access(p, os.X_OK)), None)


def free_port(host: str = HOST) -> int:
    """A TCP port nothing listens on right now (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class MosquittoError(RuntimeError):
    pass


def _terminate(proc: subprocess.Popen) -> None:
    # Last resort when a test forgot to stop the broker: never leave a mosquitto behind.
    if proc.poll() is None:
        proc.kill()
        proc.wait(5)


class MosquittoProcess:
    host = HOST

    def __init__(self, conf_text: str, tmpdir: Path, port: int | None = None, *, binary: str | None = None) -> None:
        self.dir = Path(tmpdir)
        self.port = port or free_port()
        self.binary = binary or mosquitto_binary()
        if self.binary is None:
            raise MosquittoError("mosquitto is not installed (apt-get install mosquitto)")
        self.conf_path = self.dir / "mosquitto.conf"
        self.log_path = self.dir / "mosquitto.log"
        self.conf_text = self._render(conf_text)
        self._proc: subprocess.Popen | None = None
        self._log = None
        self._finalizer: weakref.finalize | None = None

    def _render(self, text: str) -> str:
        text = text.replace("{port}", str(self.port)).replace("{dir}", str(self.dir))
        if not re.search(r"^\s*(listener|port)\s", text, re.MULTILINE):
            text = text.rstrip("\n") + f"\nlistener {self.port} {HOST}\n"
        if os.geteuid() == 0 and not re.search(r"^\s*user\s", text, re.MULTILINE):
            text = text.rstrip("\n") + "\nuser root\n"
        return text

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 10) -> "MosquittoProcess":
        """Start and return once the port accepts connections; raise with the log tail if it does not."""
        if self.running:
            return self
        self.dir.mkdir(parents=True, exist_ok=True)
        self.conf_path.write_text(self.conf_text)
        self._log = open(self.log_path, "ab")
        self._proc = subprocess.Popen([self.binary, "-c", str(self.conf_path)], stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        if self._finalizer is not None:
            self._finalizer.detach()
        self._finalizer = weakref.finalize(self, _terminate, self._proc)
        deadline = time.monotonic() + timeout
        pause = threading.Event()  # never set: Event.wait is the poll interval
        while True:
            if self._proc.poll() is not None:
                code = self._proc.returncode
                self._close_log()
                raise MosquittoError(f"mosquitto exited with code {code} at start ({self.conf_path}):\n{self.log_tail()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise MosquittoError(f"mosquitto did not accept connections on {self.host}:{self.port} within {timeout} s:\n{self.log_tail()}")
            pause.wait(0.02)

    def stop(self, timeout: float = 10) -> None:
        """SIGTERM (mosquitto saves its persistence file), then SIGKILL if it takes too long."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)
        self._close_log()

    def kill(self) -> None:
        """SIGKILL: no persistence save, like a power cut."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(5)
        self._close_log()

    def restart(self, timeout: float = 10) -> "MosquittoProcess":
        """Stop and start again on the same port with the same config and persistence directory."""
        self.stop()
        return self.start(timeout)

    def reload(self) -> None:
        """SIGHUP: mosquitto re-reads its config, password and ACL files (asynchronously)."""
        if not self.running:
            raise MosquittoError("mosquitto is not running")
        self._proc.send_signal(signal.SIGHUP)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> "MosquittoProcess":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"MosquittoProcess({self.host}:{self.port}, pid={self.pid}, dir={self.dir})"

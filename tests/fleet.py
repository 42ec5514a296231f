"""Run the real console scripts as processes: a coordinator, agents, and edgectl calls.

Shared by the integration and end-to-end tiers. Every wait polls a condition with a deadline.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

BIN = Path(sys.executable).parent


def script(name: str) -> str:
    path = BIN / name
    if not path.exists():
        raise RuntimeError(f"{path} not found: install the project (pip install -e '.[agent,coordinator,dev]')")
    return str(path)


def wait_for(condition: Callable[[], object], timeout: float, what: str, interval: float = 0.2):
    """Poll `condition` until it returns something truthy; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    stop = threading.Event()
    while True:
        try:
            value = condition()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - keep polling, report the last error
            last_exc = exc
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}" + (f" (last error: {last_exc})" if last_exc else ""))
        stop.wait(interval)


class Process:
    """A child process whose output is collected in the background (so pipes never fill)."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path):
        self.args = args
        self.log_path = log_path
        self._log = open(log_path, "ab")
        self.lines: list[str] = []
        self._line_event = threading.Condition()
        self.proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for raw in self.proc.stdout:
            self._log.write(raw)
            self._log.flush()
            with self._line_event:
                self.lines.append(raw.decode(errors="replace").rstrip("\n"))
                self._line_event.notify_all()

    def wait_line(self, predicate: Callable[[str], bool], timeout: float) -> str:
        deadline = time.monotonic() + timeout
        seen = 0
        with self._line_event:
            while True:
                for line in self.lines[seen:]:
                    if predicate(line):
                        return line
                seen = len(self.lines)
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError(f"{self.args[0]} did not print the expected line; output:\n" + "\n".join(self.lines[-40:]))
                self._line_event.wait(min(left, 0.5))

    def output(self) -> str:
        return "\n".join(self.lines)

    def signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def stop(self, timeout: float = 10) -> int | None:
        if self.proc.poll() is None:
            self.signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.proc.wait(5)
        self._reader.join(timeout=5)
        self._log.close()
        return self.proc.returncode


def base_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEFLEET_")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


@dataclass
class CoordinatorProcess:
    data_dir: Path
    broker_url: str
    protocol: str = "5"
    store_url: str = ""
    device_keepalive_s: int = 2
    extra_env: dict[str, str] = field(default_factory=dict)
    process: Process | None = None
    grpc_address: str = ""
    token: str = ""

    def env(self) -> dict[str, str]:
        env = base_env(
            EDGEFLEET_DATA_DIR=str(self.data_dir),
            EDGEFLEET_SERVER__GRPC_ADDRESS="127.0.0.1:0",
            EDGEFLEET_SERVER__METRICS_ADDRESS="127.0.0.1:0",
            EDGEFLEET_MQTT__URL=self.broker_url,
            EDGEFLEET_MQTT__PROTOCOL=self.protocol,
            EDGEFLEET_MQTT__DEVICE_KEEPALIVE_S=str(self.device_keepalive_s),
            EDGEFLEET_MQTT__CLIENT_ID=f"coord-{self.data_dir.name}",
        )
        if self.store_url:
            env["EDGEFLEET_STORE__URL"] = self.store_url
        env.update(self.extra_env)
        return env

    def start(self, timeout: float = 30) -> "CoordinatorProcess":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.process = Process([script("edge-coordinator"), "run"], self.env(), self.data_dir / "coordinator.log")
        line = self.process.wait_line(lambda l: l.startswith("edge-coordinator ready"), timeout)
        fields = dict(part.split("=", 1) for part in line.split()[2:] if "=" in part)
        self.grpc_address = fields["grpc"]
        self.metrics_port = int(fields["metrics_port"])
        self.token = Path(fields["token_file"]).read_text().strip()
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def edgectl(self, *args: str, check: bool = True, token: str | None = None, timeout: float = 30) -> subprocess.CompletedProcess:
        env = base_env(EDGEFLEET_COORDINATOR=self.grpc_address, EDGEFLEET_TOKEN=self.token if token is None else token)
        res = subprocess.run([script("edgectl"), *args], env=env, capture_output=True, text=True, timeout=timeout)
        if check and res.returncode != 0:
            raise AssertionError(f"edgectl {' '.join(args)} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")
        return res

    def devices(self, *select: str) -> list[dict]:
        args = ["device", "list", "-o", "json"] + (["--select", select[0]] if select else [])
        return json.loads(self.edgectl(*args).stdout)

    def device(self, name: str) -> dict:
        return {d["name"]: d for d in self.devices()}[name]


@dataclass
class AgentProcess:
    name: str
    state_dir: Path
    profile: str | None = None
    protocol: str | None = None
    process: Process | None = None

    def enroll(self, coordinator: CoordinatorProcess, token: str) -> subprocess.CompletedProcess:
        args = [script("edge-agent"), "enroll", "--coordinator", coordinator.grpc_address, "--token", token, "--state-dir", str(self.state_dir)]
        if self.profile:
            args += ["--profile", self.profile]
        return subprocess.run(args, env=base_env(), capture_output=True, text=True, timeout=60)

    def start(self) -> "AgentProcess":
        args = [script("edge-agent"), "run", "--state-dir", str(self.state_dir), "--log-level", "debug"]
        if self.profile:
            args += ["--profile", self.profile]
        if self.protocol:
            args += ["--mqtt-protocol", self.protocol]
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.process = Process(args, base_env(), self.state_dir.parent / f"{self.name}.log")
        return self

    def kill(self) -> None:
        self.process.signal(signal.SIGKILL)
        self.process.proc.wait(10)

    def stop(self) -> int | None:
        return self.process.stop() if self.process else None


def register(coordinator: CoordinatorProcess, name: str, *labels: str) -> dict:
    args = ["device", "register", name, "-o", "json"]
    for label in labels:
        args += ["--label", label]
    return json.loads(coordinator.edgectl(*args).stdout)

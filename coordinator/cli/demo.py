"""`edgectl demo`: a local fleet on one machine with the defaults — a coordinator on SQLite, a local
MQTT broker, and simulated devices of every bundled hardware kind, each a real agent process.

Today it tells the foundation's story (enroll, report hardware, go online, stop cleanly). The model,
rollout and telemetry chapters join it as those subsystems land. Every process it starts is its
child and is stopped on exit, Ctrl-C or SIGTERM.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from coordinator.cli.errors import CliError

PROFILES = ("raspberry-pi-4", "raspberry-pi-zero-2-w", "coral-dev-board", "jetson-nano", "x86-gateway")
ROLES = {"coral-dev-board": "camera", "raspberry-pi-4": "camera", "raspberry-pi-zero-2-w": "sensor", "jetson-nano": "camera", "x86-gateway": "gateway"}


def _script(name: str) -> str:
    here = Path(sys.executable).parent / name
    found = str(here) if here.exists() else shutil.which(name)
    if not found:
        raise CliError(f"{name} not found next to {sys.executable} or on PATH: install edgefleet with the agent and coordinator extras")
    return found


def _listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Child:
    """A child process in its own session (Ctrl-C reaches only us; we stop children in order)."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log: Path):
        self.name = name
        self._log = open(log, "ab")
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self.proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        for raw in self.proc.stdout:
            self._log.write(raw)
            self._log.flush()
            with self._cond:
                self.lines.append(raw.decode(errors="replace").rstrip())
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_for_line(self, prefix: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.lines:
                    if line.startswith(prefix):
                        return line
                if self.proc.poll() is not None:
                    tail = "; ".join(self.lines[-3:])
                    raise CliError(f"{self.name} exited with code {self.proc.returncode}: {tail}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise CliError(f"{self.name} did not become ready within {timeout:.0f} s (log: {self._log.name})")
                self._cond.wait(min(left, 0.5))

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()


class DemoFleet:
    def __init__(self, workdir: Path, broker: str, devices: int, protocol: str):
        self.workdir = workdir
        self.broker = broker
        self.devices = devices
        self.protocol = protocol
        self.children: list[Child] = []
        self.agents: list[Child] = []
        self.grpc_address = ""
        self.token = ""
        self.token_file = ""
        self.broker_note = ""

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEFLEET_")}
        env["PYTHONUNBUFFERED"] = "1"
        env.update(extra)
        return env

    def start_broker(self) -> str:
        from edgefleet.session import parse_broker_url

        addr = parse_broker_url(self.broker)
        if _listening(addr.host, addr.port):
            self.broker_note = f"using the broker at {addr}"
            return str(addr)
        mosquitto = shutil.which("mosquitto") or next((p for p in ("/usr/sbin/mosquitto",) if os.access(p, os.X_OK)), None)
        if not mosquitto:
            raise CliError(
                f"no MQTT broker answers at {addr} and mosquitto is not installed: install it (apt-get install mosquitto) or pass --broker URL"
            )
        port = _free_port()
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n" + ("user root\n" if os.geteuid() == 0 else ""))
        child = Child("mosquitto", [mosquitto, "-c", str(conf)], self.env(), self.workdir / "mosquitto.log")
        self.children.append(child)
        deadline = time.monotonic() + 10
        while not _listening("127.0.0.1", port):
            if child.proc.poll() is not None or time.monotonic() > deadline:
                raise CliError(f"mosquitto did not start (log: {self.workdir / 'mosquitto.log'})")
            threading.Event().wait(0.1)
        self.broker_note = f"no broker answered at {addr}: started mosquitto on 127.0.0.1:{port}"
        return f"mqtt://127.0.0.1:{port}"

    def start_coordinator(self, broker_url: str) -> None:
        env = self.env(
            EDGEFLEET_DATA_DIR=str(self.workdir / "coordinator"),
            EDGEFLEET_SERVER__GRPC_ADDRESS="127.0.0.1:0",
            EDGEFLEET_SERVER__METRICS_ADDRESS="127.0.0.1:0",
            EDGEFLEET_MQTT__URL=broker_url,
            EDGEFLEET_MQTT__PROTOCOL=self.protocol,
            EDGEFLEET_MQTT__CLIENT_ID=f"edgefleet-demo-{os.getpid()}",
            EDGEFLEET_MQTT__DEVICE_KEEPALIVE_S="10",
        )
        child = Child("edge-coordinator", [_script("edge-coordinator"), "run"], env, self.workdir / "coordinator.log")
        self.children.append(child)
        line = child.wait_for_line("edge-coordinator ready", 60)
        fields = dict(part.split("=", 1) for part in line.split()[2:] if "=" in part)
        self.grpc_address = fields["grpc"]
        self.token_file = fields["token_file"]
        self.token = Path(self.token_file).read_text().strip()
        self.metrics_port = fields.get("metrics_port", "")

    def client(self):
        from coordinator.cli.connection import AdminClient
        from coordinator.cli.settings import ClientSettings

        return AdminClient(ClientSettings(self.grpc_address, self.token, "demo", 10.0, None))

    def enroll_and_run(self, index: int, client, on_step) -> None:
        from edgefleet.v1 import admin_pb2

        profile = PROFILES[index % len(PROFILES)]
        name = f"{profile}-{index // len(PROFILES) + 1}"
        reg = client.call("RegisterDevice", admin_pb2.RegisterDeviceRequest(name=name, labels={"kind": profile, "role": ROLES[profile], "demo": "true"}))
        state_dir = self.workdir / "agents" / name
        res = subprocess.run(
            [_script("edge-agent"), "enroll", "--coordinator", self.grpc_address, "--token", reg.enrollment_token, "--state-dir", str(state_dir), "--profile", profile],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        if res.returncode != 0:
            raise CliError(f"enrolling {name} failed: {res.stderr.strip()}")
        on_step(f"enrolled {name}")
        agent = Child(name, [_script("edge-agent"), "run", "--state-dir", str(state_dir), "--profile", profile], self.env(), self.workdir / "agents" / f"{name}.log")
        self.children.append(agent)
        self.agents.append(agent)

    def list_devices(self, client):
        from edgefleet.v1 import admin_pb2

        return list(client.call("ListDevices", admin_pb2.ListDevicesRequest()).devices)

    def stop(self) -> None:
        # Agents first (they publish `stopped`), then the coordinator, then the broker we started.
        for child in reversed(self.children):
            try:
                child.stop()
            except Exception:  # noqa: BLE001 - keep stopping the others
                pass
        self.children.clear()


def demo(
    devices: Annotated[int, typer.Option("--devices", "-n", min=1, max=200, help="Simulated devices (the bundled profiles in turn).")] = 5,
    broker: Annotated[str, typer.Option("--broker", help="Broker to use; when none answers there, a private mosquitto is started.")] = "mqtt://127.0.0.1:1883",
    protocol: Annotated[str, typer.Option("--mqtt-protocol", help="5 or 3.1.1")] = "5",
    keep: Annotated[bool, typer.Option("--keep", help="Keep the demo's directory (logs, store, agent state) after it ends.")] = False,
    once: Annotated[bool, typer.Option("--once", help="Print the fleet once it is online and exit (for scripts and CI).")] = False,
    timeout: Annotated[float, typer.Option("--ready-timeout", help="Seconds to wait for the fleet to come online.")] = 120.0,
    workdir: Annotated[Optional[Path], typer.Option("--dir", help="Directory for the demo's state (default: a new temporary one).")] = None,
) -> None:
    """Run a local fleet with the defaults: coordinator (SQLite), broker, simulated devices.

    Examples:
      $ edgectl demo                 # five devices, one of each bundled kind; Ctrl-C ends it
      $ edgectl demo --devices 20 --once
    """
    from rich.console import Console
    from rich.live import Live

    from coordinator.cli.device_views import device_table, print_device_table

    if protocol not in ("5", "3.1.1"):
        raise CliError(f"--mqtt-protocol must be 5 or 3.1.1, not {protocol!r}")
    out = Console(stderr=True, highlight=False)
    root = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="edgefleet-demo-"))
    root.mkdir(parents=True, exist_ok=True)
    fleet = DemoFleet(root, broker, devices, protocol)

    def on_term(signum, frame):  # noqa: ANN001
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        broker_url = fleet.start_broker()
        out.print(f"broker: {fleet.broker_note}")
        fleet.start_coordinator(broker_url)
        out.print(f"coordinator: {fleet.grpc_address} (SQLite in {root / 'coordinator'})")
        with fleet.client() as client:
            with out.status("enrolling devices…") as status:
                for i in range(devices):
                    fleet.enroll_and_run(i, client, lambda msg: status.update(f"{msg} ({i + 1}/{devices})"))
            deadline = time.monotonic() + timeout
            with out.status("waiting for the fleet to come online…"):
                while True:
                    listed = fleet.list_devices(client)
                    online = sum(1 for d in listed if d.state == 2)  # DEVICE_STATE_ONLINE
                    if online == devices:
                        break
                    dead = [a.name for a in fleet.agents if a.proc.poll() is not None]
                    if dead:
                        raise CliError(f"agents exited: {', '.join(dead)} (logs in {root / 'agents'})")
                    if time.monotonic() > deadline:
                        raise CliError(f"only {online} of {devices} devices came online within {timeout:.0f} s (logs in {root})")
                    threading.Event().wait(0.5)
            out.print(f"[bold green]{devices} devices online[/] — each a real agent process with a simulated hardware profile")
            if once:
                print_device_table(listed)
                return
            out.print(
                "Try, in another terminal:\n"
                f"  export EDGEFLEET_COORDINATOR={fleet.grpc_address} EDGEFLEET_TOKEN=$(cat {fleet.token_file})\n"
                "  edgectl device list --select role=camera\n"
                "Ctrl-C stops the fleet."
            )
            with Live(device_table(listed), console=Console(), refresh_per_second=1) as live:
                while True:
                    threading.Event().wait(2.0)
                    live.update(device_table(fleet.list_devices(client)))
    except KeyboardInterrupt:
        out.print("stopping the fleet…")
    finally:
        signal.signal(signal.SIGTERM, previous)
        fleet.stop()
        if keep:
            out.print(f"kept {root}")
        elif workdir is None:
            shutil.rmtree(root, ignore_errors=True)

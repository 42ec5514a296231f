"""`edgectl demo`: a local fleet on one machine with the defaults — a coordinator on SQLite, an MQTT
broker, and simulated devices of every bundled hardware kind, all in one `edge-agent simulate` process
(each a real agent with its own identity, MQTT session, installs, trials and LiteRT inference) — and the
story on it (README "The demo"): train, push, roll out with a canary, live telemetry, a bad version
refused and rolled back, a summary table and plot.

The broker, in this order: the one at --broker when it answers; else a private mosquitto when
`mosquitto` is on PATH; else the embedded amqtt broker (coordinator/embedded_broker.py), which speaks
MQTT 3.1.1 only and has no shared subscriptions: the coordinator and every device then run MQTT 3.1.1
with `mqtt.share_group = ""` (one coordinator).

The story drives the fleet through edgectl's own commands (`-o json`), as an operator would; TensorFlow
runs only in the training child process. Every process it starts is its child and is stopped on exit,
Ctrl-C or SIGTERM.
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


# The simulated apps: Predict at this rate per device, each golden-set answer followed by a Feedback with
# its label, so the trials and online accuracy judge every request (a short trial needs 20 of them).
REQUEST_RATE = 5.0
FEEDBACK = 1.0
TELEMETRY_INTERVAL_S = 2.0


def _toml_str(value: str) -> str:
    import json

    return json.dumps(value)  # a JSON string is a valid TOML basic string


class DemoFleet:
    def __init__(self, workdir: Path, broker: str, devices: int, protocol: str | None):
        self.workdir = workdir
        self.broker = broker
        self.devices = devices
        self.requested_protocol = protocol
        self.protocol = protocol or "5"
        self.share_group = "coordinators"
        self.children: list[Child] = []
        self.simulator: Child | None = None
        self.names: list[str] = []
        self.grpc_address = ""
        self.token = ""
        self.token_file = ""
        self.broker_kind = ""  # configured | mosquitto | embedded (in the JSON of the online step)
        self.broker_note = ""

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEFLEET_")}
        env["PYTHONUNBUFFERED"] = "1"
        env.update(extra)
        return env

    def start_broker(self) -> str:
        """The broker URL, in the order of the module docstring; broker_note says which and why."""
        from edgefleet.session import parse_broker_url

        try:
            addr = parse_broker_url(self.broker)
        except ValueError as exc:
            raise CliError(f"--broker: {exc}") from None
        if _listening(addr.host, addr.port):
            self.broker_kind = "configured"
            self.broker_note = f"using the broker that answers at {addr}"
            return str(addr)
        mosquitto = shutil.which("mosquitto")
        if mosquitto:
            url = self._start_mosquitto(mosquitto)
            self.broker_kind = "mosquitto"
            self.broker_note = f"no broker answered at {addr}: started mosquitto ({mosquitto}) on {url.split('://', 1)[1]}"
            return url
        url = self._start_embedded(addr)
        self.broker_kind = "embedded"
        hint = next((f" ({p} exists but is not on PATH)" for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if os.access(p, os.X_OK)), "")
        self.broker_note = (f"no broker answered at {addr} and mosquitto is not on PATH{hint}: started the embedded broker (amqtt) on "
                            f"{url.split('://', 1)[1]}; it speaks MQTT 3.1.1 only and has no shared subscriptions, so the coordinator "
                            "and every device run MQTT 3.1.1 with plain subscriptions (one coordinator)")
        return url

    def _start_mosquitto(self, mosquitto: str) -> str:
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
        return f"mqtt://127.0.0.1:{port}"

    def _start_embedded(self, addr) -> str:
        import importlib.util

        if importlib.util.find_spec("amqtt") is None:
            raise CliError(f"no MQTT broker answers at {addr}, mosquitto is not on PATH and amqtt is not installed: "
                           "install mosquitto (apt-get install mosquitto), or amqtt (pip install 'edgefleet[coordinator]'), or pass --broker URL")
        if self.requested_protocol == "5":
            raise CliError(f"no MQTT broker answers at {addr} and mosquitto is not on PATH; the embedded broker (amqtt) speaks MQTT 3.1.1 "
                           "only: drop --mqtt-protocol 5, install mosquitto, or pass --broker URL of an MQTT 5 broker")
        from coordinator.embedded_broker import READY  # after the check: it imports amqtt

        self.protocol, self.share_group = "3.1.1", ""
        child = Child("embedded broker", [sys.executable, "-m", "coordinator.embedded_broker", "--host", "127.0.0.1", "--port", "0"],
                      self.env(), self.workdir / "broker.log")
        self.children.append(child)
        return child.wait_for_line(READY, 30).split("url=", 1)[1].strip()

    def start_coordinator(self, broker_url: str) -> None:
        # A config file in the demo's directory (kept with --keep) rather than environment variables.
        conf = self.workdir / "coordinator.toml"
        conf.write_text("\n".join([
            f"data_dir = {_toml_str(str(self.workdir / 'coordinator'))}",
            "[server]", 'grpc_address = "127.0.0.1:0"', 'metrics_address = "127.0.0.1:0"',
            "[mqtt]", f"url = {_toml_str(broker_url)}", f"protocol = {_toml_str(self.protocol)}",
            f"client_id = {_toml_str(f'edgefleet-demo-{os.getpid()}')}", "device_keepalive_s = 10",
            f"share_group = {_toml_str(self.share_group)}",
            # A demo's rollouts should move in seconds, not at production pace.
            "[rollouts]", "tick_interval_s = 0.5", "resend_s = 5", "",
        ]))
        child = Child("edge-coordinator", [_script("edge-coordinator"), "run", "--config", str(conf)], self.env(), self.workdir / "coordinator.log")
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

    def register(self, client) -> Path:
        """Register every device (the bundled profiles in turn); their one-time tokens go to tickets.json (0600)."""
        import json

        from edgefleet.v1 import admin_pb2

        tickets = []
        for index in range(self.devices):
            profile = PROFILES[index % len(PROFILES)]
            name = f"{profile}-{index // len(PROFILES) + 1}"
            reg = client.call("RegisterDevice", admin_pb2.RegisterDeviceRequest(name=name, labels={"kind": profile, "role": ROLES[profile], "demo": "true"}))
            tickets.append({"name": name, "profile": profile, "token": reg.enrollment_token})
            self.names.append(name)
        path = self.workdir / "tickets.json"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(tickets, f)
        return path

    def start_devices(self, tickets: Path, timeout: float) -> str:
        """One `edge-agent simulate` for the whole fleet: it enrolls every device, then runs them all."""
        args = [_script("edge-agent"), "simulate", "--fleet-dir", str(self.workdir / "agents"), "--enroll-from", str(tickets),
                "--coordinator", self.grpc_address, "--rate", str(REQUEST_RATE), "--feedback", str(FEEDBACK),
                "--telemetry-interval", str(TELEMETRY_INTERVAL_S)]
        self.simulator = Child("edge-agent simulate", args, self.env(), self.workdir / "simulate.log")
        self.children.append(self.simulator)
        line = self.simulator.wait_for_line("edge-agent simulate connected", timeout)
        fields = dict(part.split("=", 1) for part in line.split() if "=" in part)
        if fields.get("devices") != fields.get("of"):
            raise CliError(f"only {fields.get('devices')} of {fields.get('of')} simulated devices connected to the broker (log: {self.workdir / 'simulate.log'})")
        return line

    def list_devices(self, client):
        from edgefleet.v1 import admin_pb2

        return list(client.call("ListDevices", admin_pb2.ListDevicesRequest()).devices)

    def stop(self) -> None:
        # Devices first (they publish `stopped`), then the coordinator, then the broker we started.
        for child in reversed(self.children):
            try:
                # Hundreds of simulated devices each say `stopped` before disconnecting: give them longer.
                child.stop(30.0 if child is self.simulator else 10.0)
            except Exception:  # noqa: BLE001 - keep stopping the others
                pass
        self.children.clear()


# ---------------------------------------------------------------- the story (--story / --once)

RECIPE = 'techniques = ["fp32", "int8"]\n'


class StepFailed(Exception):
    """A story step did not reach its expected state; the message names the step and what was seen."""

    def __init__(self, step: str, message: str):
        super().__init__(f"step {step!r} failed: {message}")
        self.step = step


class Story:
    """The demo's chapters after the fleet is online, each through edgectl's own commands (-o json)."""

    def __init__(self, fleet: "DemoFleet", out, as_json: bool, plot_path: Path):
        self.plot_path = plot_path
        self.fleet = fleet
        self.out = out
        self.as_json = as_json
        self.models = fleet.workdir / "models"
        self.models.mkdir(exist_ok=True)

    def emit(self, step: str, headline: str, **figures) -> None:
        import json

        self.out.print(f"[bold]▶ {step}[/]: {headline}")
        if self.as_json:
            sys.stdout.write(json.dumps({"step": step, "ok": True, **figures}, default=str) + "\n")
            sys.stdout.flush()

    def edgectl(self, step: str, *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
        self.step = step
        env = self.fleet.env(EDGEFLEET_COORDINATOR=self.fleet.grpc_address, EDGEFLEET_TOKEN=self.fleet.token)
        res = subprocess.run([_script("edgectl"), *args], env=env, capture_output=True, text=True, timeout=timeout)
        if check and res.returncode != 0:
            last = (res.stderr.strip().splitlines() or ["no output"])[-1]
            raise StepFailed(step, f"edgectl {' '.join(args[:2])} exited {res.returncode}: {last}")
        return res

    def json_of(self, step: str, *args: str, timeout: float = 120):
        import json

        return json.loads(self.edgectl(step, *args, "-o", "json", timeout=timeout).stdout)

    def watch(self, step: str, rid: str) -> dict:
        """`rollout status --watch` until the rollout ends; it exits non-zero for an aborted one, still printing it."""
        import json

        res = self.edgectl(step, "rollout", "status", rid, "--watch", "-o", "json", timeout=300, check=False)
        try:
            return json.loads(res.stdout)
        except ValueError:
            raise StepFailed(step, f"rollout status {rid}: {(res.stderr.strip().splitlines() or ['no output'])[-1]}") from None

    def devices(self, step: str) -> list[dict]:
        return self.json_of(step, "device", "list")

    # -- chapters

    def fleet_online(self) -> None:
        rows = self.devices("online")
        self.emit("online", f"{len(rows)} devices online", broker=self.fleet.broker_kind, mqtt_protocol=self.fleet.protocol, devices=[
            {"name": d["name"], "state": d.get("state"), "hardware_class": (d.get("hardware") or {}).get("hardware_class", ""),
             "accelerators": [a.get("kind", "") for a in (d.get("hardware") or {}).get("accelerators", [])]} for d in rows])

    def train(self) -> None:
        step = self.step = "train"
        env = self.fleet.env(TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2")
        started = time.monotonic()
        # TensorFlow trains in a child process: edgectl never imports it.
        res = subprocess.run([sys.executable, "-m", "coordinator.samples", str(self.models), "--bad"], env=env, capture_output=True, text=True, timeout=600)
        line = next((l for l in res.stdout.splitlines() if l.startswith("trained ")), None)
        if res.returncode != 0 or line is None:
            raise StepFailed(step, f"training exited {res.returncode}: {res.stderr.strip()[-300:]}")
        _, acc, bad, n_train, n_val = line.split()
        self.emit(step, f"a digits CNN (sklearn digits, {n_train} train / {n_val} val) in {time.monotonic() - started:.0f} s: "
                  f"accuracy {float(acc):.3f}; the shuffled-weights copy {float(bad):.3f}",
                  accuracy=float(acc), bad_accuracy=float(bad))

    def push(self, step: str, model: str) -> dict:
        recipe = self.models / "demo-recipe.toml"
        recipe.write_text(RECIPE)
        started = time.monotonic()
        got = self.json_of(step, "model", "push", str(self.models / model), "--name", "digits", "--data", str(self.models / "digits.npz"),
                           "--recipe", str(recipe), timeout=600)
        if got.get("state") != "ready":
            raise StepFailed(step, f"digits:{got.get('version')} ended {got.get('state')}")
        variants = [{"id": v.get("id"), "size_bytes": int(v.get("size_bytes", 0)), "metric": v.get("metric"),
                     "p50_ms": v.get("latency_p50_ms"), "p95_ms": v.get("latency_p95_ms"),
                     "edgetpu": (v.get("edgetpu") or {}).get("status", "")} for v in got.get("variants", [])]
        text = "; ".join(f"{v['id']} {human(v['size_bytes'])} acc {float(v['metric'] or 0):.3f} p50 {float(v['p50_ms'] or 0) * 1000:.1f} µs" for v in variants)
        self.emit(step, f"digits:{got['version']} optimized in {time.monotonic() - started:.0f} s: {text}", version=got["version"], variants=variants)
        return got

    def rollout(self, ref: str, floor: float) -> dict:
        step = "rollout"
        plan = self.json_of(step, "rollout", "plan", ref, "--min-accuracy", f"{floor:.2f}")
        # A short trial (5 s or 20 inferences) and a 3 s look at each wave's telemetry: demo pace, same rules.
        created = self.json_of(step, "rollout", "create", ref, "--canary", "1", "--waves", "1", "--observe", "3",
                               "--min-accuracy", f"{floor:.2f}", "--trial-seconds", "5", "--trial-inferences", "20")
        final = self.watch(step, created["id"])
        if final.get("state") != "done":
            raise StepFailed(step, f"rollout {created['id']} ended {final.get('state')}: {final.get('reason', '')}")
        progress = final.get("progress", [])
        per_device = [{"name": p["device_name"], "wave": int(p.get("wave", 0)), "variant": p.get("variant_id", ""), "state": p.get("state"),
                       "updated_at": p.get("updated_at", "")} for p in progress]
        kinds = {}
        for d in plan.get("devices", []):
            kinds[d["device_name"]] = (d.get("hardware_class", ""), d.get("variant_id", ""), d.get("reason", ""))
        for p in per_device:
            p["hardware_class"] = kinds.get(p["name"], ("", "", ""))[0]
        text = ", ".join(f"{p['name']} ({p['hardware_class']}) wave {p['wave'] + 1} → {p['variant']}" for p in per_device)
        final["_devices"] = per_device
        self.emit(step, f"{ref} canary first, then the rest: {text}", rollout=created["id"], state=final["state"], devices=per_device,
                  plan=[{"name": n, "hardware_class": k[0], "variant": k[1], "reason": k[2]} for n, k in kinds.items()])
        return final

    def bad_rollout(self, ref: str, floor: float) -> None:
        step = "bad_rollout"
        # 1. With an accuracy floor the coordinator's own selection refuses it: no device receives it.
        refused = self.edgectl(step, "rollout", "create", ref, "--min-accuracy", f"{floor:.2f}", check=False)
        reason = (refused.stderr.strip().splitlines() or [""])[-1]
        if refused.returncode == 0:
            raise StepFailed(step, f"the coordinator accepted {ref} with --min-accuracy {floor:.2f}")
        self.out.print(f"  with --min-accuracy {floor:.2f} the coordinator refuses it: {reason}")
        # 2. Without a selection floor it goes out to a canary whose trial has a floor on the accuracy the
        # apps report back (Feedback): the agent's own trial monitor sees it collapse and rolls back by
        # itself; a first wave with no commit aborts the rollout. Should the agent not act in time, the
        # demo aborts as an operator would, and says so.
        created = self.json_of(step, "rollout", "create", ref, "--canary", "1", "--waves", "1", "--trial-seconds", "120",
                               "--min-online-accuracy", f"{floor:.2f}")
        rid = created["id"]
        acted = "agent"
        deadline = time.monotonic() + 90
        while True:
            st = self.json_of(step, "rollout", "status", rid)
            if st.get("state") not in ("pending", "running"):
                break
            if time.monotonic() > deadline:
                acted = "operator"
                self.edgectl(step, "rollout", "abort", rid, "--reason", f"accuracy below {floor:.2f} (shuffled weights)")
                break
            threading.Event().wait(0.5)
        final = self.watch(step, rid)
        if final.get("state") != "aborted":
            raise StepFailed(step, f"rollout {rid} ended {final.get('state')}, not aborted")
        bad_version = ref.split(":")[1]
        history = {}
        for d in self.devices(step):
            show = self.json_of(step, "device", "show", d["name"])
            last = (show.get("model_history") or [{}])[-1]
            history[d["name"]] = {"state": last.get("state"), "version": (last.get("model") or {}).get("version"), "rollout": last.get("rollout_id"),
                                  "reason": last.get("reason", "")}
        on_bad = [n for n, h in history.items() if h["version"] == bad_version and h["state"] in ("trial", "committed", "active")]
        if on_bad:
            raise StepFailed(step, f"{', '.join(on_bad)} still run {ref}")
        counts = final.get("counts", {})
        why = next((h.get("reason", "") for h in history.values() if h.get("version") == bad_version and h.get("state") == "rolled_back"), "")
        how = (f"the canary's agent rolled it back by itself during its trial" + (f" ({why})" if why else "") if acted == "agent"
               else "the agent did not act within 90 s: the demo aborted the rollout as an operator")
        self.emit(step, f"{ref} refused by the coordinator with a selection floor; rolled out with only a trial floor on online accuracy: "
                  f"{how}; rollout aborted ({', '.join(f'{v} {k}' for k, v in counts.items())}); every device on its previous version",
                  rollout=rid, state=final["state"], counts=counts, refused=reason, last_history=history, bad_version=bad_version,
                  acted_by=acted)

    def telemetry(self, ref: str, seconds: float = 60) -> list[dict]:
        step = "telemetry"
        names = set(self.fleet.names)
        deadline = time.monotonic() + seconds
        while True:
            rows = [r for r in self.json_of(step, "telemetry", "--model", ref, "--since", "5m") if r.get("requests")]
            if {r["device_name"] for r in rows} >= names:
                break
            if time.monotonic() > deadline:
                seen = sorted({r["device_name"] for r in rows})
                raise StepFailed(step, f"telemetry of {ref} arrived from {seen or 'no device'} of {sorted(names)} within {seconds:.0f} s "
                                       f"(log: {self.fleet.workdir / 'simulate.log'})")
            threading.Event().wait(1.0)
        text = "; ".join(f"{r['device_name']} {r['requests']} req p95 {_fmt(r.get('p95_ms'), 'ms')} online acc {_fmt(r.get('online_accuracy'))}" for r in rows)
        self.emit(step, f"live from the agents: {text}", rows=rows)
        return rows

    def summary(self, ref: str, rollout: dict, rows: list[dict]) -> None:
        step = "summary"
        rows = [r for r in self.json_of(step, "telemetry", "--model", ref, "--since", "10m") if r.get("requests")] or rows
        kind_of = {d["name"]: d["hardware_class"] for d in self._rollout_devices(rollout)}
        table = []
        for r in rows:
            table.append({
                "hardware_class": kind_of.get(r["device_name"], "?"), "device": r["device_name"], "variant": r.get("variant_id"),
                "p95_ms": r.get("p95_ms"), "energy_per_inference_mj": r.get("energy_per_inference_mj"), "power_source": r.get("power_source"),
                "accuracy": r.get("online_accuracy") if r.get("online_accuracy") is not None else r.get("golden_accuracy"),
                "accuracy_source": "online" if r.get("online_accuracy") is not None else "golden", "requests": r.get("requests"),
            })
        table.sort(key=lambda t: t["hardware_class"])
        from coordinator.cli.output import new_table, print_table

        t = new_table("hardware", "device", "variant", "p95", "energy/inference", "accuracy")
        for row in table:
            energy = f"{row['energy_per_inference_mj']:.3f} mJ ({row['power_source']})" if row["energy_per_inference_mj"] is not None else f"- ({row['power_source'] or 'none'})"
            t.add_row(row["hardware_class"], row["device"], row["variant"] or "-", _fmt(row["p95_ms"], "ms"), energy,
                      f"{_fmt(row['accuracy'])} ({row['accuracy_source']})")
        from rich.console import Console

        Console(stderr=True, width=150).print(t)
        plot = self.plot(table)
        self.emit(step, f"per hardware kind ({len(table)} devices); plot: {plot or 'skipped'}", rows=table, plot=str(plot) if plot else None)

    def plot(self, table: list[dict]) -> Path | None:
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            self.out.print("  matplotlib is not installed: no plot (pip install matplotlib)")
            return None
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
        labels = [f"{r['device']}\n{r['variant']}" for r in table]
        axes[0].bar(labels, [r["p95_ms"] or 0 for r in table], color="#4878a8")
        axes[0].set_ylabel("p95 latency (ms, simulated where the profile is)")
        axes[1].bar(labels, [r["energy_per_inference_mj"] or 0 for r in table], color="#a86848")
        axes[1].set_ylabel("energy per inference (mJ, modelled)")
        for ax in axes:
            ax.tick_params(axis="x", labelsize=7)
        fig.suptitle("edgectl demo: digits on each hardware kind")
        fig.tight_layout()
        self.plot_path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(self.plot_path, dpi=100)
        plt.close(fig)
        return self.plot_path

    @staticmethod
    def _rollout_devices(rollout: dict) -> list[dict]:
        return rollout.get("_devices", [])

    def telemetry_table(self):
        from coordinator.cli.output import new_table

        t = new_table("device", "model", "variant", "requests", "inf/s", "p95", "energy/inference", "online accuracy")
        for r in self.json_of("live", "telemetry", "--since", "1m"):
            if not r.get("requests"):
                continue
            t.add_row(r["device_name"], f"{r.get('model') or '-'}:{r.get('version') or '-'}", r.get("variant_id") or "-", str(r.get("requests", 0)),
                      _fmt(r.get("inferences_per_s")), _fmt(r.get("p95_ms"), "ms"), _fmt(r.get("energy_per_inference_mj"), "mJ"), _fmt(r.get("online_accuracy")))
        return t

    def run(self) -> None:
        """Every chapter in order; any unexpected error becomes the failure of the step it happened in."""
        self.step = "online"
        try:
            self._chapters()
        except StepFailed:
            raise
        except (subprocess.SubprocessError, OSError, ValueError, KeyError, TypeError) as exc:
            raise StepFailed(self.step, f"{type(exc).__name__}: {exc}") from exc

    def _chapters(self) -> None:
        self.fleet_online()
        self.train()
        good = self.push("push", "digits.keras")
        good_ref = f"digits:{good['version']}"
        # The simulated apps call each device from the moment it serves a model (golden-set inputs, a
        # Feedback with every label): each wave's observation window and the trials judge that traffic.
        # The accuracy floor: 0.9, or just under the good model's worst variant if that is lower.
        floor = min(0.9, min(float(v.get("metric") or 0) for v in good.get("variants", [])) - 0.02)
        final = self.rollout(good_ref, floor)
        rows = self.telemetry(good_ref)
        bad = self.push("push_bad", "digits-bad.keras")
        self.bad_rollout(f"digits:{bad['version']}", floor)
        self.summary(good_ref, final, rows)


def _fmt(value, unit: str = "") -> str:
    if value is None:
        return "-"
    return f"{value:.3g}{(' ' + unit) if unit else ''}"


def human(n: int) -> str:
    for unit in ("B", "KB", "MB"):
        if n < 1024:
            return f"{n:.0f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def demo(
    devices: Annotated[int, typer.Option("--devices", "-n", min=1, max=200, help="Simulated devices (the bundled profiles in turn).")] = 5,
    broker: Annotated[str, typer.Option("--broker", help="Broker to use; when none answers there: a private mosquitto if it is on PATH, else the embedded amqtt broker (MQTT 3.1.1).")] = "mqtt://127.0.0.1:1883",
    protocol: Annotated[Optional[str], typer.Option("--mqtt-protocol", help="5 or 3.1.1 (default: 5; 3.1.1 on the embedded broker)")] = None,
    keep: Annotated[bool, typer.Option("--keep", help="Keep the demo's directory (logs, store, agent state) after it ends.")] = False,
    once: Annotated[bool, typer.Option("--once", help="Run the story and exit: 0 when every step passed (for scripts and CI).")] = False,
    fleet_only: Annotated[bool, typer.Option("--fleet-only", help="Only bring the fleet online (no model, no rollouts).")] = False,
    plot: Annotated[Path, typer.Option("--plot", help="Where the summary plot (PNG) is written.")] = Path("edgefleet-demo.png"),
    as_json: Annotated[bool, typer.Option("--json", help="One JSON line per story step on stdout (headlines stay on stderr).")] = False,
    timeout: Annotated[float, typer.Option("--ready-timeout", help="Seconds to wait for the fleet to come online.")] = 120.0,
    workdir: Annotated[Optional[Path], typer.Option("--dir", help="Directory for the demo's state (default: a new temporary one).")] = None,
) -> None:
    """Run a local fleet and the whole story on it: enroll, train, push, canary rollout, telemetry, a bad version rolled back.

    Examples:
      $ edgectl demo                          # five devices, one of each kind; ends on live telemetry, Ctrl-C stops it
      $ edgectl demo --devices 3 --once --json  # the story once, one JSON line per step; exit 1 names a failed step
      $ edgectl demo --devices 20 --once --fleet-only
    """
    from rich.console import Console
    from rich.live import Live

    from coordinator.cli.device_views import device_table, print_device_table

    if protocol not in (None, "5", "3.1.1"):
        raise CliError(f"--mqtt-protocol must be 5 or 3.1.1, not {protocol!r}")
    out = Console(stderr=True, highlight=False)
    root = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="edgefleet-demo-"))
    root.mkdir(parents=True, exist_ok=True)
    fleet = DemoFleet(root, broker, devices, protocol)

    def on_term(signum, frame):  # noqa: ANN001
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    failed: Optional[Exception] = None
    story: Optional[Story] = None
    try:
        broker_url = fleet.start_broker()
        out.print(f"broker: {fleet.broker_note}")
        fleet.start_coordinator(broker_url)
        out.print(f"coordinator: {fleet.grpc_address} (SQLite in {root / 'coordinator'})")
        with fleet.client() as client:
            deadline = time.monotonic() + timeout
            tickets = fleet.register(client)
            with out.status(f"enrolling {devices} devices and starting them in one `edge-agent simulate`…"):
                fleet.start_devices(tickets, timeout)
            with out.status("waiting for the fleet to come online…"):
                while True:
                    listed = fleet.list_devices(client)
                    online = sum(1 for d in listed if d.state == 2)  # DEVICE_STATE_ONLINE
                    if online == devices:
                        break
                    if fleet.simulator.proc.poll() is not None:
                        raise CliError(f"edge-agent simulate exited with code {fleet.simulator.proc.returncode} (log: {root / 'simulate.log'})")
                    if time.monotonic() > deadline:
                        raise CliError(f"only {online} of {devices} devices came online within {timeout:.0f} s (logs in {root})")
                    threading.Event().wait(0.5)
            out.print(f"[bold green]{devices} devices online[/] over MQTT {fleet.protocol} — simulated hardware profiles, all in one "
                      "`edge-agent simulate` process, each device a real agent with its own identity and MQTT session")
            if not as_json:
                print_device_table(listed)
            if not fleet_only:
                story = Story(fleet, out, as_json, plot)
                try:
                    story.run()
                except StepFailed as exc:
                    out.print(f"[bold red]{exc}[/] (logs in {root})")
                    if as_json:
                        import json

                        sys.stdout.write(json.dumps({"step": exc.step, "ok": False, "error": str(exc)}) + "\n")
                    failed = exc
            if once:
                if failed is not None:
                    raise typer.Exit(1)
                return
            out.print(
                "Try, in another terminal:\n"
                f"  export EDGEFLEET_COORDINATOR={fleet.grpc_address} EDGEFLEET_TOKEN=$(cat {fleet.token_file})\n"
                "  edgectl device list --select role=camera\n"
                "Ctrl-C stops the fleet."
            )
            if story is not None and failed is None:
                out.print("live telemetry from the fleet (the simulated apps keep calling the devices):")
                view = story.telemetry_table
            else:
                view = lambda: device_table(fleet.list_devices(client))  # noqa: E731
            with Live(view(), console=Console(), refresh_per_second=1) as live:
                while True:
                    threading.Event().wait(2.0)
                    live.update(view())
    except KeyboardInterrupt:
        out.print("stopping the fleet…")
    finally:
        signal.signal(signal.SIGTERM, previous)
        fleet.stop()
        if keep:
            out.print(f"kept {root}")
        elif workdir is None:
            shutil.rmtree(root, ignore_errors=True)
    if failed is not None:
        raise typer.Exit(1)

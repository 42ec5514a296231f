"""200 simulated devices on one machine: enrollment, coming online, telemetry ingest, a rollout, and what a
simulated device costs.

    python bench/fleet.py                                  # 200 devices; simulator sizes 50, 100, 200
    python bench/fleet.py --devices 60 --sizes 20,40,60 --window 15
    python bench/fleet.py --no-rollout                     # no model: enroll, online, ingest, scaling only

Set-up: a private mosquitto, a real coordinator (`edge-coordinator run`, SQLite), N devices registered
through the admin API (RegisterDevice, from this process) and enrolled with agent.simulate.enroll_fleet
(the Enrollment gRPC call per device, 8 at a time), the five bundled profiles in turn; `edge-agent
simulate` runs them, all in one process.

Figures (each printed as measured):
  enroll     RegisterDevice for all, then enroll_fleet for all
  online     `edge-agent simulate` started -> the coordinator lists every device online with its hardware
  ingest     coordinator CPU % and RSS while N devices (no model yet) send telemetry for --window seconds
  rollout    a tiny tf-keras digits CNN (trained once in a child process, cached) pushed with fp32 and int8
             variants, rolled out to all: canary 10 % then one wave, --trial-seconds trial on each device;
             seconds from CreateRollout until every device committed
  serving    the same window with the model active and --rate requests/s per device
  scaling    the simulator at each of --sizes devices (model loaded, requests flowing): threads, RSS, CPU
  baselines  measured in the same run: `edge-agent enroll` as one process per device (5 devices), and one
             `edge-agent run` process serving the same model for one device (time to online, RSS, threads).
             Ratios: enroll_fleet per device against a process per device; all devices online against one
             agent coming online; a simulated device's RSS (the slope between sizes) against that process's
             RSS; threads per simulated device against the agent process's threads.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

PROFILES = ("raspberry-pi-4", "raspberry-pi-zero-2-w", "coral-dev-board", "jetson-nano", "x86-gateway")
BUILD_VERSION = "1"
BROKER_CONF = """listener {port} 127.0.0.1
allow_anonymous true
persistence false
max_queued_messages 10000
max_inflight_messages 100
set_tcp_nodelay true
"""

def say(text: str) -> None:
    print(text, flush=True)


def digits_model(cache: Path) -> tuple[Path, Path]:
    if not ((cache / "BUILD").is_file() and (cache / "BUILD").read_text() == BUILD_VERSION):
        cache.mkdir(parents=True, exist_ok=True)
        say(f"training the digits CNN in {cache} (TensorFlow in a child process, once)...")
        env = os.environ | {"TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
        subprocess.run([sys.executable, "-m", "coordinator.samples", str(cache)], env=env, check=True)
        (cache / "BUILD").write_text(BUILD_VERSION)
    return cache / "digits.keras", cache / "digits.npz"


class Usage:
    """CPU % (of one core) and RSS of a process over a window, from psutil (sampled every second)."""

    def __init__(self, pid: int):
        import psutil

        self.proc = psutil.Process(pid)

    def measure(self, seconds: float) -> dict[str, float]:
        times0, wall0 = self.proc.cpu_times(), time.monotonic()
        peak = 0
        deadline = wall0 + seconds
        while time.monotonic() < deadline:
            peak = max(peak, self.proc.memory_info().rss)
            time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
        times1, wall1 = self.proc.cpu_times(), time.monotonic()
        cpu = (times1.user + times1.system - times0.user - times0.system) / (wall1 - wall0) * 100
        rss = self.proc.memory_info().rss
        return {"cpu": cpu, "rss": rss, "peak": max(peak, rss), "threads": self.proc.num_threads()}


def mib(n: float) -> str:
    return f"{n / 2**20:.1f} MiB"


class Bench:
    def __init__(self, args: argparse.Namespace, work: Path):
        from tests.fleet import CoordinatorProcess
        from tests.mosquitto import MosquittoProcess

        self.args = args
        self.work = work
        self.broker = MosquittoProcess(BROKER_CONF, work / "broker").start()
        self.url = f"mqtt://{self.broker.host}:{self.broker.port}"
        self.coordinator = CoordinatorProcess(work / "coordinator", self.url, device_keepalive_s=30, extra_env={
            "EDGEFLEET_LOG_LEVEL": "warning",
            "EDGEFLEET_ROLLOUTS__TICK_INTERVAL_S": "0.2",
        }).start(timeout=60)
        self.admin = self._admin()
        self.names: list[str] = []
        self.fleet = work / "fleet"

    def _admin(self):
        from coordinator.cli.connection import AdminClient
        from coordinator.cli.settings import ClientSettings

        return AdminClient(ClientSettings(self.coordinator.grpc_address, self.coordinator.token, "bench", 120.0, None))

    def close(self) -> None:
        self.admin.close()
        self.coordinator.stop()
        self.broker.stop()

    # -- enrollment ---------------------------------------------------------------------------

    def enroll(self, n: int) -> None:
        from agent.simulate import enroll_fleet
        from edgefleet.v1 import admin_pb2

        t0 = time.perf_counter()
        tokens = {}
        for i in range(n):
            profile = PROFILES[i % len(PROFILES)]
            name = f"{profile}-{i // len(PROFILES) + 1:03d}"
            reg = self.admin.call("RegisterDevice", admin_pb2.RegisterDeviceRequest(name=name, labels={"kind": profile, "bench": "1"}))
            tokens[(name, profile)] = reg.enrollment_token
        t1 = time.perf_counter()
        enroll_fleet(self.coordinator.grpc_address, tokens, self.fleet)
        t2 = time.perf_counter()
        self.names = [name for name, _ in tokens]
        self.enroll_per_device_s = (t2 - t1) / n
        say(f"enroll: {n} devices registered in {t1 - t0:.2f} s, enrolled in {t2 - t1:.2f} s "
            f"({(t2 - t1) / n * 1e3:.1f} ms per device; {n / (t2 - t1):.0f} devices/s)")

    def enroll_baseline(self, n: int = 5) -> float:
        """Seconds per device with one `edge-agent enroll` process per device (how the demo enrolled before)."""
        from edgefleet.v1 import admin_pb2
        from tests.fleet import base_env, script

        spent = 0.0
        for i in range(n):
            name = f"baseline-enroll-{i}"
            reg = self.admin.call("RegisterDevice", admin_pb2.RegisterDeviceRequest(name=name, labels={"bench": "0"}))
            t0 = time.perf_counter()
            subprocess.run([script("edge-agent"), "enroll", "--coordinator", self.coordinator.grpc_address, "--token", reg.enrollment_token,
                            "--state-dir", str(self.work / "baseline-enroll" / name), "--profile", PROFILES[i % len(PROFILES)]],
                           env=base_env(), check=True, capture_output=True, timeout=120)
            spent += time.perf_counter() - t0
        return spent / n

    # -- the simulator ------------------------------------------------------------------------

    def subset(self, n: int) -> Path:
        """A fleet directory with the first n devices (symlinks to their state directories)."""
        if n >= len(self.names):
            return self.fleet
        target = self.work / f"fleet-{n}"
        if not target.exists():
            target.mkdir()
            for name in self.names[:n]:
                (target / name).symlink_to(self.fleet / name)
        return target

    def simulate(self, n: int, tag: str):
        from tests.fleet import Process, base_env, script

        args = [script("edge-agent"), "simulate", "--fleet-dir", str(self.subset(n)), "--rate", str(self.args.rate),
                "--telemetry-interval", str(self.args.telemetry_interval), "--log-level", "warning"]
        return Process(args, base_env(), self.work / f"simulate-{tag}.log")

    def online(self, names: list[str]) -> int:
        from edgefleet.v1 import admin_pb2

        wanted = set(names)
        devices = self.admin.call("ListDevices", admin_pb2.ListDevicesRequest(selector="bench=1")).devices
        return sum(1 for d in devices if d.name in wanted and d.state == 2 and d.hardware.hardware_class)  # DEVICE_STATE_ONLINE

    def wait_online(self, names: list[str], timeout: float) -> float:
        t0 = time.perf_counter()
        while (count := self.online(names)) < len(names):
            if time.perf_counter() - t0 > timeout:
                raise SystemExit(f"only {count} of {len(names)} devices online after {timeout:.0f} s (logs in {self.work})")
            time.sleep(0.2)
        return time.perf_counter() - t0

    def stop(self, sim) -> tuple[float, str]:
        t0 = time.perf_counter()
        sim.signal(signal.SIGTERM)
        sim.proc.wait(120)
        elapsed = time.perf_counter() - t0
        last = next((line for line in reversed(sim.lines) if line.startswith("edge-agent simulate stopped")), "(no stop line)")
        sim.stop()
        return elapsed, last

    # -- the model ----------------------------------------------------------------------------

    def push(self) -> str:
        model, data = digits_model(self.args.cache)
        recipe = self.work / "recipe.toml"
        recipe.write_text('techniques = ["fp32", "int8"]\n')
        t0 = time.perf_counter()
        res = self.coordinator.edgectl("model", "push", str(model), "--name", "digits", "--data", str(data), "--recipe", str(recipe),
                                       "-o", "json", timeout=900)
        pushed = json.loads(res.stdout)
        say(f"model: digits:{pushed['version']} pushed and optimized (fp32, int8) in {time.perf_counter() - t0:.1f} s")
        return f"{pushed['name']}:{pushed['version']}"

    def rollout(self, ref: str, n: int) -> None:
        from edgefleet.v1 import admin_pb2

        spec = admin_pb2.RolloutSpec(ref=ref, selector="bench=1", canary_percent=10, waves=1, trial_seconds=self.args.trial_seconds,
                                     device_timeout_s=600)
        t0 = time.perf_counter()
        rollout = self.admin.call("CreateRollout", spec, timeout_s=120)
        created = time.perf_counter() - t0
        last = rollout
        deadline = t0 + self.args.rollout_timeout
        while last.state not in ("done", "aborted"):
            if time.perf_counter() > deadline:
                raise SystemExit(f"rollout {rollout.id} still {last.state} after {self.args.rollout_timeout:.0f} s: {dict(last.counts)}")
            time.sleep(0.5)
            last = self.admin.call("GetRollout", admin_pb2.GetRolloutRequest(id=rollout.id))
        elapsed = time.perf_counter() - t0
        variants: dict[str, int] = {}
        for d in last.devices:
            if not d.excluded:
                key = f"{d.hardware_class}:{d.variant_id}"
                variants[key] = variants.get(key, 0) + 1
        say(f"rollout: {ref} to {n} devices (canary 10 %, then 1 wave; {self.args.trial_seconds} s trial each): {last.state} "
            f"after {elapsed:.1f} s (CreateRollout {created:.2f} s); devices by state {dict(last.counts)}")
        say("  variant per hardware class: " + ", ".join(f"{k} x{v}" for k, v in sorted(variants.items())))
        if last.state != "done":
            raise SystemExit(f"rollout ended {last.state}: {last.reason}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--devices", type=int, default=200)
    ap.add_argument("--sizes", default="50,100,200", help="simulator sizes for the scaling figures (each <= --devices)")
    ap.add_argument("--window", type=float, default=30.0, help="seconds per measurement window")
    ap.add_argument("--rate", type=float, default=2.0, help="requests per second per simulated device")
    ap.add_argument("--telemetry-interval", type=float, default=10.0, help="seconds per telemetry window on each device")
    ap.add_argument("--trial-seconds", type=int, default=5, help="trial on each device during the rollout")
    ap.add_argument("--rollout-timeout", type=float, default=900.0)
    ap.add_argument("--no-rollout", action="store_true", help="skip the model: no rollout, no serving figures")
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "edgefleet-bench-fleet")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (logs, stores, device state)")
    args = ap.parse_args()
    sizes = sorted({min(int(s), args.devices) for s in args.sizes.split(",") if s.strip()})
    rollouts = (REPO / "coordinator" / "rollouts" / "engine.py").exists() and not args.no_rollout

    work = Path(tempfile.mkdtemp(prefix="edgefleet-bench-fleet-"))
    say(f"bench/fleet.py: {args.devices} devices, sizes {sizes}, {args.rate:g} requests/s each, telemetry every "
        f"{args.telemetry_interval:g} s, {os.cpu_count()} CPUs; work dir {work}")
    bench = Bench(args, work)
    coord = Usage(bench.coordinator.process.proc.pid)
    results: dict[int, dict[str, float]] = {}
    try:
        bench.enroll(args.devices)
        per_process = bench.enroll_baseline()
        say(f"enroll baseline: one `edge-agent enroll` process per device: {per_process * 1e3:.0f} ms per device; "
            f"enroll_fleet is {per_process / bench.enroll_per_device_s:.0f}x faster per device")
        idle = coord.measure(3)
        say(f"coordinator idle: CPU {idle['cpu']:.1f} %, RSS {mib(idle['rss'])}")

        sim = bench.simulate(args.devices, "all")
        t0 = time.perf_counter()
        sim.wait_line(lambda line: line.startswith("edge-agent simulate ready"), 300)
        ready = time.perf_counter() - t0
        online = bench.wait_online(bench.names, 300) + ready
        say(f"online: all {args.devices} devices online {online:.2f} s after `edge-agent simulate` started "
            f"(devices opened in {ready:.2f} s)")
        ingest = coord.measure(args.window)
        say(f"ingest (no model): coordinator CPU {ingest['cpu']:.1f} % of a core, RSS {mib(ingest['rss'])} (peak {mib(ingest['peak'])}), "
            f"{args.devices / args.telemetry_interval:.0f} telemetry messages/s")
        if rollouts:
            ref = bench.push()
            bench.rollout(ref, args.devices)
            both = Usage(sim.proc.pid)
            serving = coord.measure(args.window)
            simulator = both.measure(3)
            say(f"serving: coordinator CPU {serving['cpu']:.1f} %, RSS {mib(serving['rss'])}; simulator CPU {simulator['cpu']:.1f} %, "
                f"RSS {mib(simulator['rss'])}, {simulator['threads']:.0f} threads")
            tel = json.loads(bench.coordinator.edgectl("telemetry", "--fleet", "--since", "30s", "-o", "json").stdout)
            for row in tel:
                say("  fleet telemetry, last 30 s: " + ", ".join(
                    f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items() if not isinstance(v, (dict, list))))
        else:
            say("rollout: skipped (" + ("--no-rollout" if args.no_rollout else "no rollout engine in coordinator/rollouts/") + ")")
        stop_s, stop_line = bench.stop(sim)
        say(f"stop: SIGTERM -> exit in {stop_s:.2f} s: {stop_line}")

        for n in sizes:
            sim = bench.simulate(n, str(n))
            sim.wait_line(lambda line: line.startswith("edge-agent simulate ready"), 300)
            bench.wait_online(bench.names[:n], 300)
            usage = Usage(sim.proc.pid).measure(args.window)
            results[n] = usage
            bench.stop(sim)
            say(f"scaling: {n:4d} devices: simulator CPU {usage['cpu']:5.1f} % of a core, RSS {mib(usage['rss'])} "
                f"({mib(usage['rss'] / n)} per device), {usage['threads']:.0f} threads")

        base = baseline(bench, args)
        say(f"baseline: one `edge-agent run` process ({PROFILES[0]}{', serving digits' if rollouts else ''}, no requests): "
            f"online {base['online']:.2f} s after start, RSS {mib(base['rss'])}, {base['threads']:.0f} threads, CPU {base['cpu']:.1f} %")
        say(f"online ratio: {args.devices} simulated devices online in {online:.2f} s = {online / base['online']:.2f}x "
            f"the time one agent process takes to come online")
        if len(sizes) >= 2:
            lo, hi = sizes[0], sizes[-1]
            slope = (results[hi]["rss"] - results[lo]["rss"]) / (hi - lo)
            threads_per = (results[hi]["threads"] - results[lo]["threads"]) / (hi - lo)
            say(f"per simulated device (slope {lo}->{hi}): RSS {mib(slope)} = {slope / base['rss']:.3f}x one agent process; "
                f"threads {threads_per:.2f} (agent process: {base['threads']:.0f}); "
                f"CPU {(results[hi]['cpu'] - results[lo]['cpu']) / (hi - lo):.2f} % of a core")
            say(f"{hi} simulated devices in one process: RSS {mib(results[hi]['rss'])} = "
                f"{results[hi]['rss'] / (base['rss'] * hi):.3f}x {hi} agent processes ({mib(base['rss'] * hi)})")
    finally:
        bench.close()
        if args.keep:
            say(f"kept {work}")
        else:
            import shutil

            shutil.rmtree(work, ignore_errors=True)


def baseline(bench: Bench, args: argparse.Namespace) -> dict[str, float]:
    """One `edge-agent run` for the first device (its state dir, its model): RSS, threads, CPU over the window."""
    from tests.fleet import Process, base_env, script

    name = bench.names[0]
    state_dir = bench.fleet / name
    sock = Path(tempfile.mkdtemp(prefix="efb-", dir="/tmp")) / "i.sock"
    proc = Process([script("edge-agent"), "run", "--state-dir", str(state_dir), "--profile", PROFILES[0], "--socket", str(sock),
                    "--telemetry-interval", str(args.telemetry_interval), "--log-level", "warning"], base_env(), bench.work / "baseline.log")
    t0 = time.perf_counter()
    try:
        bench.wait_online([name], 60)
        online = time.perf_counter() - t0
        usage = Usage(proc.proc.pid).measure(min(args.window, 15))
        usage["online"] = online
        return usage
    finally:
        proc.stop()


if __name__ == "__main__":
    main()

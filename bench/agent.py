"""The agent's inference API, both transports, against the bare interpreter, measured in the same run.

    python bench/agent.py                      # both models, 30 rounds of 50 calls per side, 10 s idle
    python bench/agent.py --rounds 12 --calls 50 --idle-s 5 --serve 200

Models (built once with TensorFlow in a child process, cached in --cache, default
/tmp/edgefleet-bench-agent): Keras MobileNetV2 alpha 0.35 at 96×96 (weights=None) and a small digits
CNN (Conv 16 + Dense 64, trained for a few epochs on sklearn's load_digits), both float32 .tflite,
their variables frozen into constants before conversion. (Until build 3 they were not: Keras 3's
variables stayed resource variables, the files carried no weights (180 kB and 4 kB instead of 6.7 MB
and 153 kB), batch norm stayed unfolded, and the interpreter computed on uninitialized variable
memory: 2.6 ms or 11 ms per invoke depending on that memory's contents, in whichever process. The
build now refuses a conversion with variable ops. A fairer comparison, and a harder one: the real
MobileNetV2 invokes in about 0.5 ms here, so the same overhead weighs five times more in the ratio.)

The agent runs as a device runs it: `edge-agent run` on a state directory holding an identity (as
enrollment writes it) and the model in its A/B slot with a manifest carrying calibration statistics
(so drift binning is on the request path), connected to a private mosquitto when one is installed,
where a mosquitto_sub stands in for the coordinator (telemetry is delivered, not kept for a retry).
This process is the app, as an app would be: another process. It runs short rounds, in an order
that rotates, of
  raw:   Interpreter.invoke() on the same .tflite, created by the agent's own backend selection
         (same runtime, same thread count),
  gRPC:  Predict over the gRPC unix socket (stub, one request built once and re-sent),
  fast:  Predict over the fast socket with agent.client.LocalClient(shared_memory=False): the tensor's
         bytes in the frame (encodes the array and decodes the outputs on every call: what an app pays),
  shm:   the same with LocalClient's default since shared memory came: inputs (all of them since the
         threshold went to 1 byte) copied into a memfd region registered once per connection, the frame
         naming only where they are (outputs still come in the reply); from the second call on the frame
         is the same, so the agent runs it through a plan (agent.serve.prepared: no parse, decode or
         checks) and the client reuses its body,
  spin:  fast+shm with the client's opt-in spinning (LocalClient(spin_s=CLIENT_SPIN_S)): it polls for the
         reply instead of sleeping on it, a core busy for the whole call (the CPU line shows it),
  floor: the least any Predict from another process can cost: the input's raw bytes over a plain unix
         socket to a minimal server in a child process (recv into a kept buffer, set_tensor, invoke,
         the output's bytes back; no protobuf, checks or telemetry): the kernel's copies and two
         thread wake-ups, which no API across a process boundary avoids (context for the targets),
so that machine load drifting over seconds hits all alike; p50 over all rounds. (Before the shm side
existed the fast line was LocalClient's default; it still measures the same path: bytes in the frame.) Targets per transport: p50 ratio <= 1.10 on
MobileNetV2, absolute p50 overhead <= 150 µs on digits. To tell the agent's own work from the
transport it also times the model call the agent reports, the Predict handler called in this process
(no transport), and an empty Health call over each socket (the transport's floor on this machine).

Threads: the raw baseline's interpreter comes from the agent's own backend selection (select_backend(()),
num_threads None: the runtime's default, which on ai-edge-litert 2.3 is one thread with no XNNPACK workers;
the header line checks that by counting the threads an interpreter adds), so both sides run the same
XNNPACK configuration. The rotation also times `raw+io` (set_tensor, invoke, get_tensor: what an app
calling the interpreter itself pays per inference) for context; the targets use bare invoke.

Idle: a fresh `edge-agent run` with MobileNetV2 loaded (RSS in MB = 10^6 bytes, the target's unit, and
MiB; USS; CPU over --idle-s seconds; targets <= 80 MB, <= 1 % of a core), measured twice in the same
process: first with the model loaded and never invoked, then after it served --serve requests over each
transport (LiteRT sizes some buffers on the first invoke: a device that serves has those; the agent
gives freed heap back once requests stop for 2 s and keeps the .tflite's pages out of its RSS once
XNNPACK has packed the weights: agent.runtime.memory; libraries' pages are left mapped, see
docs/protocol.md). Each line also shows the RSS's anonymous part (heap, stacks,
copied pages: what no reclaim can drop), so what is file pages and what is memory stays visible. Started two ways: the shipped command (which
caps glibc's malloc arenas at 1), and the same with MALLOC_ARENA_MAX at glibc's own default of 8 per
core (what the cap saves once request threads have allocated). Also the RSS of imports the agent
keeps for its life, each alone on top of numpy and protobuf, to show where the memory goes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run from anywhere: the children import agent and tests from this tree

TARGET_RATIO = 1.10
TARGET_OVERHEAD_US = 150.0
TARGET_RSS_MB = 80.0
TARGET_IDLE_CPU = 1.0
CLIENT_SPIN_S = 0.002  # the spin side's bound: longer than a MobileNetV2 call here, so it rarely sleeps
BUILD_VERSION = "3"  # bump when the models change (3: weights frozen into the .tflite)
DEVICE_ID = "d-bench0000001"
FORBIDDEN = ("tensorflow", "tf_keras", "keras", "coordinator")


# -- building the models (TensorFlow; child process only) -----------------------------------------


def build(out: Path) -> None:
    os.environ.pop("TF_USE_LEGACY_KERAS", None)  # Keras 3 for the applications model
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import numpy as np
    import tensorflow as tf
    from sklearn.datasets import load_digits

    out.mkdir(parents=True, exist_ok=True)
    tf.keras.utils.set_random_seed(0)

    def convert(model: tf.keras.Model, name: str, shape: tuple[int, ...]) -> None:
        @tf.function(input_signature=[tf.TensorSpec([1, *shape], tf.float32, name="input")])
        def serve(x):
            return {"output": model(x, training=False)}

        # Frozen first: with a Keras 3 model the converter otherwise keeps the weights as resource
        # variables (VAR_HANDLE / READ_VARIABLE ops, no weight buffers, batch norm left unfolded), and
        # the interpreter computes on uninitialized variable memory, at a speed that depends on it.
        from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

        frozen = convert_variables_to_constants_v2(serve.get_concrete_function())
        converter = tf.lite.TFLiteConverter.from_concrete_functions([frozen])
        data = converter.convert()
        from ai_edge_litert.interpreter import Interpreter

        ops = {op["op_name"] for op in Interpreter(model_content=data)._get_ops_details()}
        if ops & {"VAR_HANDLE", "READ_VARIABLE"} or len(data) < model.count_params() * 2:
            raise SystemExit(f"bench: {name} converted without its weights ({len(data)} bytes for "
                             f"{model.count_params()} parameters; ops {sorted(ops)})")
        (out / f"{name}.tflite").write_bytes(data)

    started = time.perf_counter()
    mobilenet = tf.keras.applications.MobileNetV2(alpha=0.35, input_shape=(96, 96, 3), weights=None)
    convert(mobilenet, "mobilenetv2", (96, 96, 3))
    print(f"  mobilenetv2 converted in {time.perf_counter() - started:.1f} s", file=sys.stderr)

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[..., None]
    y = digits.target
    cnn = tf.keras.Sequential([
        tf.keras.Input((8, 8, 1)),
        tf.keras.layers.Conv2D(16, 3, activation="relu"),
        tf.keras.layers.Flatten(),
        tf.keras.layers.Dense(64, activation="relu"),
        tf.keras.layers.Dense(10, activation="softmax"),
    ])
    cnn.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    cnn.fit(x, y, epochs=5, batch_size=64, verbose=0)
    convert(cnn, "digits", (8, 8, 1))
    np.save(out / "digits_sample.npy", x[:1])
    np.save(out / "digits_calibration.npy", x[:500])
    (out / "ok").write_text(BUILD_VERSION)


def ensure_models(cache: Path) -> Path:
    target = cache / f"v{BUILD_VERSION}"
    if (target / "ok").is_file():
        return target
    print(f"building the benchmark models in {target} (TensorFlow, about a minute)...", file=sys.stderr)
    env = dict(os.environ)
    env.pop("TF_USE_LEGACY_KERAS", None)
    result = subprocess.run([sys.executable, __file__, "build", str(target)], env=env)
    if result.returncode != 0:
        sys.exit("bench: building the models failed")
    return target


# -- a device: state directory, broker, `edge-agent run` ------------------------------------------


def write_state(state: Path, model: Path, calibration, broker_url: str) -> None:
    """What enrollment and an install leave on a device: identity.json, the model in slot-a, the pointer."""
    from edgefleet.v1 import manifest_pb2

    state.mkdir(parents=True, exist_ok=True, mode=0o700)
    identity = {"device_id": DEVICE_ID, "device_name": "bench", "coordinator": "127.0.0.1:9",
                "mqtt": {"url": broker_url, "client_id": DEVICE_ID, "username": DEVICE_ID, "password": "bench",
                         "protocol": "5", "keepalive_s": 30, "session_expiry_s": 3600},
                "public_key_hex": "00" * 32, "key_id": "0" * 16, "enrolled_at": ""}
    (state / "identity.json").write_text(json.dumps(identity))
    os.chmod(state / "identity.json", 0o600)
    data = model.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    slot = state / "models" / "slot-a"
    slot.mkdir(parents=True, exist_ok=True)
    (slot / f"{sha}.tflite").write_bytes(data)
    manifest = manifest_pb2.ModelManifest(model=model.stem, version="1", variant_id="fp32", task="classification",
                                          sha256=sha, sequence=1)
    manifest.calibration.CopyFrom(calibration)
    signed = manifest_pb2.SignedManifest(manifest=manifest.SerializeToString())  # slots do not re-verify
    (slot / "manifest.bin").write_bytes(signed.SerializeToString())
    (state / "models" / "pointer.json").write_text(json.dumps({"active": "slot-a", "previous": None}))


class Broker:
    """A private mosquitto when installed (the agent then idles connected, as on a device)."""

    def __init__(self) -> None:
        from tests.mosquitto import MosquittoProcess, free_port, mosquitto_binary

        self.dir = Path(tempfile.mkdtemp(prefix="efb-mq-", dir="/tmp"))
        self.process = self.sink = None
        if mosquitto_binary() is not None:
            self.process = MosquittoProcess("allow_anonymous true\n", self.dir).start()
            self.url, self.note = f"mqtt://127.0.0.1:{self.process.port}", "connected to a private mosquitto"
            sub = shutil.which("mosquitto_sub")
            if sub:  # stands in for the coordinator: telemetry reaches a subscriber, as on a device in a fleet
                self.sink = subprocess.Popen([sub, "-p", str(self.process.port), "-q", "1", "-t", "ef/v1/#"],
                                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        else:
            self.url, self.note = f"mqtt://127.0.0.1:{free_port()}", "no mosquitto installed: the agent retries a closed port"

    def close(self) -> None:
        if self.sink is not None:
            self.sink.terminate()
            self.sink.wait(10)
        if self.process is not None:
            self.process.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class Device:
    """An agent process on its own state directory, serving `model`."""

    def __init__(self, model: Path, calibration, broker: Broker, *, env: dict[str, str] | None = None,
                 trace_imports: bool = False) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="efb-", dir="/tmp"))
        self.state = self.dir / "state"
        self.socket = self.dir / "inference.sock"
        write_state(self.state, model, calibration, broker.url)
        env = dict(os.environ, PYTHONPATH=str(REPO), **(env or {}))
        env.pop("TF_USE_LEGACY_KERAS", None)
        if trace_imports:
            env["PYTHONPROFILEIMPORTTIME"] = "1"  # the import list lands in the log: checked for TensorFlow
        script = Path(sys.executable).with_name("edge-agent")
        command = [str(script)] if script.exists() else [sys.executable, "-m", "agent.cli"]
        command += ["run", "--state-dir", str(self.state), "--socket", str(self.socket)]
        self.log_path = self.dir / "agent.log"
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log, env=env)
        self._wait_serving(model.name)

    def _wait_serving(self, name: str) -> None:
        from agent.client import InferenceError, LocalClient

        deadline = time.monotonic() + 90
        pause = threading.Event()
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                sys.exit(f"bench: the agent serving {name} exited:\n{self.log_path.read_text()[-3000:]}")
            if self.socket.exists():
                try:
                    with LocalClient(self.socket, timeout_s=5) as client:
                        if client.health().status == "serving" and client.transport == "fast":
                            return
                except InferenceError:
                    pass
            pause.wait(0.1)
        sys.exit(f"bench: the agent did not serve {name} within 90 s:\n{self.log_path.read_text()[-3000:]}")

    def imported(self) -> set[str]:
        """Top-level packages the agent imported (with trace_imports)."""
        names = re.findall(r"^import time:\s+\d+ \|\s+\d+ \|\s*([\w.]+)", self.log_path.read_text(), re.MULTILINE)
        return {n.split(".")[0] for n in names}

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


# -- measuring ------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def timed(call, count: int, into: list[float], cpu: list[float] | None = None, agent=None) -> None:
    """`count` calls' latencies (µs) into `into`; with `cpu` ([calls, client s, agent s]), also add the
    CPU they took: this thread's, and the agent process's (psutil, in clock ticks: summed over rounds)."""
    clock = time.perf_counter_ns
    if cpu is not None:
        thread, before = time.thread_time(), (sum(agent.cpu_times()[:2]) if agent is not None else 0.0)
    for _ in range(count):
        started = clock()
        call()
        into.append((clock() - started) / 1e3)
    if cpu is not None:
        cpu[0] += count
        cpu[1] += time.thread_time() - thread
        cpu[2] += sum(agent.cpu_times()[:2]) - before if agent is not None else 0.0


def interpreter_threads(model: Path) -> str:
    """The agent's backend choice and the threads one of its interpreters adds to a process."""
    from agent.runtime import select_backend

    backend = select_backend(())
    before = len(os.listdir("/proc/self/task"))
    interpreter = backend.create_interpreter(model)
    interpreter.allocate_tensors()
    interpreter.invoke()
    added = len(os.listdir("/proc/self/task")) - before
    del interpreter
    threads = "runtime default" if backend.num_threads is None else str(backend.num_threads)
    return f"{backend.describe()}, num_threads={threads}: the interpreter adds {added} thread(s) (XNNPACK workers)"


def floor_server(model: Path, path: str) -> None:
    """The least a Predict from another process can cost here: raw float32 bytes of the input over a
    plain unix socket into a buffer that stays, set_tensor, invoke, the output's bytes back. No
    protobuf, no checks, no telemetry, no locks: what is left is the kernel's copies and two thread
    wake-ups, which any API across a process boundary pays."""
    import socket

    import numpy as np

    from agent.runtime import select_backend

    interpreter = select_backend(()).create_interpreter(model)
    interpreter.allocate_tensors()
    (detail,) = interpreter.get_input_details()
    output_index = interpreter.get_output_details()[0]["index"]
    shape = tuple(int(d) for d in detail["shape"])
    buffer = bytearray(int(np.prod(shape)) * 4)
    array, view = np.frombuffer(buffer, np.float32).reshape(shape), memoryview(buffer)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    conn, _ = listener.accept()
    while True:
        got = 0
        while got < len(buffer):
            n = conn.recv_into(view[got:], len(buffer) - got, socket.MSG_WAITALL)
            if n == 0:
                return
            got += n
        interpreter.set_tensor(detail["index"], array)
        interpreter.invoke()
        conn.sendall(interpreter.get_tensor(output_index).tobytes())


class Floor:
    """The client of floor_server, in a child process of its own."""

    def __init__(self, model: Path, sample) -> None:
        import socket

        self.dir = Path(tempfile.mkdtemp(prefix="efb-floor-", dir="/tmp"))
        path = self.dir / "floor.sock"
        self.proc = subprocess.Popen([sys.executable, __file__, "floor", str(model), str(path)],
                                     env=dict(os.environ, PYTHONPATH=str(REPO)), stderr=subprocess.DEVNULL)
        self.request = memoryview(sample.astype("<f4").tobytes())
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        deadline, pause = time.monotonic() + 30, threading.Event()
        while True:
            try:
                self.sock.connect(str(path))
                break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    sys.exit("bench: the floor server did not start")
                pause.wait(0.05)
        self.reply = bytearray(65536)
        self.reply_view = memoryview(self.reply)
        self.reply_size = 0

    def call(self) -> None:
        self.sock.sendall(self.request)
        got = self.sock.recv_into(self.reply_view)
        if self.reply_size == 0:  # the first reply's size (the output's bytes) is every reply's
            import select

            while select.select([self.sock], [], [], 0.2)[0]:
                got += self.sock.recv_into(self.reply_view[got:])
            self.reply_size = got
        while got < self.reply_size:
            got += self.sock.recv_into(self.reply_view[got:self.reply_size])

    def close(self) -> None:
        self.sock.close()
        self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


def compare(name: str, model: Path, sample, calibration, broker: Broker, rounds: int, calls: int) -> dict[str, float]:
    import grpc
    import numpy as np
    import psutil

    from agent.client import LocalClient
    from agent.runtime import select_backend
    from agent.serve import InferenceServicer, ModelHost
    from agent.telemetry.collector import TelemetryCollector
    from edgefleet.v1 import inference_pb2, inference_pb2_grpc, manifest_pb2

    backend = select_backend(())  # what the agent picks on this machine: same runtime, same threads
    interpreter = backend.create_interpreter(model)
    interpreter.allocate_tensors()
    (detail,) = interpreter.get_input_details()
    interpreter.set_tensor(detail["index"], sample.astype(np.float32))
    output_index = interpreter.get_output_details()[0]["index"]
    sample32 = sample.astype(np.float32)

    def raw_io() -> None:  # what an app running the interpreter itself pays per inference
        interpreter.set_tensor(detail["index"], sample32)
        interpreter.invoke()
        interpreter.get_tensor(output_index)

    # The agent's Predict handler called in this process: its work without any transport.
    host, collector = ModelHost(), TelemetryCollector()
    host.subscribe(collector.on_activate)
    manifest = manifest_pb2.ModelManifest(model=name, version="1", variant_id="fp32", task="classification")
    manifest.calibration.CopyFrom(calibration)
    host.load(model, manifest)
    handler = InferenceServicer(host, observer=collector).predict

    device = Device(model, calibration, broker, trace_imports=True)
    floor = Floor(model, sample)
    try:
        channel = grpc.insecure_channel(f"unix:{device.socket}")
        stub = inference_pb2_grpc.InferenceStub(channel)
        client = LocalClient(device.socket, transport="fast", shared_memory=False)
        shm_client = LocalClient(device.socket, transport="fast")
        spin_client = LocalClient(device.socket, transport="fast", spin_s=CLIENT_SPIN_S)
        input_name = client.describe().inputs[0].name
        array = sample.astype(np.float32)
        inputs = {input_name: array}
        request = inference_pb2.PredictRequest(inputs=[inference_pb2.Tensor(
            name=input_name, shape=list(array.shape), dtype="float32", data=array.astype("<f4").tobytes())])
        empty = inference_pb2.HealthRequest()
        reported: dict[str, list[float]] = {"grpc": [], "fast": [], "shm": [], "spin": []}  # the model call, as the agent timed it

        def grpc_predict() -> None:
            reported["grpc"].append(stub.Predict(request, timeout=10).latency_ms * 1e3)

        def fast_predict() -> None:
            reported["fast"].append(client.predict(inputs)[2] * 1e3)

        def shm_predict() -> None:
            reported["shm"].append(shm_client.predict(inputs)[2] * 1e3)

        def spin_predict() -> None:
            reported["spin"].append(spin_client.predict(inputs)[2] * 1e3)

        for _ in range(50):  # warm-up: connections, threads, caches
            grpc_predict(), fast_predict(), shm_predict(), spin_predict(), handler(request), interpreter.invoke()
            stub.Health(empty, timeout=10), client.health(), floor.call()
        for values in reported.values():
            del values[:]
        raw, over_grpc, over_fast, over_shm, over_spin, in_process, grpc_floor, fast_floor, raw_with_io, least = (
            [] for _ in range(10))
        sides = [(interpreter.invoke, raw), (grpc_predict, over_grpc), (fast_predict, over_fast), (shm_predict, over_shm),
                 (spin_predict, over_spin), (floor.call, least)]
        cpu: dict[int, list[float]] = {id(into): [0, 0.0, 0.0] for _, into in sides}  # calls, client s, agent s
        agent = psutil.Process(device.proc.pid)
        for index in range(rounds):
            # Short rounds in a rotating order: load that drifts over seconds hits every side alike.
            for call, into in sides[index % len(sides):] + sides[:index % len(sides)]:
                timed(call, calls, into, cpu[id(into)], agent)
            timed(lambda: handler(request), calls, in_process)
            timed(raw_io, calls // 3, raw_with_io)
            timed(lambda: stub.Health(empty, timeout=10), calls // 3, grpc_floor)
            timed(client.health, calls // 3, fast_floor)
        channel.close()
        client.close()
        shm_client.close()
        spin_client.close()
        unexpected = sorted(device.imported() & set(FORBIDDEN))
        if unexpected:
            sys.exit(f"bench: the agent imported {unexpected}")
    finally:
        floor.close()
        device.close()
        host.close()
    raw_p50 = percentile(raw, 50)
    out = {"raw_p50_us": raw_p50, "raw_p95_us": percentile(raw, 95), "raw_io_p50_us": percentile(raw_with_io, 50),
           "floor_p50_us": percentile(least, 50), "floor_ratio": percentile(least, 50) / raw_p50,
           "model_call_p50_us": percentile(reported["grpc"] + reported["fast"], 50), "handler_p50_us": percentile(in_process, 50)}
    for key, values in reported.items():  # the model call per transport (gRPC's runs beside gRPC's own threads)
        out[f"{key}_model_call_p50_us"] = percentile(values, 50)
    for key, into in (("raw", raw), ("grpc", over_grpc), ("fast", over_fast), ("shm", over_shm), ("spin", over_spin),
                      ("floor", least)):
        # CPU per call over all rounds (the agent's figure includes its idle threads; for raw and floor it
        # is the agent idling: the floor server is another process, not counted)
        calls_made, client_s, agent_s = cpu[id(into)]
        out[f"{key}_client_cpu_us"] = client_s * 1e6 / calls_made
        out[f"{key}_agent_cpu_us"] = agent_s * 1e6 / calls_made
    for key, values, floor in (("grpc", over_grpc, grpc_floor), ("fast", over_fast, fast_floor), ("shm", over_shm, fast_floor),
                               ("spin", over_spin, fast_floor)):
        p50 = percentile(values, 50)
        out.update({f"{key}_p50_us": p50, f"{key}_p95_us": percentile(values, 95), f"{key}_ratio": p50 / raw_p50,
                    f"{key}_overhead_us": p50 - raw_p50, f"{key}_health_p50_us": percentile(floor, 50),
                    f"{key}_over_model_call_us": p50 - percentile(reported[key], 50)})
    return out


def _idle_figures(process, seconds: float) -> dict[str, float]:
    pause = threading.Event()
    pause.wait(2.0)  # start-up work, or the last request's, settles
    before = process.cpu_times()
    started = time.monotonic()
    pause.wait(seconds)
    after = process.cpu_times()
    elapsed = time.monotonic() - started
    memory = process.memory_full_info()
    cpu = ((after.user - before.user) + (after.system - before.system)) / elapsed * 100
    anonymous = 0.0  # the part of the RSS no reclaim can drop (heap, stacks, copied pages); the rest is file pages
    with open(f"/proc/{process.pid}/smaps_rollup") as rollup:
        for line in rollup:
            if line.startswith("Anonymous:"):
                anonymous = int(line.split()[1]) * 1024 / 1e6
    return {"rss_mb": memory.rss / 1e6, "rss_mib": memory.rss / 2**20, "uss_mb": memory.uss / 1e6, "cpu_percent": cpu,
            "anon_mb": anonymous, "load": os.getloadavg()[0]}


def idle(model: Path, sample, calibration, broker: Broker, env: dict[str, str], seconds: float, serve: int) -> dict[str, dict]:
    """Idle figures of one agent: with the model loaded and never invoked, then after serving `serve`
    requests over each transport."""
    import psutil

    from agent.client import LocalClient

    device = Device(model, calibration, broker, env=env)
    try:
        process = psutil.Process(device.proc.pid)
        loaded = _idle_figures(process, seconds)
        for transport in ("fast", "grpc"):
            with LocalClient(device.socket, transport=transport) as client:
                name = client.describe().inputs[0].name
                for _ in range(serve):
                    client.predict({name: sample})
        served = _idle_figures(process, seconds)
    finally:
        device.close()
    return {"loaded": loaded, "served": served}


# Imports the running agent keeps (its start-up path needs them), each measured alone.
IMPORT_COSTS = (
    ("numpy", "import numpy", "import psutil"),
    ("grpc (the gRPC API; asyncio and ssl come with it)", "import grpc", "import psutil, numpy, google.protobuf.message"),
    ("paho-mqtt as the agent imports it (paho_client)", "import edgefleet.session",
     "import psutil, numpy, google.protobuf.message, grpc"),
    ("paho-mqtt imported plainly (urllib.request too)", "import paho.mqtt.client",
     "import psutil, numpy, google.protobuf.message, grpc"),
    ("ai_edge_litert (the runtime)", "import ai_edge_litert.interpreter", "import psutil, numpy, google.protobuf.message"),
    ("typer (not on the `run` path any more)", "import typer, pydantic", "import psutil, numpy, google.protobuf.message"),
    ("cryptography (manifest signatures only)", "import cryptography.hazmat.primitives.asymmetric.ed25519",
     "import psutil, numpy, google.protobuf.message"),
)


def import_cost(statement: str, base: str) -> float:
    """RSS (MB) that `statement` adds to a process that already ran `base`."""
    code = (f"{base}\nimport psutil\n"
            "p = psutil.Process(); before = p.memory_info().rss\n"
            f"{statement}\n"
            "print((p.memory_info().rss - before) / 1e6)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    return float(result.stdout.strip() or "nan")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "build":
        build(Path(sys.argv[2]))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "floor":
        floor_server(Path(sys.argv[2]), sys.argv[3])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--calls", type=int, default=50, help="calls per round and side")
    parser.add_argument("--idle-s", type=float, default=10.0)
    parser.add_argument("--serve", type=int, default=200, help="requests per transport before the second idle figure")
    parser.add_argument("--latency-only", action="store_true", help="skip the idle and import figures (and their checks)")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "edgefleet-bench-agent")
    args = parser.parse_args()

    import importlib.metadata

    import numpy as np

    from agent.telemetry.drift import calibration_stats

    models = ensure_models(args.cache)
    rng = np.random.default_rng(0)
    mobilenet_sample = rng.uniform(-1, 1, size=(1, 96, 96, 3)).astype(np.float32)
    mobilenet_calibration = calibration_stats(rng.uniform(-1, 1, size=(32, 96, 96, 3)))
    digits_sample = np.load(models / "digits_sample.npy")
    digits_calibration = calibration_stats(np.load(models / "digits_calibration.npy"))
    broker = Broker()
    try:
        print(f"ai-edge-litert {importlib.metadata.version('ai-edge-litert')}, grpcio {importlib.metadata.version('grpcio')}, "
              f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}, {args.rounds} rounds × {args.calls} calls per side; "
              f"agent: edge-agent run, {broker.note}; client: this process")
        print(f"interpreters on both sides: {interpreter_threads(models / 'digits.tflite')}")
        print(f"{'model':<13}{'transport':<11}{'raw p50':>9}{'Predict p50':>13}{'ratio':>7}{'overhead':>10}{'raw p95':>9}"
              f"{'Predict p95':>13}{'Health p50':>12}")
        results = {}
        for name, path, sample, calibration in (
                ("mobilenetv2", models / "mobilenetv2.tflite", mobilenet_sample, mobilenet_calibration),
                ("digits", models / "digits.tflite", digits_sample, digits_calibration)):
            load_before = os.getloadavg()[0]
            r = compare(name, path, sample, calibration, broker, args.rounds, args.calls)
            results[name] = r
            print(f"{name}: load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after (2 cores; above ~1.5 the "
                  "figures are disturbed by other work)")
            for key, label in (("grpc", "gRPC"), ("fast", "fast"), ("shm", "fast+shm"), ("spin", "+spin")):
                print(f"{name:<13}{label:<11}{r['raw_p50_us']:>7.0f}µs{r[f'{key}_p50_us']:>11.0f}µs{r[f'{key}_ratio']:>7.2f}"
                      f"{r[f'{key}_overhead_us']:>8.0f}µs{r['raw_p95_us']:>7.0f}µs{r[f'{key}_p95_us']:>11.0f}µs"
                      f"{r[f'{key}_health_p50_us']:>10.0f}µs")
            print(f"{'':<13}floor (any cross-process call) p50 {r['floor_p50_us']:.0f}µs, ratio {r['floor_ratio']:.2f}, "
                  f"+{r['floor_p50_us'] - r['raw_p50_us']:.0f}µs")
            print(f"{'':<13}model call p50 {r['model_call_p50_us']:.0f}µs, handler p50 {r['handler_p50_us']:.0f}µs, raw+io p50 "
                  f"{r['raw_io_p50_us']:.0f}µs; Predict p50 over the model call: gRPC {r['grpc_over_model_call_us']:.0f}µs, "
                  f"fast {r['fast_over_model_call_us']:.0f}µs, fast+shm {r['shm_over_model_call_us']:.0f}µs")
            print(f"{'':<13}model call p50 by transport: gRPC {r['grpc_model_call_p50_us']:.0f}µs, fast "
                  f"{r['fast_model_call_p50_us']:.0f}µs, fast+shm {r['shm_model_call_p50_us']:.0f}µs, +spin "
                  f"{r['spin_model_call_p50_us']:.0f}µs")
            print(f"{'':<13}CPU per call, client thread / agent process (µs): " + ", ".join(
                f"{label} {r[f'{key}_client_cpu_us']:.0f}/{r[f'{key}_agent_cpu_us']:.0f}" for key, label in (
                    ("raw", "raw"), ("grpc", "gRPC"), ("fast", "fast"), ("shm", "fast+shm"), ("spin", "+spin"), ("floor", "floor"))))
        print("floor: raw input bytes over a plain unix socket to another process, set_tensor, invoke, output bytes back\n"
              "       (no protobuf, checks or telemetry): what any API across a process boundary pays on this machine;\n"
              "model call: the latency the agent reports (LoadedModel.predict: checks, (de)quantization, the interpreter lock;\n"
              "         the first figure pools gRPC's and fast's, as before; then each transport's own)\n"
              "handler: the whole Predict handler (decode, model call, summary, drift, telemetry, encode) called in this\n"
              "         process, no transport; Health: an empty call over the same socket, the transport's floor here;\n"
              "over the model call: what the transport and the rest of the handler add to the agent's own interpreter\n"
              "         call (the interpreters of two processes can differ by 10 % or more on a shared VM);\n"
              "raw+io: set_tensor, invoke, get_tensor in this process (an app running the interpreter itself);\n"
              "fast+shm: inputs through a shared-memory region; +spin: the same client polling for its reply (opt-in);\n"
              "         the agent polls up to 200 µs for a hot loop's next request (agent.serve.fast, on every fast line);\n"
              "CPU per call: over all rounds; the client's thread, and the whole agent process (its idle threads too)")

        rest = {}
        glibc_default = str(8 * (os.cpu_count() or 1))
        variants = (("edge-agent run", {}), (f"edge-agent run, MALLOC_ARENA_MAX={glibc_default}", {"MALLOC_ARENA_MAX": glibc_default}))
        for label, env in variants if not args.latency_only else ():
            rest[label] = idle(models / "mobilenetv2.tflite", mobilenet_sample, mobilenet_calibration, broker, env, args.idle_s,
                               args.serve)
        if rest:
            print(f"idle agent with MobileNetV2, {broker.note}, CPU over {args.idle_s:g} s (MB = 10^6 bytes):")
        for label, figures in rest.items():
            for state, r in figures.items():
                when = "loaded, never invoked" if state == "loaded" else f"after {args.serve} requests per transport"
                print(f"  {label:<36} {when:<32} RSS {r['rss_mb']:5.1f} MB ({r['rss_mib']:5.1f} MiB, "
                      f"anonymous {r['anon_mb']:4.1f} MB)  USS {r['uss_mb']:5.1f} MB  "
                      f"CPU {r['cpu_percent']:.2f} % of a core  (load {r['load']:.2f})")
        if rest:
            print("RSS each import adds, alone on top of what comes before it in the agent:")
        for label, statement, base in IMPORT_COSTS if rest else ():
            print(f"  {label:<52} {import_cost(statement, base):5.1f} MB")
    finally:
        broker.close()

    checks = []
    for key, label in (("grpc", "gRPC"), ("fast", "fast"), ("shm", "fast+shm"), ("spin", "fast+shm+client spin")):
        mobilenet, digits = results["mobilenetv2"], results["digits"]
        checks.append((f"MobileNetV2 p50 ratio, {label}", mobilenet[f"{key}_ratio"], TARGET_RATIO,
                       f"{mobilenet[f'{key}_ratio']:.2f} (target <= {TARGET_RATIO})"))
        checks.append((f"digits p50 overhead, {label}", digits[f"{key}_overhead_us"], TARGET_OVERHEAD_US,
                       f"{digits[f'{key}_overhead_us']:.0f} µs (target <= {TARGET_OVERHEAD_US:.0f} µs)"))
    if rest:
        loaded, shipped = rest["edge-agent run"]["loaded"], rest["edge-agent run"]["served"]
        checks.append(("idle RSS, edge-agent run, model never invoked", loaded["rss_mb"], TARGET_RSS_MB,
                       f"{loaded['rss_mb']:.1f} MB (target <= {TARGET_RSS_MB:.0f} MB)"))
        checks.append(("idle RSS, edge-agent run, after serving", shipped["rss_mb"], TARGET_RSS_MB,
                       f"{shipped['rss_mb']:.1f} MB (target <= {TARGET_RSS_MB:.0f} MB)"))
        checks.append(("idle CPU, edge-agent run, after serving", shipped["cpu_percent"], TARGET_IDLE_CPU,
                       f"{shipped['cpu_percent']:.2f} % (target <= {TARGET_IDLE_CPU:.0f} %)"))
    for label, value, target, text in checks:
        print(f"{'PASS' if value <= target else 'MISS'}  {label}: {text}")


if __name__ == "__main__":
    main()

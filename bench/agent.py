"""The agent's inference API against the bare interpreter, measured in the same run.

    python bench/agent.py                   # both models, 5 rounds of 300 calls each
    python bench/agent.py --rounds 3 --calls 200 --idle-s 10

Models (built once with TensorFlow in a child process, cached in --cache, default
/tmp/edgefleet-bench-agent): Keras MobileNetV2 alpha 0.35 at 96×96 (weights=None) and a small digits
CNN (Conv 16 + Dense 64, trained for a few epochs on sklearn's load_digits), both float32 .tflite.

For each model a serving process runs the agent's pieces and nothing else (no TensorFlow): ModelHost,
InferenceServer on a unix socket, TelemetryCollector with its loop, an outbox and its publisher (never
connected here). This process then alternates rounds of
  raw:      Interpreter.invoke() on the same .tflite (ai-edge-litert, same thread count), and
  predict:  Predict over the unix socket with a gRPC client (one request built once and re-sent),
so that machine load hits both alike; p50 over all rounds. It prints the p50 ratio (target <= 1.10 on
MobileNetV2) and the absolute p50 overhead (target <= 150 µs on digits). To tell the agent's own work
from the transport it also times, in the same rounds, the Predict handler called in this process (no
gRPC) and an empty Health RPC over the same socket (the gRPC floor). Both models carry calibration
statistics, so drift binning is on the measured path.

Idle: a fresh serving process with MobileNetV2 loaded and no requests: RSS, and CPU over --idle-s
seconds (targets: <= 80 MB, <= 1 % of a core).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run from anywhere: the serving child imports agent from this tree

TARGET_RATIO = 1.10
TARGET_OVERHEAD_US = 150.0
TARGET_RSS_MB = 80.0
TARGET_IDLE_CPU = 1.0
BUILD_VERSION = "2"  # bump when the models change


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

        converter = tf.lite.TFLiteConverter.from_concrete_functions([serve.get_concrete_function()], model)
        (out / f"{name}.tflite").write_bytes(converter.convert())

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


# -- the serving process (agent code only) --------------------------------------------------------


def serve(model: Path, socket_path: Path, threads: int, state: Path, calibration: Path) -> None:
    import paho.mqtt.client as mqtt  # the real agent holds a paho client: count its memory

    from agent.outbox import Outbox
    from agent.publisher import OutboxPublisher
    from agent.serve import InferenceServer, ModelHost
    from agent.telemetry.collector import TelemetryCollector
    from agent.telemetry.power import PowerSampler, power_meters
    from agent.telemetry.system import SystemSampler
    from edgefleet.v1 import hardware_pb2, manifest_pb2

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench")
    outbox = Outbox.open(state / "outbox.db")
    publisher = OutboxPublisher.for_client(outbox, client, threading.Event(), "bench-device")
    power = PowerSampler(power_meters(Path("/sys"), hardware_pb2.PowerModel(idle_watts=3.0, active_watts=6.0)))
    collector = TelemetryCollector(system=SystemSampler(state), power=power, emit=publisher.put_telemetry,
                                   sequence_path=state / "telemetry.seq")
    host = ModelHost()
    host.subscribe(collector.on_activate)
    manifest = manifest_pb2.ModelManifest(model=model.stem, version="1", variant_id="fp32", task="classification")
    manifest.calibration.ParseFromString(calibration.read_bytes())  # drift is part of the request path
    host.load(model, manifest, num_threads=threads)
    server = InferenceServer(socket_path, host, observer=collector)
    server.start()
    collector.start()
    publisher.start()
    loaded = {m for m in sys.modules if m.split(".")[0] in ("tensorflow", "tf_keras", "keras", "coordinator")}
    print(json.dumps({"ready": True, "unexpected_imports": sorted(loaded)}), flush=True)
    sys.stdin.read()  # until the parent closes our stdin
    server.stop(0)
    collector.stop()
    publisher.stop()


class Serving:
    def __init__(self, model: Path, threads: int, calibration) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="efb-", dir="/tmp"))
        self.socket = self.dir / "inference.sock"
        (self.dir / "calibration.pb").write_bytes(calibration.SerializeToString())
        env = dict(os.environ, PYTHONPATH=str(REPO))
        self.proc = subprocess.Popen([sys.executable, __file__, "serve", str(model), str(self.socket), str(threads), str(self.dir),
                                      str(self.dir / "calibration.pb")],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        line = self.proc.stdout.readline()
        if not line:
            sys.exit(f"bench: the serving process for {model.name} did not start")
        status = json.loads(line)
        if status["unexpected_imports"]:
            sys.exit(f"bench: the serving process imported {status['unexpected_imports']}")

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(10)
        for p in sorted(self.dir.glob("*"), reverse=True):
            p.unlink(missing_ok=True)
        self.dir.rmdir()


# -- measuring ------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


class _Context:
    def abort(self, code, details):
        raise RuntimeError(f"{code}: {details}")


def compare(name: str, model: Path, sample, calibration, threads: int, rounds: int, calls: int) -> dict[str, float]:
    import grpc
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    from agent.serve import InferenceServicer, ModelHost
    from agent.telemetry.collector import TelemetryCollector
    from edgefleet.v1 import inference_pb2, inference_pb2_grpc, manifest_pb2

    interpreter = Interpreter(model_path=str(model), num_threads=threads)
    interpreter.allocate_tensors()
    (detail,) = interpreter.get_input_details()
    interpreter.set_tensor(detail["index"], sample.astype(np.float32))

    # The agent's handler called directly in this process: its work without the gRPC transport.
    host, collector = ModelHost(), TelemetryCollector()
    host.subscribe(collector.on_activate)
    manifest = manifest_pb2.ModelManifest(model=name, version="1", variant_id="fp32", task="classification")
    manifest.calibration.CopyFrom(calibration)
    host.load(model, manifest, num_threads=threads)
    handler, context = InferenceServicer(host, observer=collector).Predict, _Context()

    serving = Serving(model, threads, calibration)
    try:
        channel = grpc.insecure_channel(f"unix:{serving.socket}")
        stub = inference_pb2_grpc.InferenceStub(channel)
        described = stub.DescribeModel(inference_pb2.DescribeModelRequest(), timeout=10)
        tensor = inference_pb2.Tensor(name=described.inputs[0].name, shape=list(sample.shape), dtype="float32",
                                      data=sample.astype("<f4").tobytes())
        request = inference_pb2.PredictRequest(inputs=[tensor])
        predict, health = stub.Predict, stub.Health
        empty = inference_pb2.HealthRequest()
        for _ in range(50):  # warm-up: connection, thread pool, caches
            predict(request, timeout=10)
            health(empty, timeout=10)
            handler(request, context)
            interpreter.invoke()
        raw, over_socket, agent_side, floor, in_process = [], [], [], [], []
        for _ in range(rounds):
            for _ in range(calls):
                started = time.perf_counter_ns()
                interpreter.invoke()
                raw.append((time.perf_counter_ns() - started) / 1e3)
            for _ in range(calls):
                started = time.perf_counter_ns()
                response = predict(request, timeout=10)
                over_socket.append((time.perf_counter_ns() - started) / 1e3)
                agent_side.append(response.latency_ms * 1e3)
            for _ in range(calls):
                started = time.perf_counter_ns()
                handler(request, context)
                in_process.append((time.perf_counter_ns() - started) / 1e3)
            for _ in range(calls // 3):  # an RPC that does nothing: what gRPC alone costs here
                started = time.perf_counter_ns()
                health(empty, timeout=10)
                floor.append((time.perf_counter_ns() - started) / 1e3)
        channel.close()
    finally:
        serving.close()
        host.close()
    raw_p50, predict_p50 = percentile(raw, 50), percentile(over_socket, 50)
    return {
        "raw_p50_us": raw_p50, "raw_p95_us": percentile(raw, 95),
        "predict_p50_us": predict_p50, "predict_p95_us": percentile(over_socket, 95),
        "agent_latency_p50_us": percentile(agent_side, 50), "health_p50_us": percentile(floor, 50),
        "handler_p50_us": percentile(in_process, 50),
        "ratio": predict_p50 / raw_p50, "overhead_us": predict_p50 - raw_p50,
    }


def idle(model: Path, threads: int, seconds: float, calibration) -> dict[str, float]:
    import psutil

    serving = Serving(model, threads, calibration)
    try:
        process = psutil.Process(serving.proc.pid)
        settle = threading.Event()
        settle.wait(1.0)  # let start-up work finish before measuring idle
        before = process.cpu_times()
        started = time.monotonic()
        settle.wait(seconds)
        after = process.cpu_times()
        elapsed = time.monotonic() - started
        rss = process.memory_info().rss
    finally:
        serving.close()
    cpu = ((after.user - before.user) + (after.system - before.system)) / elapsed * 100
    return {"rss_mb": rss / 1e6, "cpu_percent": cpu}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "build":
        build(Path(sys.argv[2]))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        serve(Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4]), Path(sys.argv[5]), Path(sys.argv[6]))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=300, help="calls per round and side")
    parser.add_argument("--threads", type=int, default=1, help="interpreter threads, the same on both sides")
    parser.add_argument("--idle-s", type=float, default=10.0)
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
    print(f"ai-edge-litert {importlib.metadata.version('ai-edge-litert')}, grpcio {importlib.metadata.version('grpcio')}, "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}, {args.threads} interpreter thread(s), "
          f"{args.rounds} rounds × {args.calls} calls per side")
    print(f"{'model':<14}{'raw p50':>10}{'Predict p50':>13}{'ratio':>8}{'overhead':>10}{'raw p95':>10}{'Predict p95':>13}"
          f"{'model call p50':>16}{'handler p50':>13}{'Health p50':>12}")
    results = {}
    for name, path, sample, calibration in (
            ("mobilenetv2", models / "mobilenetv2.tflite", mobilenet_sample, mobilenet_calibration),
            ("digits", models / "digits.tflite", digits_sample, digits_calibration)):
        r = compare(name, path, sample, calibration, args.threads, args.rounds, args.calls)
        results[name] = r
        print(f"{name:<14}{r['raw_p50_us']:>8.0f}µs{r['predict_p50_us']:>11.0f}µs{r['ratio']:>8.2f}{r['overhead_us']:>8.0f}µs"
              f"{r['raw_p95_us']:>8.0f}µs{r['predict_p95_us']:>11.0f}µs{r['agent_latency_p50_us']:>14.0f}µs"
              f"{r['handler_p50_us']:>11.0f}µs{r['health_p50_us']:>10.0f}µs")
    print("model call: the latency the agent reports (LoadedModel.predict: checks, (de)quantization, the interpreter lock)\n"
          "handler: the whole Predict handler (decode, model call, summary, drift, telemetry, encode) called in-process,\n"
          "         without gRPC; Health: an empty RPC over the same socket, the gRPC transport floor of this machine")
    rest = idle(models / "mobilenetv2.tflite", args.threads, args.idle_s, mobilenet_calibration)
    print(f"idle serving process with MobileNetV2 loaded: RSS {rest['rss_mb']:.1f} MB, "
          f"CPU {rest['cpu_percent']:.2f} % of a core over {args.idle_s:g} s")
    checks = [
        ("MobileNetV2 p50 ratio", results["mobilenetv2"]["ratio"], TARGET_RATIO, f"{results['mobilenetv2']['ratio']:.2f} (target <= {TARGET_RATIO})"),
        ("digits p50 overhead", results["digits"]["overhead_us"], TARGET_OVERHEAD_US, f"{results['digits']['overhead_us']:.0f} µs (target <= {TARGET_OVERHEAD_US:.0f} µs)"),
        ("idle RSS", rest["rss_mb"], TARGET_RSS_MB, f"{rest['rss_mb']:.1f} MB (target <= {TARGET_RSS_MB:.0f} MB)"),
        ("idle CPU", rest["cpu_percent"], TARGET_IDLE_CPU, f"{rest['cpu_percent']:.2f} % (target <= {TARGET_IDLE_CPU:.0f} %)"),
    ]
    for label, value, target, text in checks:
        print(f"{'PASS' if value <= target else 'MISS'}  {label}: {text}")


if __name__ == "__main__":
    main()

"""A stand-in for `python -m coordinator.optimize.worker`: same arguments, same JSON lines, no TensorFlow.

What it does is decided by the model file it is given (a JSON object), so each test says it in its upload:
    {"mode": "ok", "variants": [...]}     progress, one variant event per entry, the result, exit 0
    {"mode": "input_error", "message"}     an input error event, exit 2
    {"mode": "internal_error"}             an internal error event, exit 1
    {"mode": "crash"}                      a traceback on stderr, exit 1, no event
    {"mode": "hang"}                       one progress event, then waits to be killed
    {"mode": "result_then_die"}            the result, then killed by SIGKILL
    {"mode": "bad_artifact"}               a variant whose artifact does not hash to its sha256
Every call appends its arguments to <workdir>/calls.jsonl.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import sys
import threading
from pathlib import Path


def main() -> int:
    p = argparse.ArgumentParser()
    for name in ("--model", "--data", "--workdir", "--recipe", "--task", "--spec"):
        p.add_argument(name)
    args = p.parse_args()
    workdir = Path(args.workdir)
    (workdir / "artifacts").mkdir(parents=True, exist_ok=True)
    with open(workdir / "calls.jsonl", "a") as f:
        f.write(json.dumps({**vars(args), "model_name": Path(args.model).name, "model_bytes": Path(args.model).read_text()}) + "\n")
    spec = json.loads(Path(args.model).read_text())
    mode = spec.get("mode", "ok")

    def emit(event: dict) -> None:
        sys.stdout.write(json.dumps(event) + "\n")
        sys.stdout.flush()

    sys.stdout.write("a line that is not JSON\n")
    emit({"event": "progress", "step": "load data", "done": 0, "total": 0})
    if mode == "input_error":
        emit({"event": "error", "kind": "input", "message": spec.get("message", "model.keras is not a Keras model")})
        return 2
    if mode == "internal_error":
        emit({"event": "error", "kind": "internal", "message": "RuntimeError: boom"})
        return 1
    if mode == "crash":
        sys.stderr.write("Traceback (most recent call last):\nMemoryError: out of memory in the fake worker\n")
        return 1
    if mode == "hang":
        threading.Event().wait()  # until killed
        return 0
    variants = []
    entries = spec.get("variants") or [
        {"id": "fp32", "technique": "fp32", "metric": 0.95, "bytes": "fp32 bytes"},
        {"id": "int8", "technique": "int8", "metric": 0.94, "bytes": "int8 bytes"},
        {"id": "pca_int8", "technique": "pca", "skipped": "pca applies to 1-D feature-vector inputs"},
        {"id": "qat_int8", "technique": "qat", "error": "ValueError: qat broke"},
    ]
    for i, e in enumerate(entries):
        emit({"event": "progress", "step": e["id"], "technique": e["technique"], "done": i, "total": len(entries)})
        row = {
            "id": e["id"], "technique": e["technique"], "params": {"samples": 300}, "metric_name": "accuracy",
            "edgetpu": {"status": "not_applicable", "detail": "", "mapped_fraction": 0.0, "compiled_sha256": None},
            "figures": {}, "ops": [], "error": e.get("error"), "skipped": e.get("skipped"),
        }
        if "bytes" in e:
            data = e["bytes"].encode()
            sha = hashlib.sha256(data).hexdigest()
            path = workdir / "artifacts" / f"{sha}.tflite"
            path.write_bytes(data)
            if mode == "bad_artifact":
                path.write_bytes(b"tampered")
            row.update(
                sha256=sha, path=str(path), size_bytes=len(data), gzip_bytes=len(data) // 2, metric=e["metric"],
                latency_p50_ms=0.01, latency_p95_ms=0.02, peak_memory_bytes=4096, ops=["CONV_2D", "FULLY_CONNECTED"],
                input_dtype="int8" if "int8" in e["id"] else "float32", output_dtype="float32",
                input_quant={"scale": 0.5, "zero_point": -3} if "int8" in e["id"] else None,
                input_shape=[1, 8, 8, 1], output_shape=[1, 10], figures={"macs": 1000.0, "sparsity": 0.0},
                edgetpu={"status": "compatible" if "int8" in e["id"] else "not_applicable",
                         "detail": "compatible, not compiled: compiler not installed" if "int8" in e["id"] else "",
                         "mapped_fraction": 1.0 if "int8" in e["id"] else 0.0, "compiled_sha256": None},
            )
        variants.append(row)
        emit({"event": "variant", **row})
    emit({"event": "progress", "step": "done", "done": len(entries), "total": len(entries)})
    result = {
        "model_sha256": "m", "data_sha256": "d", "source_format": "keras", "model_flavor": "tf_keras",
        "task": args.task or "classification", "metric_name": "accuracy", "recipe": args.recipe, "baseline_id": "fp32",
        "input_shape": [None, 8, 8, 1], "n_outputs": 10, "variants": variants, "reused": [], "notes": ["a note"],
        "elapsed_s": 0.1,
    }
    emit({"event": "result", **result})
    if mode == "result_then_die":
        os.kill(os.getpid(), signal.SIGKILL)
    return 0


if __name__ == "__main__":
    sys.exit(main())

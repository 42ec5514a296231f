"""`edgectl model` against a real coordinator (and a private mosquitto) with the real optimizer worker:
push a small trained model, wait for its variants, show, export and re-evaluate one independently with
LiteRT, plot, and the bad inputs a push must refuse (nothing stored lost, pushes idempotent)."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.fleet import CoordinatorProcess, base_env
from tests.mosquitto import MosquittoProcess

BROKER_CONF = "listener {port} 127.0.0.1\nallow_anonymous true\n"
SIZE_LIMIT = 2 * 1024 * 1024  # the digits CNN is ~0.5 MB as .keras

@pytest.fixture(scope="module")
def digits(pytestconfig) -> tuple[Path, Path]:
    """(digits.keras, digits.npz): a tiny tf-keras CNN on sklearn's digits, cached between runs."""
    cache = Path(pytestconfig.cache.mkdir("edgefleet-models-integration-v1"))
    model, data = cache / "digits.keras", cache / "digits.npz"
    if not (model.exists() and data.exists()):
        env = base_env(TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2")
        res = subprocess.run([sys.executable, "-m", "coordinator.samples", str(cache)], env=env, capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stderr[-3000:]
    return model, data


@pytest.fixture(scope="module")
def coord(tmp_path_factory):
    broker = MosquittoProcess(BROKER_CONF, tmp_path_factory.mktemp("broker")).start()
    c = CoordinatorProcess(
        tmp_path_factory.mktemp("coord"), f"mqtt://127.0.0.1:{broker.port}",
        extra_env={"EDGEFLEET_MODELS__MAX_MODEL_BYTES": str(SIZE_LIMIT)},
    ).start()
    yield c
    c.stop()
    broker.stop()


def last_error_line(res: subprocess.CompletedProcess) -> str:
    assert res.returncode == 1, (res.returncode, res.stdout, res.stderr)
    assert "Traceback" not in res.stderr + res.stdout
    line = res.stderr.strip().splitlines()[-1]
    assert line.startswith("edgectl: error: ")
    return line


def evaluate(tflite: Path, x: np.ndarray, y: np.ndarray) -> float:
    """Accuracy of a .tflite on (x, y), written here from LiteRT's API alone (not the optimizer's code)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(tflite), num_threads=1)
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    scale, zero = inp["quantization"]
    correct = 0
    for sample, label in zip(x, y):
        row = sample[None].astype(np.float32)
        if scale:
            info = np.iinfo(inp["dtype"])
            row = np.clip(np.round(row / scale + zero), info.min, info.max)
        interpreter.set_tensor(inp["index"], row.astype(inp["dtype"]))
        interpreter.invoke()
        correct += int(np.argmax(interpreter.get_tensor(out["index"])[0]) == label)  # argmax survives dequantization
    return correct / len(y)


@pytest.mark.slow
def test_push_show_export_plot_and_bad_inputs(coord, digits, tmp_path):
    model, data = digits
    recipe = tmp_path / "fast.toml"
    recipe.write_text('techniques = ["fp32", "int8"]\n')
    push = ["model", "push", str(model), "--name", "digits", "--data", str(data), "--recipe", str(recipe)]

    res = coord.edgectl(*push, "-o", "json", timeout=180)
    pushed = json.loads(res.stdout)
    assert (pushed["name"], pushed["version"], pushed["state"], pushed["existing"]) == ("digits", "1", "ready", False)
    assert "+ int8:" in res.stderr  # each variant reported as it finished

    shown = json.loads(coord.edgectl("model", "show", "digits:1", "-o", "json").stdout)
    assert (shown["task"], shown["metric_name"], shown["source_format"], shown["model_flavor"]) == ("classification", "accuracy", "keras", "tf_keras")
    variants = {v["id"]: v for v in shown["variants"]}
    assert set(variants) == {"fp32", "int8"}
    for v in variants.values():
        assert not v["error"] and not v["skipped"], v
        assert v["size_bytes"] > 0 and v["gzip_bytes"] > 0 and v["latency_p50_ms"] > 0 and v["peak_memory_bytes"] > 0
        assert 0.8 < v["metric"] <= 1.0, v
    int8 = variants["int8"]
    assert int8["input_dtype"] == "int8" and int8["inputs"][0]["scale"] > 0
    assert int8["size_bytes"] < variants["fp32"]["size_bytes"]
    assert int8["edgetpu"]["status"] in ("compatible", "compiled", "incompatible") and int8["edgetpu"]["detail"]
    table = coord.edgectl("model", "show", "digits:1").stdout
    assert f"{int8['metric']:.4f}" in table  # the table shows the figure the JSON has

    # Export, check the bytes, and measure the artifact independently on the validation split.
    out = tmp_path / "digits-int8.tflite"
    coord.edgectl("model", "export", "digits:1", "--variant", "int8", "--out", str(out))
    assert hashlib.sha256(out.read_bytes()).hexdigest() == int8["sha256"]
    with np.load(data) as npz:
        x_val, y_val = npz["x_val"], npz["y_val"]
    assert evaluate(out, x_val, y_val) == pytest.approx(int8["metric"], abs=1e-9)
    artifact = coord.data_dir / "artifacts" / int8["sha256"]
    assert artifact.read_bytes() == out.read_bytes()  # content-addressed under <data_dir>/artifacts

    png = tmp_path / "digits.png"
    coord.edgectl("model", "plot", "digits:1", "--out", str(png))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # The same bytes again: the existing version, nothing rebuilt.
    again = json.loads(coord.edgectl(*push, "-o", "json").stdout)
    assert (again["version"], again["existing"], again["job_id"]) == ("1", True, pushed["job_id"])

    # Not a model: the worker's reason reaches edgectl as one line; the version is failed, not ready.
    junk = tmp_path / "junk.keras"
    junk.write_bytes(b"this is not a model")
    line = last_error_line(coord.edgectl("model", "push", str(junk), "--name", "digits", "--data", str(data), check=False, timeout=120))
    assert "junk.keras is not a Keras model" in line, line
    assert json.loads(coord.edgectl("model", "show", "digits:2", "-o", "json").stdout)["state"] == "failed"

    # .npz missing arrays: refused at upload.
    with np.load(data) as npz:
        np.savez(tmp_path / "partial.npz", x_train=npz["x_train"], y_train=npz["y_train"], x_val=npz["x_val"])
    line = last_error_line(coord.edgectl("model", "push", str(model), "--name", "partial", "--data", str(tmp_path / "partial.npz"), check=False))
    assert "partial.npz is missing array(s) y_val" in line

    # Over the configured size limit: refused while uploading, before any worker runs.
    huge = tmp_path / "huge.keras"
    with open(huge, "wb") as f:
        f.write(os.urandom(SIZE_LIMIT + 1))
    line = last_error_line(coord.edgectl("model", "push", str(huge), "--name", "huge", "--data", str(data), check=False))
    assert f"model huge.keras is over the configured size limit of {SIZE_LIMIT:,} bytes" in line

    # Nothing lost: version 1 is intact and still exports the same bytes; the refused pushes left no model.
    listed = json.loads(coord.edgectl("model", "list", "-o", "json").stdout)
    assert [(m["name"], m["version"], m["state"]) for m in listed] == [("digits", "1", "ready"), ("digits", "2", "failed")]
    assert json.loads(coord.edgectl("model", "show", "digits:1", "-o", "json").stdout)["variants"] == shown["variants"]
    assert artifact.read_bytes() == out.read_bytes()

    # The coordinator itself never loaded TensorFlow (the worker did, in its own process).
    maps = Path(f"/proc/{coord.process.proc.pid}/maps")
    if maps.exists():
        assert "tensorflow" not in maps.read_text()

"""agent.runtime: interpreter discovery, backend plugins (Edge TPU / GPU faked at load_delegate), and
LoadedModel on real LiteRT with tiny models built once by runtime_models.py (cached)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import threading
import types
from pathlib import Path

import numpy as np
import pytest

from agent.runtime import (
    InvalidInput,
    LoadedModel,
    ModelLoadError,
    RuntimeUnavailable,
    interpreter_class,
    loader,
    select_backend,
    tensor_specs,
)
from agent.runtime import gpu as gpu_plugin

BUILDER = Path(__file__).with_name("runtime_models.py")
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def models(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Directory with the test models, built in a subprocess once per builder version."""
    digest = hashlib.sha256(BUILDER.read_bytes()).hexdigest()[:16]
    cache = getattr(request.config, "cache", None)  # absent under -p no:cacheprovider
    root = Path(cache.mkdir("edgefleet-runtime-models")) if cache is not None else tmp_path_factory.mktemp("models")
    target = root / digest
    if (target / "reference.npz").is_file():
        return target
    staging = root / f"{digest}.tmp-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    result = subprocess.run([sys.executable, str(BUILDER), str(staging)], capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, f"building test models failed:\n{result.stderr[-4000:]}"
    try:
        staging.rename(target)  # atomic: a parallel run sees all models or none
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)  # another run got there first
    return target


@pytest.fixture(scope="session")
def reference(models: Path) -> tuple[np.ndarray, np.ndarray]:
    data = np.load(models / "reference.npz")
    return data["w"], data["b"]


@pytest.fixture
def fresh_runtime():
    """Forget the cached runtime before and after, so a test can fake what is importable."""
    loader.runtime.cache_clear()
    yield
    loader.runtime.cache_clear()


# -- loader -------------------------------------------------------------------------------------


def test_interpreter_class_prefers_ai_edge_litert(fresh_runtime) -> None:
    from ai_edge_litert import interpreter as litert

    cls, name, version = interpreter_class()
    assert cls is litert.Interpreter
    assert name == "ai-edge-litert"
    import importlib.metadata

    assert version == importlib.metadata.version("ai-edge-litert")


def _fake_import(available: dict[str, types.ModuleType]):
    def import_module(name: str):
        if name in available:
            return available[name]
        raise ModuleNotFoundError(f"No module named {name!r}")

    return import_module


def test_falls_back_to_tflite_runtime(fresh_runtime, monkeypatch) -> None:
    fake = types.ModuleType("tflite_runtime.interpreter")

    class Interpreter:  # noqa: D401 - stand-in
        pass

    fake.Interpreter = Interpreter
    fake.load_delegate = lambda library, options=None: ("delegate", library)
    monkeypatch.setattr(loader.importlib, "import_module", _fake_import({"tflite_runtime.interpreter": fake}))
    cls, name, _ = interpreter_class()
    assert cls is Interpreter and name == "tflite_runtime"
    assert loader.load_delegate("libx.so") == ("delegate", "libx.so")


def test_last_resort_is_tf_lite_from_full_tensorflow(fresh_runtime, monkeypatch) -> None:
    # `import tensorflow.lite` is TF's internal package; the public API is the tf.lite attribute.
    class Interpreter:
        pass

    tf = types.ModuleType("tensorflow")
    tf.__version__ = "9.9"
    tf.lite = types.SimpleNamespace(Interpreter=Interpreter, experimental=types.SimpleNamespace(
        load_delegate=lambda library, options=None: ("tf-delegate", library)))
    monkeypatch.setattr(loader.importlib, "import_module", _fake_import({"tensorflow": tf}))
    cls, name, _ = interpreter_class()
    assert cls is Interpreter and name == "tensorflow.lite"
    assert loader.load_delegate("liby.so") == ("tf-delegate", "liby.so")


def test_no_runtime_is_a_clear_error(fresh_runtime, monkeypatch) -> None:
    monkeypatch.setattr(loader.importlib, "import_module", _fake_import({}))
    with pytest.raises(RuntimeUnavailable) as err:
        interpreter_class()
    text = str(err.value)
    assert "pip install ai-edge-litert" in text
    for module in ("ai_edge_litert.interpreter", "tflite_runtime.interpreter", "tensorflow"):
        assert f"No module named {module!r}" in text


def test_agent_runtime_never_imports_tensorflow(models: Path) -> None:
    code = (
        "import sys\n"
        "import agent.runtime, agent.outbox, agent.telemetry.histogram\n"
        "from agent.runtime import LoadedModel\n"
        f"m = LoadedModel.load({str(models / 'float32.tflite')!r})\n"
        "m.predict({'features': [0.0, 1.0, 2.0, 3.0]})\n"
        "heavy = sorted(n for n in sys.modules if n.split('.')[0] in ('tensorflow', 'tf_keras', 'keras', 'coordinator'))\n"
        "print(heavy)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


# -- backends -----------------------------------------------------------------------------------


class FakeInterpreter:
    """Records how the plugin builds the interpreter; never runs anything."""

    created: list[dict] = []

    def __init__(self, **kwargs) -> None:
        FakeInterpreter.created.append(kwargs)


@pytest.fixture
def fake_delegates(fresh_runtime, monkeypatch):
    """A runtime whose load_delegate answers from `present` (library -> sentinel); missing ones fail
    the way ai-edge-litert does (OSError from ctypes, or ValueError when no delegate is made)."""
    present: dict[str, object] = {}
    calls: list[tuple[str, dict | None]] = []
    failures: dict[str, BaseException] = {}

    def load_delegate(library: str, options=None):
        calls.append((library, options))
        if library in present:
            return present[library]
        raise failures.get(library, OSError(f"{library}: cannot open shared object file: No such file or directory"))

    FakeInterpreter.created = []
    monkeypatch.setattr(loader, "runtime", lambda: loader.Runtime(FakeInterpreter, load_delegate, "fake", "1.0"))
    return types.SimpleNamespace(present=present, calls=calls, failures=failures)


def test_cpu_when_no_accelerator(fake_delegates) -> None:
    backend = select_backend([])
    assert backend.key == "cpu"
    assert backend.reason == ""
    assert backend.delegates == ()
    assert fake_delegates.calls == []


def test_edgetpu_delegate_passed_to_interpreter(fake_delegates) -> None:
    sentinel = object()
    fake_delegates.present["libedgetpu.so.1"] = sentinel
    backend = select_backend(["edgetpu"], preferred=None, requires_delegate="edgetpu", num_threads=2,
                             delegate_options={"edgetpu": {"device": "usb"}})
    assert backend.key == "edgetpu" and backend.delegate_library == "libedgetpu.so.1"
    assert fake_delegates.calls == [("libedgetpu.so.1", {"device": "usb"})]
    backend.create_interpreter("m.tflite")
    assert FakeInterpreter.created == [
        {"model_path": "m.tflite", "experimental_delegates": [sentinel], "num_threads": 2}]


def test_edgetpu_library_missing_falls_back_to_cpu_with_reason(fake_delegates) -> None:
    backend = select_backend(["edgetpu"], requires_delegate="edgetpu")
    assert backend.key == "cpu"
    assert backend.reason == "edgetpu: libedgetpu.so.1 not found; running on CPU"
    backend.create_interpreter("m.tflite")
    assert "experimental_delegates" not in FakeInterpreter.created[-1]


def test_edgetpu_library_without_device_reports_the_runtime_message(fake_delegates) -> None:
    fake_delegates.failures["libedgetpu.so.1"] = ValueError("Failed to load delegate from libedgetpu.so.1\n")
    backend = select_backend(["edgetpu"], requires_delegate="edgetpu")
    assert backend.key == "cpu"
    assert "libedgetpu.so.1 gave no delegate: Failed to load delegate from libedgetpu.so.1" in backend.reason


def test_edgetpu_not_in_profile_is_not_tried(fake_delegates) -> None:
    backend = select_backend([], requires_delegate="edgetpu")
    assert backend.key == "cpu"
    assert backend.reason == "edgetpu: no Edge TPU in the hardware profile; running on CPU"
    assert fake_delegates.calls == []


def test_edgetpu_is_not_used_for_a_model_not_compiled_for_it(fake_delegates) -> None:
    fake_delegates.present["libedgetpu.so.1"] = object()
    backend = select_backend(["edgetpu"])
    assert backend.key == "cpu"
    assert "not compiled for the Edge TPU" in backend.reason
    assert fake_delegates.calls == []


def test_gpu_tries_each_known_library(fake_delegates) -> None:
    first, second = gpu_plugin.DEFAULT_LIBRARIES[:2]
    sentinel = object()
    fake_delegates.present[second] = sentinel
    backend = select_backend(["gpu"])
    assert backend.key == "gpu" and backend.delegate_library == second
    assert [library for library, _ in fake_delegates.calls] == [first, second]
    backend.create_interpreter("m.tflite")
    assert FakeInterpreter.created[-1]["experimental_delegates"] == [sentinel]


def test_gpu_missing_everywhere_falls_back_with_every_reason(fake_delegates) -> None:
    backend = select_backend(["gpu"])
    assert backend.key == "cpu"
    for library in gpu_plugin.DEFAULT_LIBRARIES:
        assert f"{library} not found" in backend.reason
    assert backend.reason.startswith("gpu: ") and backend.reason.endswith("; running on CPU")


def test_gpu_not_tried_without_a_gpu_in_the_profile(fake_delegates) -> None:
    fake_delegates.present[gpu_plugin.DEFAULT_LIBRARIES[0]] = object()
    assert select_backend([]).key == "cpu"
    assert fake_delegates.calls == []


def test_preferred_cpu_skips_the_gpu(fake_delegates) -> None:
    fake_delegates.present[gpu_plugin.DEFAULT_LIBRARIES[0]] = object()
    backend = select_backend(["gpu"], preferred="cpu", num_threads=3)
    assert backend.key == "cpu" and backend.num_threads == 3
    assert fake_delegates.calls == []


def test_unknown_preference_and_unknown_required_delegate(fake_delegates) -> None:
    with pytest.raises(ValueError, match="unknown runtime backend 'tpu'"):
        select_backend([], preferred="tpu")
    backend = select_backend([], requires_delegate="hexagon")
    assert backend.key == "cpu"
    assert "hexagon: no runtime plugin" in backend.reason


def test_real_missing_edgetpu_library_is_reported_quietly(fresh_runtime, capfd) -> None:
    import ctypes.util

    if ctypes.util.find_library("edgetpu"):
        pytest.skip("libedgetpu is installed here")
    backend = select_backend(["edgetpu"], requires_delegate="edgetpu")
    assert backend.key == "cpu"
    assert backend.reason == "edgetpu: libedgetpu.so.1 not found; running on CPU"
    # ai-edge-litert's Delegate.__del__ would print "Exception ignored in ..." for the failed load.
    assert "Exception ignored" not in capfd.readouterr().err


# -- LoadedModel ---------------------------------------------------------------------------------


def test_float_model_matches_numpy(models: Path, reference) -> None:
    w, b = reference
    model = LoadedModel.load(models / "float32.tflite")
    assert [(s.name, list(s.shape), s.dtype) for s in model.inputs] == [("features", [-1, 4], "float32")]
    assert [(s.name, list(s.shape), s.dtype) for s in model.outputs] == [("logits", [-1, 3], "float32")]
    assert model.load_ms > 0
    x = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    out = model.predict({"features": x})
    np.testing.assert_allclose(out["logits"], x @ w + b, rtol=1e-5, atol=1e-5)
    # batch size changes resize the interpreter; an implied batch of one is added
    single = model.predict({"features": x[2]})["logits"]
    assert single.shape == (1, 3)
    np.testing.assert_allclose(single[0], x[2] @ w + b, rtol=1e-5, atol=1e-5)
    again = model.predict({"features": x[:3].astype(np.float64)})["logits"]
    np.testing.assert_allclose(again, x[:3] @ w + b, rtol=1e-5, atol=1e-5)


def test_int8_model_quantizes_inputs_and_dequantizes_outputs(models: Path, reference) -> None:
    w, b = reference
    model = LoadedModel.load(models / "int8.tflite")
    (inp,), (out,) = model.input_bindings, model.output_bindings
    assert inp.dtype == np.int8 and inp.scale > 0 and out.dtype == np.int8 and out.scale > 0
    assert model.inputs[0].scale == pytest.approx(inp.scale) and model.inputs[0].zero_point == inp.zero_point
    x = np.random.default_rng(1).uniform(-1, 1, size=(50, 4)).astype(np.float32)
    got = np.concatenate([model.predict({"features": row})["logits"] for row in x])
    assert got.dtype == np.float32
    # The int8 output covers only the range seen in calibration: compare with the clipped reference.
    low, high = (-128 - out.zero_point) * out.scale, (127 - out.zero_point) * out.scale
    expected = np.clip(x @ w + b, low, high)
    tolerance = 2 * out.scale + inp.scale * np.abs(w).sum(axis=0).max()
    assert np.abs(got - expected).max() <= tolerance
    # Raw int8 values pass unchanged: the same result as the float they encode.
    q = np.clip(np.round(x[0] / inp.scale) + inp.zero_point, -128, 127).astype(np.int8)
    np.testing.assert_array_equal(model.predict({"features": q})["logits"], got[:1])


def test_two_inputs_by_signature_name(models: Path) -> None:
    model = LoadedModel.load(models / "two_inputs.tflite")
    assert sorted(s.name for s in model.inputs) == ["a", "b"]
    assert sorted(s.name for s in model.outputs) == ["joined", "total"]
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(4, 3)).astype(np.float32), rng.normal(size=(4, 2)).astype(np.float32)
    out = model.predict({"b": b, "a": a})
    np.testing.assert_allclose(out["total"][:, 0], a.sum(1) + 2 * b.sum(1), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out["joined"], np.concatenate([a, b], axis=1), rtol=1e-6)


def test_inconsistent_batch_sizes_are_invalid_input_and_leave_the_model_usable(models: Path) -> None:
    model = LoadedModel.load(models / "two_inputs.tflite")
    bad = {"a": np.zeros((4, 3), np.float32), "b": np.zeros((3, 2), np.float32)}
    for _ in range(2):  # the same bad request twice: still a clear error, not a crash
        with pytest.raises(InvalidInput, match="cannot run on inputs shaped .*'a' \\[4, 3\\]"):
            model.predict(bad)
    out = model.predict({"a": np.ones((3, 3), np.float32), "b": np.ones((3, 2), np.float32)})
    np.testing.assert_allclose(out["total"][:, 0], [7.0, 7.0, 7.0])


@pytest.mark.parametrize(
    ("model_name", "inputs", "fragments"),
    [
        ("two_inputs", {"a": np.zeros((1, 3), np.float32)}, ["missing input 'b'", "'a'"]),
        ("two_inputs", {"a": np.zeros((1, 3), np.float32), "b": np.zeros((1, 2), np.float32),
                        "c": np.zeros(1, np.float32)}, ["unknown input 'c'", "'a'", "'b'"]),
        ("float32", {"features": np.zeros((2, 5), np.float32)},
         ["input 'features'", "expected shape [?, 4]", "got [2, 5]"]),
        ("float32", {"features": np.zeros((1, 4), np.int64)}, ["input 'features'", "float", "got int64"]),
        ("float32", {"features": [[1.0, 2.0], [3.0]]}, ["input 'features'", "not an array"]),
        ("int8", {"features": np.zeros((2, 4), np.float32)}, ["expected shape [1, 4]", "or [4] with the batch implied"]),
        ("int8", {"features": np.zeros((1, 4), np.int32)}, ["input 'features'", "int8", "got int32"]),
        ("int8", {"features": np.array([[0.1, np.nan, 0.0, 0.0]], np.float32)}, ["NaN or infinite"]),
    ],
)
def test_invalid_input_names_the_tensor(models: Path, model_name: str, inputs: dict, fragments: list[str]) -> None:
    model = LoadedModel.load(models / f"{model_name}.tflite")
    with pytest.raises(InvalidInput) as err:
        model.predict(inputs)
    for fragment in fragments:
        assert fragment in str(err.value)


def test_unknown_op_is_a_model_load_error(models: Path) -> None:
    with pytest.raises(ModelLoadError, match="custom_op.tflite.*BesselI0e"):
        LoadedModel.load(models / "custom_op.tflite")


def test_garbage_and_missing_files_are_model_load_errors(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.tflite"
    garbage.write_bytes(b"not a flatbuffer at all" * 10)
    with pytest.raises(ModelLoadError, match="garbage.tflite"):
        LoadedModel.load(garbage)
    with pytest.raises(ModelLoadError, match="no such file"):
        LoadedModel.load(tmp_path / "absent.tflite")


def test_load_error_names_the_backend_reason(models: Path, fresh_runtime) -> None:
    # A model "compiled for the Edge TPU" on a device whose libedgetpu is missing: the op is unresolved,
    # and the error says why the delegate was not there.
    backend = select_backend(["edgetpu"], requires_delegate="edgetpu")
    if backend.key != "cpu":
        pytest.skip("libedgetpu is installed here")
    with pytest.raises(ModelLoadError) as err:
        LoadedModel.load(models / "custom_op.tflite", backend)
    assert "edgetpu: libedgetpu.so.1 not found" in str(err.value)


def test_concurrent_predict_each_gets_its_own_answer(models: Path, reference) -> None:
    w, b = reference
    model = LoadedModel.load(models / "float32.tflite")
    rng = np.random.default_rng(3)
    inputs = [rng.normal(size=(1 + i % 3, 4)).astype(np.float32) for i in range(8)]
    failures: list[str] = []
    start = threading.Barrier(len(inputs))

    def worker(x: np.ndarray) -> None:
        start.wait(timeout=10)
        for _ in range(200):
            got = model.predict({"features": x})["logits"]
            if got.shape != (len(x), 3) or not np.allclose(got, x @ w + b, atol=1e-4):
                failures.append(f"batch {len(x)} got a wrong answer")
                return

    threads = [threading.Thread(target=worker, args=(x,)) for x in inputs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not failures


def test_evaluate_accuracy_and_mae(models: Path, reference) -> None:
    w, b = reference
    model = LoadedModel.load(models / "float32.tflite")
    rng = np.random.default_rng(4)
    x = rng.normal(size=(300, 4)).astype(np.float32)
    labels = np.argmax(x @ w + b, axis=1)
    wrong = rng.random(300) < 0.2
    noisy = np.where(wrong, (labels + 1) % 3, labels)
    assert model.evaluate(x, noisy, "classification") == pytest.approx(1 - wrong.mean())
    assert model.evaluate(x, np.eye(3)[noisy], "classification") == pytest.approx(1 - wrong.mean())
    target = x @ w + b + rng.normal(scale=0.1, size=(300, 3))
    expected_mae = np.abs(target - (x @ w + b)).mean()
    assert model.evaluate(x, target, "regression") == pytest.approx(expected_mae, rel=1e-4)
    with pytest.raises(ValueError, match="unknown task"):
        model.evaluate(x, labels, "ranking")
    with pytest.raises(ValueError, match="300 samples but y has 299"):
        model.evaluate(x, labels[:-1], "classification")


def test_evaluate_fixed_batch_and_several_inputs(models: Path, reference) -> None:
    w, b = reference
    int8 = LoadedModel.load(models / "int8.tflite")
    x = np.random.default_rng(5).uniform(-1, 1, size=(40, 4)).astype(np.float32)
    labels = np.argmax(x @ w + b, axis=1)
    assert int8.evaluate(x, labels, "classification") >= 0.9  # quantization may flip near-ties only
    two = LoadedModel.load(models / "two_inputs.tflite")
    a, bb = x[:, :3], x[:, 2:]
    total = a.sum(1) + 2 * bb.sum(1)
    # "total" or "joined" may come first; evaluate reads the first output, so build y for it.
    first = two.outputs[0].name
    y = total[:, None] if first == "total" else np.concatenate([a, bb], axis=1)
    assert two.evaluate({"a": a, "b": bb}, y, "regression") == pytest.approx(0.0, abs=1e-5)
    with pytest.raises(InvalidInput, match="several inputs"):
        two.evaluate(a, y, "regression")


def test_benchmark_and_specs(models: Path) -> None:
    model = LoadedModel.load(models / "int8.tflite")
    figures = model.benchmark(runs=20, warmup=2)
    assert set(figures) >= {"load_ms", "p50_ms", "p95_ms", "peak_rss_bytes"}
    assert 0 < figures["p50_ms"] <= figures["p95_ms"]
    assert figures["peak_rss_bytes"] > 10 * 2**20
    model.invoke_raw()
    interpreter_cls, _, _ = interpreter_class()
    raw = interpreter_cls(model_path=str(models / "two_inputs.tflite"))
    raw.allocate_tensors()
    inputs, outputs = tensor_specs(raw)
    two = LoadedModel.load(models / "two_inputs.tflite")
    assert inputs == two.inputs and outputs == two.outputs


def test_closed_model_refuses_work(models: Path) -> None:
    model = LoadedModel.load(models / "float32.tflite")
    model.close()
    with pytest.raises(RuntimeError, match="float32.tflite was closed"):
        model.predict({"features": np.zeros(4, np.float32)})


def test_profile_in_a_child_process(models: Path) -> None:
    from agent.runtime.profiling import profile

    figures = profile(models / "float32.tflite", runs=20, warmup=2)
    assert figures["backend"] == "cpu"
    assert 0 < figures["p50_ms"] <= figures["p95_ms"]
    assert figures["load_ms"] > 0
    assert figures["peak_rss_bytes"] >= figures["baseline_rss_bytes"] > 0
    with pytest.raises(ModelLoadError, match="BesselI0e"):
        profile(models / "custom_op.tflite")


# -- memory ---------------------------------------------------------------------------------------


def _mapping_rss_kb(path: Path) -> int:
    target, total, inside = str(path.resolve()), 0, False
    with open("/proc/self/smaps") as smaps:
        for line in smaps:
            if "-" in line.split(" ", 1)[0] and len(line.split()) >= 5 and ":" not in line.split()[0]:
                inside = line.rstrip("\n").endswith(target)
            elif inside and line.startswith("Rss:"):
                total += int(line.split()[1])
    return total


@pytest.mark.skipif(not Path("/proc/self/smaps").exists(), reason="needs Linux /proc")
def test_drop_file_pages_leaves_the_contents_readable(tmp_path: Path) -> None:
    import mmap

    from agent.runtime.memory import drop_file_pages

    path = tmp_path / "weights.bin"
    data = np.random.default_rng(0).integers(0, 255, size=4 << 20, dtype=np.uint8).tobytes()
    path.write_bytes(data)
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ) as mapped:
        assert mapped[:] == data  # every page touched: resident
        assert _mapping_rss_kb(path) >= 4000
        assert drop_file_pages(path) >= len(data)
        assert _mapping_rss_kb(path) < 100
        assert mapped[:] == data  # read back from the page cache, unchanged
    assert drop_file_pages(tmp_path / "not-mapped") == 0


def test_trim_heap_runs() -> None:
    from agent.runtime.memory import trim_heap

    assert trim_heap() in (True, False)  # glibc: whether it released pages; elsewhere a no-op


def test_limit_malloc_arenas_checks_its_argument() -> None:
    from agent.runtime.memory import limit_malloc_arenas

    with pytest.raises(ValueError, match="at least 1"):
        limit_malloc_arenas(0)
    import platform

    if platform.libc_ver()[0] == "glibc":
        # Re-setting glibc's default (8 per core) keeps this test process as it was.
        assert limit_malloc_arenas(8 * (os.cpu_count() or 1))


def test_benchmark_percentile_matches_numpys_linear_rule() -> None:
    from agent.runtime.model import _percentile

    for values in ([3.0], [1.0, 2.0], [5.0, 1.0, 4.0, 2.0, 3.0], [0.1 * i * i for i in range(37)]):
        for q in (0, 50, 95, 99, 100):
            assert _percentile(list(values), q) == pytest.approx(float(np.percentile(values, q)), rel=1e-12, abs=1e-15)

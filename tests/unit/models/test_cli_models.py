"""`edgectl model ...` (the real console script, as a subprocess) against the real ModelAdmin gRPC area in
this process, with the fake optimizer worker: push, watch, list, show, plot, export, and their refusals."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from concurrent import futures
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

import grpc
import numpy as np
import pytest

from coordinator.api.models import ModelAdmin
from coordinator.config import CoordinatorConfig
from edgefleet.v1 import admin_pb2_grpc
from tests.unit.models.conftest import FAKE_WORKER, digits_like, fake_model

EDGECTL = Path(sys.executable).parent / "edgectl"


class ModelsOnly(ModelAdmin, admin_pb2_grpc.AdminServicer):
    def __init__(self, ctx):
        self.ctx = ctx
        self.setup_area()


@pytest.fixture
def server(tmp_path):
    from coordinator.store.db import Store

    cfg = CoordinatorConfig.model_validate({
        "data_dir": str(tmp_path / "coord"),
        "models": {"worker_command": " ".join(FAKE_WORKER), "max_model_bytes": 20_000},
    })
    store = Store(f"sqlite:///{tmp_path / 'coord.db'}")
    svc = ModelsOnly(SimpleNamespace(cfg=cfg, store=store, clock=lambda: datetime.now(timezone.utc)))
    grpc_server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    admin_pb2_grpc.add_AdminServicer_to_server(svc, grpc_server)
    port = grpc_server.add_insecure_port("127.0.0.1:0")
    grpc_server.start()
    svc.start_models()
    yield SimpleNamespace(address=f"127.0.0.1:{port}", svc=svc, data_dir=cfg.data_path)
    grpc_server.stop(grace=None)
    svc.stop_models()
    store.close()


@pytest.fixture
def files(tmp_path):
    d = tmp_path / "files"
    d.mkdir()
    np.savez(d / "digits.npz", **digits_like())
    (d / "digits.keras").write_bytes(fake_model("ok"))
    (d / "broken.keras").write_bytes(fake_model("input_error", message="broken.keras is not a Keras model: a .keras file is a zip archive and this is not one"))
    (d / "fast.toml").write_text('techniques = ["fp32", "int8"]\n')
    return d


def edgectl(server, tmp_path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEFLEET_")}
    env.update(HOME=str(tmp_path), EDGEFLEET_COORDINATOR=server.address, EDGEFLEET_TOKEN="t")
    return subprocess.run([str(EDGECTL), *args], env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60)


def ok(res: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert res.returncode == 0, (res.returncode, res.stdout, res.stderr)
    return res


def error_line(res: subprocess.CompletedProcess[str]) -> str:
    assert res.returncode == 1, (res.returncode, res.stdout, res.stderr)
    assert "Traceback" not in res.stderr
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("edgectl: error: ")
    return last


def test_push_watch_show_export_plot(server, files, tmp_path):
    res = ok(edgectl(server, tmp_path, "model", "push", str(files / "digits.keras"), "--name", "digits", "--data", str(files / "digits.npz"),
                     "--recipe", str(files / "fast.toml"), "-o", "json"))
    pushed = json.loads(res.stdout)
    assert (pushed["name"], pushed["version"], pushed["state"], pushed["existing"], pushed["recipe"]) == ("digits", "1", "ready", False, "fast.toml")
    assert "+ int8:" in res.stderr and "- pca_int8: skipped" in res.stderr and "x qat_int8: failed: ValueError: qat broke" in res.stderr

    shown = json.loads(ok(edgectl(server, tmp_path, "model", "show", "digits:1", "-o", "json")).stdout)
    by_id = {v["id"]: v for v in shown["variants"]}
    assert set(by_id) == {"fp32", "int8", "pca_int8", "qat_int8"}
    int8 = by_id["int8"]
    assert (int8["technique"], int8["size_bytes"], int8["metric"], int8["latency_p50_ms"]) == ("int8", 10, 0.94, 0.01)
    assert int8["edgetpu"]["status"] == "compatible"
    assert int8["inputs"][0]["dtype"] == "int8" and int8["inputs"][0]["scale"] == 0.5 and int8["params"] == {"samples": "300"}
    assert by_id["pca_int8"]["skipped"].startswith("pca applies") and by_id["qat_int8"]["error"] == "ValueError: qat broke"

    table = ok(edgectl(server, tmp_path, "model", "show", "digits")).stdout
    assert "digits:1  ready" in table and "ACCURACY" in table
    rows = {line.split()[0]: line for line in table.splitlines()[table.splitlines().index(next(l for l in table.splitlines() if l.startswith("ID"))) + 1:]}
    assert "0.9400" in rows["int8"] and "compatible" in rows["int8"] and "10 B" in rows["int8"]
    assert "skipped: pca applies" in rows["pca_int8"] and "error: ValueError: qat broke" in rows["qat_int8"]

    listed = ok(edgectl(server, tmp_path, "model", "list")).stdout
    assert "digits" in listed and "2/4" in listed and "accuracy 0.9500 (fp32)" in listed

    out = tmp_path / "int8.tflite"
    ok(edgectl(server, tmp_path, "model", "export", "digits:1", "--variant", "int8", "--out", str(out)))
    assert hashlib.sha256(out.read_bytes()).hexdigest() == int8["sha256"]
    assert error_line(edgectl(server, tmp_path, "model", "export", "digits:1", "--variant", "pca_int8", "--out", str(tmp_path / "x"))).endswith(
        "variant pca_int8 of digits:1 cannot be exported: pca applies to 1-D feature-vector inputs")
    assert not (tmp_path / "x").exists()
    assert "has no variant 'nope' (variants: fp32, int8, pca_int8, qat_int8)" in error_line(
        edgectl(server, tmp_path, "model", "export", "digits:1", "--variant", "nope", "--out", str(tmp_path / "x")))

    png = tmp_path / "plot.png"
    ok(edgectl(server, tmp_path, "model", "plot", "digits:1", "--out", str(png)))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_export_refuses_bytes_that_do_not_match_the_digest(server, files, tmp_path):
    ok(edgectl(server, tmp_path, "model", "push", str(files / "digits.keras"), "-n", "digits", "-d", str(files / "digits.npz")))
    sha = server.svc.model_service.repository.get_variant("digits:1", "int8").sha256
    server.svc.model_service.artifacts.path(sha).write_bytes(b"rotten bits")  # disk corruption
    out = tmp_path / "int8.tflite"
    line = error_line(edgectl(server, tmp_path, "model", "export", "digits:1", "--variant", "int8", "--out", str(out)))
    assert "corrupt" in line
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".int8.tflite")]


def test_push_is_idempotent_and_versions_are_immutable(server, files, tmp_path):
    args = ["model", "push", str(files / "digits.keras"), "-n", "digits", "-d", str(files / "digits.npz")]
    first = json.loads(ok(edgectl(server, tmp_path, *args, "-o", "json")).stdout)
    again = ok(edgectl(server, tmp_path, *args, "-o", "json"))
    assert "digits:1 already holds these exact files" in again.stderr
    second = json.loads(again.stdout)
    assert (second["version"], second["existing"], second["job_id"]) == ("1", True, first["job_id"])
    other = files / "other.keras"
    other.write_bytes(fake_model("ok", variants=[{"id": "fp32", "technique": "fp32", "metric": 0.5, "bytes": "other fp32"}]))
    line = error_line(edgectl(server, tmp_path, "model", "push", str(other), "-n", "digits", "-d", str(files / "digits.npz"), "--version", "1"))
    assert "digits:1 already exists with different files" in line
    assert [v["version"] for v in json.loads(ok(edgectl(server, tmp_path, "model", "list", "-o", "json")).stdout)] == ["1"]
    nxt = json.loads(ok(edgectl(server, tmp_path, "model", "push", str(other), "-n", "digits", "-d", str(files / "digits.npz"), "--no-wait", "-o", "json")).stdout)
    assert (nxt["version"], nxt["existing"]) == ("2", False)


def test_push_refusals_are_one_clear_line(server, files, tmp_path):
    data = str(files / "digits.npz")
    line = error_line(edgectl(server, tmp_path, "model", "push", str(files / "broken.keras"), "-n", "digits", "-d", data))
    assert line == "edgectl: error: optimizing digits:1 failed: broken.keras is not a Keras model: a .keras file is a zip archive and this is not one"
    assert json.loads(ok(edgectl(server, tmp_path, "model", "show", "digits:1", "-o", "json")).stdout)["state"] == "failed"

    big = files / "big.keras"
    big.write_bytes(b"x" * 30_000)
    assert "model big.keras is over the configured size limit of 20,000 bytes" in error_line(edgectl(server, tmp_path, "model", "push", str(big), "-n", "big", "-d", data))

    arrays = digits_like()
    del arrays["y_train"]
    np.savez(files / "partial.npz", **arrays)
    assert "partial.npz is missing array(s) y_train" in error_line(
        edgectl(server, tmp_path, "model", "push", str(files / "digits.keras"), "-n", "p", "-d", str(files / "partial.npz")))

    bad_recipe = files / "bad.yaml"
    bad_recipe.write_text("techniques: [int8, teleport]\n")
    assert "unknown technique 'teleport'" in error_line(
        edgectl(server, tmp_path, "model", "push", str(files / "digits.keras"), "-n", "r", "-d", data, "--recipe", str(bad_recipe)))
    assert "neither a built-in recipe" in error_line(
        edgectl(server, tmp_path, "model", "push", str(files / "digits.keras"), "-n", "r", "-d", data, "--recipe", "fastest"))
    assert "is a directory but not a SavedModel" in error_line(edgectl(server, tmp_path, "model", "push", str(files), "-n", "r", "-d", data))
    assert "no model named 'big'" in error_line(edgectl(server, tmp_path, "model", "show", "big"))
    # Nothing from the refused pushes was kept: only the first push's model and data are in the store.
    assert sorted(v["name"] for v in json.loads(ok(edgectl(server, tmp_path, "model", "list", "-o", "json")).stdout)) == ["digits"]


def test_a_savedmodel_directory_is_zipped_the_same_way_every_time(server, files, tmp_path):
    sm = tmp_path / "saved"
    (sm / "variables").mkdir(parents=True)
    (sm / "saved_model.pb").write_bytes(b"pb")
    (sm / "variables" / "variables.index").write_bytes(b"idx")
    first = json.loads(ok(edgectl(server, tmp_path, "model", "push", str(sm), "-n", "sm", "-d", str(files / "digits.npz"), "--no-wait", "-o", "json")).stdout)
    os.utime(sm / "saved_model.pb", (1_000_000, 1_000_000))  # touched, same bytes: still the same model
    again = json.loads(ok(edgectl(server, tmp_path, "model", "push", str(sm), "-n", "sm", "-d", str(files / "digits.npz"), "--no-wait", "-o", "json")).stdout)
    # The fake worker cannot read a zip, so the first job fails; either way the same bytes find version 1.
    assert (first["version"], again["version"]) == ("1", "1")
    assert [v.version for v in server.svc.model_service.repository.list_versions("sm")] == ["1"]
    model = server.svc.model_service.repository.get("sm:1")
    assert model.model_filename == "saved.zip"
    import zipfile

    with zipfile.ZipFile(server.svc.model_service.artifacts.path(model.model_sha256)) as z:
        assert sorted(z.namelist()) == ["saved_model.pb", "variables/variables.index"]


def test_an_upload_cancelled_midway_stores_nothing(server, tmp_path):
    """Ctrl-C during the upload: the coordinator discards the partial files, no version appears."""
    import threading

    from tests.fleet import wait_for
    from tests.unit.models.conftest import push_chunks

    artifacts = server.svc.model_service.artifacts
    receiving = threading.Event()

    def interrupted():
        stream = push_chunks(model=b"M" * 5000, chunk=1000)
        yield next(stream)  # header
        yield next(stream)  # the first model chunk
        receiving.wait(10)
        yield from stream  # too late: the call is cancelled by then

    def incoming():
        return [p for p in artifacts.root.iterdir() if p.name.startswith(".incoming")]

    channel = grpc.insecure_channel(server.address)
    stub = admin_pb2_grpc.AdminStub(channel)
    future = stub.PushModel.future(interrupted())
    wait_for(incoming, 10, "the coordinator to start receiving the model")
    assert future.cancel()  # Ctrl-C in edgectl closes the channel: the same cancellation
    receiving.set()
    wait_for(lambda: not incoming(), 10, "the partial upload to be discarded")
    assert list(artifacts.root.iterdir()) == []
    assert server.svc.model_service.repository.list_versions() == []
    channel.close()

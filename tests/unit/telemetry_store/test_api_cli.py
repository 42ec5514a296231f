"""QueryTelemetry and GetDevice on the real servicer mixins, and `edgectl telemetry` (the console script) against them."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from concurrent import futures
from datetime import timedelta
from pathlib import Path

import grpc
import pytest

from coordinator.api.devices import DeviceAdmin
from coordinator.api.telemetry import TelemetryAdmin
from coordinator.config import CoordinatorConfig
from coordinator.ingest import Ingest, RateLimitedLog
from coordinator.metrics import CoordinatorMetrics
from coordinator.service.context import ServiceContext
from coordinator.store.db import Store
from coordinator.store.devices import DeviceRegistry
from edgefleet import envelope, topics
from edgefleet.v1 import admin_pb2, admin_pb2_grpc

from .factories import Clock, histogram, model, report

EDGECTL = Path(sys.executable).parent / "edgectl"


class Admin(TelemetryAdmin, DeviceAdmin, admin_pb2_grpc.AdminServicer):
    def __init__(self, ctx: ServiceContext):
        self.ctx = ctx
        TelemetryAdmin.setup_area(self)


class Aborted(Exception):
    def __init__(self, code, details):
        super().__init__(f"{code}: {details}")
        self.code, self.details = code, details


class Context:
    def abort(self, code, details):
        raise Aborted(code, details)


@pytest.fixture
def admin(tmp_path):
    """The telemetry and device areas on a SQLite store with real time (edgectl computes --since from its clock)."""
    from datetime import datetime, timezone

    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    clock = Clock(datetime.now(timezone.utc).replace(microsecond=0))
    registry = DeviceRegistry(store, clock=clock)
    metrics = CoordinatorMetrics()
    ingest = Ingest(registry, metrics, log_limiter=RateLimitedLog(60, clock.monotonic))
    # Telemetry on this process's threads: the test's clock and synchronous writes (no child process in unit tests).
    cfg = CoordinatorConfig(data_dir=tmp_path / "data", telemetry={"ingest_process": False})
    ctx = ServiceContext(cfg=cfg, store=store, registry=registry, metrics=metrics, link=None, signer=None, broker_auth=None,
                         ingest=ingest, enroll_address=lambda: "", clock=clock)
    svc = Admin(ctx)
    now = clock()
    cam = registry.register("cam-1", {"role": "camera"}, 60).device.id
    gw = registry.register("gw-1", {"role": "gateway"}, 60).device.id
    for minute in range(20, 0, -1):
        end = now - timedelta(minutes=minute)
        for dev, m in ((cam, model(latencies=[2.0] * 10, energy_mj=7.5, golden=(0.93, 120), confidence=0.8, drift=0.12)),
                       (gw, model("anomaly", "2", "fp32", latencies=[0.4] * 4))):
            payload = envelope.encode(dev, telemetry=report(end, m, temperature=48.0))
            assert ingest.handle(topics.telemetry(dev), payload) == "ok"
    yield svc, ctx
    store.close()


def test_query_telemetry_views_and_histograms(admin):
    svc, ctx = admin
    resp = svc.QueryTelemetry(admin_pb2.TelemetryQuery(), Context())
    assert [r.device_name for r in resp.rows] == ["cam-1", "gw-1"]
    assert not any(r.model.HasField("latency") for r in resp.rows)  # left out unless asked
    assert [f.model for f in resp.fleet] == ["anomaly", "digits"]
    with_hist = svc.QueryTelemetry(admin_pb2.TelemetryQuery(include_histograms=True, device="cam-1"), Context())
    assert list(with_hist.rows[0].model.latency.counts) == list(histogram([2.0] * 10).counts)
    q = admin_pb2.TelemetryQuery(view=admin_pb2.TELEMETRY_VIEW_SUMMARY, selector="role=camera")
    q.since.FromDatetime(ctx.clock() - timedelta(minutes=5))
    (row,) = svc.QueryTelemetry(q, Context()).rows
    assert (row.windows, row.model.requests) == (5, 50)


@pytest.mark.parametrize(
    "query, code",
    [
        (admin_pb2.TelemetryQuery(selector="role"), grpc.StatusCode.INVALID_ARGUMENT),
        (admin_pb2.TelemetryQuery(model="digits:"), grpc.StatusCode.INVALID_ARGUMENT),
        (admin_pb2.TelemetryQuery(device="nope"), grpc.StatusCode.NOT_FOUND),
        (admin_pb2.TelemetryQuery(view=99), grpc.StatusCode.INVALID_ARGUMENT),
    ],
)
def test_query_telemetry_refuses_bad_queries(admin, query, code):
    svc, _ = admin
    with pytest.raises(Aborted) as err:
        svc.QueryTelemetry(query, Context())
    assert err.value.code == code


def test_get_device_carries_the_latest_figures(admin):
    svc, _ = admin
    device = svc.GetDevice(admin_pb2.GetDeviceRequest(ref="cam-1"), Context())
    assert device.latest_telemetry.model == "digits"
    assert device.latest_telemetry.power.energy_per_inference_mj == pytest.approx(7.5)


# ---------------------------------------------------------------- edgectl telemetry


@pytest.fixture
def server(admin):
    svc, ctx = admin
    srv = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    admin_pb2_grpc.add_AdminServicer_to_server(svc, srv)
    port = srv.add_insecure_port("127.0.0.1:0")
    srv.start()
    yield f"127.0.0.1:{port}"
    srv.stop(grace=None)


def edgectl(address: str, *args: str, tmp_home: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEFLEET_")}
    env.update(HOME=str(tmp_home), EDGEFLEET_COORDINATOR=address, EDGEFLEET_TOKEN="any")
    return subprocess.run([str(EDGECTL), "telemetry", *args], env=env, capture_output=True, text=True, timeout=60)


def test_edgectl_json_rows_are_flat_objects(server, tmp_path):
    res = edgectl(server, "--select", "role=camera", "-o", "json", tmp_home=tmp_path)
    assert res.returncode == 0, res.stderr
    (row,) = json.loads(res.stdout)
    assert (row["device_name"], row["model"], row["version"], row["requests"]) == ("cam-1", "digits", "3", 10)
    assert row["p95_ms"] == pytest.approx(histogram([2.0] * 10).percentile(95))
    assert (row["energy_per_inference_mj"], row["power_source"]) == (7.5, "estimate")
    assert (row["golden_accuracy"], row["golden_count"], row["online_accuracy"]) == (0.93, 120, None)
    assert row["drift_max"] == pytest.approx(0.12) and row["temperature_c"] == 48.0
    assert 50 < row["age_s"] < 600


def test_edgectl_since_summarizes_and_table_shows_the_figures(server, tmp_path):
    res = edgectl(server, "--since", "10m", "--model", "digits:3", tmp_home=tmp_path)
    assert res.returncode == 0, res.stderr
    header, line = res.stdout.splitlines()[:2]
    assert header.split()[:4] == ["DEVICE", "MODEL", "VARIANT", "P50"]
    assert line.split()[:3] == ["cam-1", "digits:3", "int8"]
    assert "7.50 estimate" in line and "0.930 (n=120)" in line
    summary = json.loads(edgectl(server, "--since", "630s", "-o", "json", tmp_home=tmp_path).stdout)
    assert {r["device_name"]: r["windows"] for r in summary} == {"cam-1": 10, "gw-1": 10}
    fleet = json.loads(edgectl(server, "--fleet", "-o", "json", tmp_home=tmp_path).stdout)
    assert {(f["model"], f["devices"]) for f in fleet} == {("digits", 1), ("anomaly", 1)}
    series = json.loads(edgectl(server, "--series", "--device", "gw-1", "--limit", "3", "-o", "json", tmp_home=tmp_path).stdout)
    assert len(series) == 3 and series[0]["window_end"] < series[-1]["window_end"]


def test_edgectl_bad_arguments_fail_in_one_line(server, tmp_path):
    for args, needle in (
        (("--since", "yesterday"), "--since 'yesterday'"),
        (("--model", "digits:"), "NAME or NAME:VERSION"),
        (("--until", "5m"), "--until needs --since"),
        (("--device", "nope"), "no device with id or name 'nope'"),
    ):
        res = edgectl(server, *args, tmp_home=tmp_path)
        assert res.returncode == 1 and "Traceback" not in res.stderr
        assert res.stderr.count("\n") == 1 and needle in res.stderr, res.stderr


def test_edgectl_watch_refreshes_until_interrupted(server, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEFLEET_")}
    env.update(HOME=str(tmp_path), EDGEFLEET_COORDINATOR=server, EDGEFLEET_TOKEN="any")
    proc = subprocess.Popen([str(EDGECTL), "telemetry", "--watch", "--interval", "0.2", "-o", "json"], env=env, stdout=subprocess.PIPE, text=True)
    try:
        snapshots = [json.loads(proc.stdout.readline()) for _ in range(3)]
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(20)
    assert proc.returncode == 0
    assert all([r["device_name"] for r in s] == ["cam-1", "gw-1"] for s in snapshots)

"""The pure parts of rollouts: waves, parameters and their defaults, golden sets, candidates, edgectl's option parsing."""
from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest

from coordinator.config import RolloutsConfig
from coordinator.models.artifacts import ArtifactStore
from coordinator.models.repository import ModelRepository
from coordinator.rollouts.candidates import version_candidates
from coordinator.rollouts.golden import GoldenSetUnavailable, golden_arrays, make_golden_set, npz_bytes
from coordinator.rollouts.spec import BadRolloutSpec, RolloutParams, params_from_spec
from coordinator.rollouts.waves import WaveMember, assign_waves, canary_size
from coordinator.selection import DeviceFacts, select
from edgefleet.v1 import admin_pb2
from tests.unit.rollouts.fleet_fakes import INT8_SHA, MB, npz, ready_version, variant


def members(n: int, classes: tuple[str, ...] = ("pi4",), online: set[int] = frozenset()) -> list[WaveMember]:
    return [WaveMember(f"d{i}", f"dev-{i:02d}", classes[i % len(classes)], "int8", i in online) for i in range(n)]


def test_canary_size():
    assert canary_size(10, canary_percent=10) == 1
    assert canary_size(11, canary_percent=10) == 2  # rounded up
    assert canary_size(3, canary_percent=1) == 1  # at least one
    assert canary_size(10, canary_count=3, canary_percent=50) == 3  # a count wins
    assert canary_size(2, canary_count=5) == 2
    assert canary_size(10) == 0 and canary_size(0, canary_percent=10) == 0


def test_waves_canary_first_then_equal_waves():
    waves = assign_waves(members(10), canary_percent=10, waves=3)
    assert [len(w) for w in waves] == [1, 3, 3, 3]
    assert sorted(m.device_id for w in waves for m in w) == sorted(f"d{i}" for i in range(10))
    waves = assign_waves(members(8), canary_count=1, waves=3)
    assert [len(w) for w in waves] == [1, 3, 2, 2]  # the first waves one larger when it does not divide
    assert [len(w) for w in assign_waves(members(2), canary_count=1, waves=5)] == [1, 1]  # empty waves dropped
    assert [len(w) for w in assign_waves(members(4), waves=2)] == [2, 2]  # no canary asked for
    with pytest.raises(ValueError):
        assign_waves(members(4), waves=0)


def test_canary_covers_every_hardware_class_online_first():
    m = members(9, classes=("pi4", "zero", "coral"), online={3, 4})
    canary = assign_waves(m, canary_count=3, waves=1)[0]
    assert sorted(x.hardware_class for x in canary) == ["coral", "pi4", "zero"]
    assert {"d3", "d4"} <= {x.device_id for x in canary}  # online ones of their class first


def test_params_defaults_bounds_and_json():
    cfg = RolloutsConfig(canary_percent=25, waves=2, device_timeout_s=60, rate_per_minute=5)
    p = params_from_spec(admin_pb2.RolloutSpec(ref="m:1", min_metric=0.95, max_p95_ms=20, canary_count=2, max_error_rate=0.02), cfg)
    assert (p.canary_count, p.canary_percent, p.waves, p.device_timeout_s, p.rate_per_minute) == (2, 0.0, 2, 60.0, 5)
    assert (p.min_metric, p.max_metric, p.max_p95_ms, p.max_error_rate) == (0.95, None, 20.0, 0.02)
    assert p.constraints().min_metric == 0.95 and p.constraints().memory_fraction == 0.5
    acc = p.acceptance()
    assert (acc.min_metric, acc.max_metric, acc.max_p95_ms, acc.max_error_rate) == pytest.approx((0.95, 0.0, 20.0, 0.02))
    assert p.trial().seconds == 60 and p.trial().thresholds.max_p95_ms == 20
    assert RolloutParams.from_json(p.to_json()) == p
    back = p.to_proto("m:1", "role=cam")
    assert (back.ref, back.selector, back.canary_count, back.min_metric) == ("m:1", "role=cam", 2, pytest.approx(0.95))
    p2 = params_from_spec(admin_pb2.RolloutSpec(ref="m:1"), cfg)
    assert p2.canary_percent == 25 and not p2.has_telemetry_thresholds
    for bad, word in (({"canary_percent": 101}, "canary_percent"), ({"max_error_rate": 5}, "fraction"), ({"min_metric": -1}, "min_metric"),
                      ({"memory_fraction": 2}, "memory_fraction"), ({"min_metric": 0.9, "max_metric": 0.5}, "above max_metric")):
        with pytest.raises(BadRolloutSpec, match=word):
            params_from_spec(admin_pb2.RolloutSpec(ref="m:1", **bad), cfg)


def test_golden_set_is_evenly_spaced_reproducible_and_feature_selected(tmp_path):
    rng = np.random.default_rng(1)
    data = {"x_val": rng.random((1000, 6)), "y_val": np.repeat(np.arange(10), 100)}  # sorted labels
    arrays = golden_arrays(data, 50)
    assert arrays["x"].shape == (50, 6) and arrays["x"].dtype == np.float32
    assert set(arrays["y"].tolist()) == set(range(10))  # every class: spaced over sorted data
    assert golden_arrays(data, 50, [1, 4])["x"].shape == (50, 2)
    assert np.array_equal(golden_arrays(data, 50, [1, 4])["x"], arrays["x"][:, [1, 4]])
    assert golden_arrays({"x_train": np.zeros((5, 2)), "y_train": np.zeros(5)}, 50)["x"].shape == (5, 2)
    with pytest.raises(GoldenSetUnavailable, match="no validation arrays"):
        golden_arrays({"x": np.zeros(3)}, 10)
    with pytest.raises(GoldenSetUnavailable, match="not a 2-D feature table"):
        golden_arrays({"x_val": np.zeros((4, 8, 8)), "y_val": np.zeros(4)}, 10, [1])
    # The same arrays give the same bytes (fixed zip timestamps), readable by numpy as the agent reads them.
    assert npz_bytes(arrays) == npz_bytes({k: v.copy() for k, v in arrays.items()})
    with np.load(io.BytesIO(npz_bytes(arrays))) as z:
        assert sorted(z.files) == ["x", "y"] and np.array_equal(z["y"], arrays["y"])
    assert all(i.date_time == (1980, 1, 1, 0, 0, 0) for i in zipfile.ZipFile(io.BytesIO(npz_bytes(arrays))).infolist())

    store = ArtifactStore(tmp_path / "a")
    data_sha = store.put_bytes(npz(**data))
    g1 = make_golden_set(store, data_sha, 100)
    g2 = make_golden_set(store, data_sha, 100)
    assert g1 == g2 and g1.count == 100 and store.has(g1.sha256) and store.path(g1.sha256).stat().st_size == g1.size_bytes
    with pytest.raises(GoldenSetUnavailable, match="not in the artifact store"):
        make_golden_set(store, "0" * 64, 10)
    bad = store.put_bytes(b"not an npz")
    with pytest.raises(GoldenSetUnavailable, match="not a readable .npz"):
        make_golden_set(store, bad, 10)


def test_candidates_include_a_compiled_edgetpu_build_of_its_own(store, tmp_path):
    artifacts = ArtifactStore(tmp_path / "a")
    compiled = artifacts.put_bytes(b"compiled for the edge tpu" * 100)
    tpu = {"status": "compiled", "detail": "", "mapped_fraction": 1.0, "compiled_sha256": compiled}
    variants = [
        variant("fp32", "f" * 64, 150 * MB, 0.97, 9.0),
        variant("int8", INT8_SHA, 40 * MB, 0.96, 12.0, edgetpu=tpu),
        variant("qat", None, 0, 0.0, 0.0, error="ValueError: boom"),
    ]
    ref = ready_version(store, artifacts, variants=variants)
    version = ModelRepository(store, artifacts).get(ref)
    cands = version_candidates(version, artifacts, chunk_size=64 * 1024)
    by_id = {c.variant_id: c for c in cands}
    assert list(by_id) == ["fp32", "int8", "int8-edgetpu"]  # the failed variant is not a candidate
    assert by_id["int8"].candidate.edgetpu == "compatible" and not by_id["int8"].candidate.requires_delegate
    t = by_id["int8-edgetpu"]
    assert (t.candidate.edgetpu, t.candidate.requires_delegate, t.candidate.sha256, t.spec.sha256) == ("compiled", "edgetpu", compiled, compiled)
    assert t.candidate.size_bytes == 2500 and t.candidate.host_p95_ms is None and t.spec.requires_delegate == "edgetpu"
    assert by_id["fp32"].spec.chunk_size == 64 * 1024 and by_id["fp32"].spec.inputs[0].shape == [1, 8, 8, 1]
    # Selection sends the compiled build to a board whose runtime loads the delegate, the int8 one to a board without.
    coral = DeviceFacts("c", "coral", "coral-dev-board", accelerators=("edgetpu",), delegates=("edgetpu",), memory_available_bytes=900 * MB,
                        storage_free_bytes=5000 * MB, runtime_name="ai-edge-litert", runtime_version="2.3.0")
    assert select(coral, [c.candidate for c in cands]).variant_id == "int8-edgetpu"
    no_lib = DeviceFacts("c2", "coral2", "coral-dev-board", accelerators=("edgetpu",), memory_available_bytes=900 * MB,
                         storage_free_bytes=5000 * MB, runtime_name="ai-edge-litert", runtime_version="2.3.0")
    assert select(no_lib, [c.candidate for c in cands]).variant_id == "int8"


@pytest.mark.parametrize("text,expected", [("10%", (10.0, 0)), ("3", (0.0, 3)), (" 25 %", (25.0, 0)), (None, (0.0, 0))])
def test_cli_canary(text, expected):
    from coordinator.cli.rollouts import parse_canary

    assert parse_canary(text) == expected


def test_cli_option_parsing_refuses_nonsense():
    from coordinator.cli.errors import CliError
    from coordinator.cli.rollouts import parse_canary, parse_error_rate, parse_rate

    assert parse_rate("30/min") == 30 and parse_rate("30") == 30 and parse_rate("2/s") == 120 and parse_rate(None) == 0
    assert parse_error_rate("1%") == pytest.approx(0.01) and parse_error_rate("0.05") == 0.05
    for fn, bad in ((parse_canary, "0%"), (parse_canary, "0"), (parse_canary, "ten"), (parse_canary, "150%"), (parse_rate, "fast"),
                    (parse_rate, "0/min"), (parse_rate, "3/fortnight"), (parse_error_rate, "2"), (parse_error_rate, "lots")):
        with pytest.raises(CliError):
            fn(bad)


def test_golden_set_from_data_without_validation_arrays_says_so(tmp_path):
    store = ArtifactStore(tmp_path / "a")
    sha = store.put_bytes(npz(features=np.zeros((3, 2))))
    with pytest.raises(GoldenSetUnavailable, match="^the data has no validation arrays"):
        make_golden_set(store, sha, 10)

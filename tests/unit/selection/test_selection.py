"""Selection policy: every rule on a table of devices (the bundled board profiles) and candidates."""
from __future__ import annotations

import pytest

from agent.profile import apply_profile, load_profile
from coordinator.selection import (
    Candidate,
    Constraints,
    DeviceFacts,
    Measurement,
    MeasuredTable,
    candidate_from_variant,
    estimate_latency,
    fmt_bytes,
    plan,
    select,
)
from edgefleet.v1 import admin_pb2, hardware_pb2

MB = 1_000_000


def board(profile: str, *, runtime=("ai-edge-litert", "2.3.0"), delegates=("xnnpack",), storage_free=8_000 * MB, **overrides) -> DeviceFacts:
    """DeviceFacts of a bundled profile applied to a host with the given runtime and free storage."""
    host = hardware_pb2.HardwareProfile()
    host.runtime.name, host.runtime.version = runtime
    host.runtime.delegates.extend(delegates)
    host.storage.free_bytes = storage_free
    hw = apply_profile(host, load_profile(profile), name=profile)
    facts = DeviceFacts.from_hardware(f"d-{profile}", profile, hw)
    return DeviceFacts(**{**facts.__dict__, **overrides})


# MobileNetV2 alpha 1.0 224x224 as FACTS measured it on the host: fp32 faster than int8 on x86.
FP32 = Candidate("fp32", "baseline", "a" * 64, 13_923_320, arena_bytes=6 * MB, metric=0.91, host_p50_ms=9.28, host_p95_ms=9.9)
INT8 = Candidate("int8", "ptq_int8", "b" * 64, 3_942_808, arena_bytes=2 * MB, input_dtype="int8", output_dtype="int8",
                 metric=0.90, host_p50_ms=13.04, host_p95_ms=13.8, edgetpu="compatible")
FP16 = Candidate("fp16", "ptq_float16", "c" * 64, 6_970_000, arena_bytes=6 * MB, metric=0.91, host_p50_ms=10.1, host_p95_ms=10.9)
TPU = Candidate("int8-edgetpu", "edgetpu", "d" * 64, 4_200_000, arena_bytes=1 * MB, input_dtype="int8", metric=0.90,
                host_p50_ms=None, host_p95_ms=None, edgetpu="compiled", requires_delegate="edgetpu")
MOBILENET = [FP32, INT8, FP16]


def reasons(choice) -> dict[str, str]:
    return dict(choice.excluded)


def test_fp32_wins_on_x86_where_the_host_measured_it_faster():
    c = select(board("x86-gateway"), MOBILENET)
    assert c.variant_id == "fp32"
    assert c.latency.source == "profile_factor"
    # 9.9 ms on the host x 1.2 (the profile's factor), named in the reason with the runner-up
    assert c.latency.p95_ms == pytest.approx(9.9 * 1.2)
    assert c.reason == "fp32: lowest p95 of 3 that fit; p95 ~11.9 ms (host 9.9 ms x 1.2, profile latency factor; nothing measured on x86-gateway); next fp16 13.1 ms"
    assert c.excluded == []


def test_measured_latency_on_the_class_beats_the_host_ranking():
    measured = MeasuredTable([
        ("raspberry-pi-4", FP32.sha256, Measurement(p50_ms=60.0, p95_ms=64.0, count=2, host_p95_ms=9.9)),
        ("raspberry-pi-4", INT8.sha256, Measurement(p50_ms=30.0, p95_ms=33.0, count=3, host_p95_ms=13.8)),
        # another class's figure must not leak in
        ("x86-gateway", FP16.sha256, Measurement(p50_ms=1.0, p95_ms=1.0, count=1, host_p95_ms=10.9)),
    ])
    c = select(board("raspberry-pi-4"), MOBILENET, Constraints(), measured)
    assert c.variant_id == "int8"
    assert c.latency.source == "measured" and c.latency.p95_ms == 33.0
    assert "p95 33 ms (measured on raspberry-pi-4, 3 results)" in c.reason
    # the x86 row speaks for the x86 class only
    # x86: fp16 measured at 1 ms against 10.9 on the host, so fp32 is estimated at 9.9 x 0.0917 = 0.908 ms
    c = select(board("x86-gateway"), MOBILENET, Constraints(), measured)
    assert (c.variant_id, c.latency.source) == ("fp32", "class_factor")
    assert c.reason == "fp32: lowest p95 of 3 that fit; p95 ~0.908 ms (host 9.9 ms x 0.0917, x86-gateway speed factor from 1 measured variant); next fp16 1 ms"


def test_unmeasured_variant_uses_the_class_speed_factor_of_other_variants():
    # Three other artifacts measured on the Pi 4 at 3x, 5x and 3.5x their host p95: the median is 3.5.
    measured = MeasuredTable([
        ("raspberry-pi-4", "e" * 64, Measurement(p50_ms=2.8, p95_ms=3.0, host_p95_ms=1.0)),
        ("raspberry-pi-4", "f" * 64, Measurement(p50_ms=9.0, p95_ms=10.0, host_p95_ms=2.0)),
        ("raspberry-pi-4", "9" * 64, Measurement(p50_ms=6.0, p95_ms=7.0, host_p95_ms=2.0)),
    ])
    sf = measured.class_speed_factor("raspberry-pi-4")
    assert (sf.factor, sf.variants) == (3.5, 3)
    est = estimate_latency(board("raspberry-pi-4"), INT8, measured)
    assert est.source == "class_factor"
    assert est.p95_ms == pytest.approx(13.8 * 3.5)
    assert "raspberry-pi-4 speed factor from 3 measured variants" in est.detail
    # a class without measurements falls back to the device profile's factor (4.0 for the Pi 4)
    est = estimate_latency(board("raspberry-pi-4"), INT8, MeasuredTable())
    assert (est.source, est.p95_ms) == ("profile_factor", pytest.approx(13.8 * 4.0))


def test_simulated_measurements_say_so():
    measured = MeasuredTable([("jetson-nano", INT8.sha256, Measurement(p50_ms=40, p95_ms=45, count=1, simulated=True))])
    c = select(board("jetson-nano"), [INT8], Constraints(), measured)
    assert "measured on jetson-nano, 1 result, simulated" in c.reason


def test_edge_tpu_board_gets_the_compatible_int8_not_the_faster_fp32():
    c = select(board("coral-dev-board"), MOBILENET)
    assert c.variant_id == "int8"
    assert c.reason.startswith("Edge TPU-compatible, not compiled: int8")
    why = reasons(c)
    assert set(why) == {"fp32", "fp16"}
    assert "not Edge TPU-compatible (not_applicable)" in why["fp32"]


def test_compiled_is_preferred_when_the_runtime_loads_the_edgetpu_delegate():
    c = select(board("coral-dev-board", delegates=("xnnpack", "edgetpu")), MOBILENET + [TPU])
    assert c.variant_id == "int8-edgetpu"
    assert c.reason.startswith("Edge TPU, compiled: ")
    assert "not compiled for the Edge TPU" in reasons(c)["int8"]


def test_simulated_coral_without_libedgetpu_cannot_take_the_compiled_model():
    c = select(board("coral-dev-board"), MOBILENET + [TPU])
    assert c.variant_id == "int8"
    assert "needs the edgetpu delegate; the device's runtime loads xnnpack" in reasons(c)["int8-edgetpu"]
    assert "the compiled variant does not fit" in c.reason


def test_compiled_model_never_goes_to_a_board_without_an_edge_tpu():
    c = select(board("raspberry-pi-4", delegates=("xnnpack", "edgetpu")), [TPU, INT8])
    assert c.variant_id == "int8"
    assert reasons(c)["int8-edgetpu"] == "int8-edgetpu: compiled for the Edge TPU; the device has none"


def test_edge_tpu_board_with_no_tpu_variant_falls_back_to_cpu_or_refuses_when_told():
    c = select(board("coral-dev-board"), [FP32, FP16])
    assert c.variant_id == "fp32"
    assert c.reason.startswith("no variant is Edge TPU-compatible; on the CPU: fp32")
    refused = select(board("coral-dev-board"), [FP32, FP16], Constraints(edgetpu_cpu_fallback=False))
    assert refused.variant is None
    assert "CPU fallback is off" in refused.reason
    # an Edge TPU variant that misses the accuracy floor: the reason says why it was not used
    c = select(board("coral-dev-board"), MOBILENET, Constraints(min_metric=0.905))
    assert c.variant_id in ("fp32", "fp16")
    assert "no Edge TPU variant fits (int8: accuracy 0.9 < 0.905 required)" in c.reason


BIG_FP32 = Candidate("fp32", "baseline", "1" * 64, 140 * MB, arena_bytes=40 * MB, metric=0.93, host_p50_ms=30.0, host_p95_ms=31.0)
BIG_INT8 = Candidate("int8", "ptq_int8", "2" * 64, 36 * MB, arena_bytes=10 * MB, metric=0.92, host_p50_ms=35.0, host_p95_ms=36.0)


def test_512_mb_board_excludes_the_big_fp32_with_the_figures():
    c = select(board("raspberry-pi-zero-2-w"), [BIG_FP32, BIG_INT8])
    assert c.variant_id == "int8"
    assert reasons(c)["fp32"] == "fp32: 140 MB + 40 MB arena > 50% of 320 MB available"
    # the same board with a looser memory fraction keeps fp32 (faster on the host)
    assert select(board("raspberry-pi-zero-2-w"), [BIG_FP32, BIG_INT8], Constraints(memory_fraction=0.6)).variant_id == "fp32"
    # while the 4 GB Pi takes fp32
    assert select(board("raspberry-pi-4"), [BIG_FP32, BIG_INT8]).variant_id == "fp32"


def test_free_storage_less_the_margin():
    dev = board("raspberry-pi-4", storage_free=150 * MB)
    c = select(dev, [BIG_FP32, BIG_INT8], Constraints(storage_margin_bytes=16 * MB))
    assert c.variant_id == "int8"
    assert reasons(c)["fp32"] == "fp32: 140 MB > 150 MB free storage less a 16 MB margin"
    assert select(dev, [BIG_FP32, BIG_INT8], Constraints(storage_margin_bytes=0)).variant_id == "fp32"


@pytest.mark.parametrize(
    "runtime, declared, expected, why",
    [
        (("none", ""), {}, None, "no inference runtime"),
        (("tflite_runtime", "2.14.0"), {}, None, "tflite_runtime 2.14.0 cannot load the op versions"),
        (("tflite_runtime", "2.14.0"), {"tflite_runtime": "2.14"}, "int8", ""),
        (("tflite_runtime", "2.14.0"), {"tflite_runtime": "2.16.1"}, None, "needs tflite_runtime >= 2.16.1; the device has 2.14.0"),
        (("ai-edge-litert", "2.3.0"), {}, "int8", ""),
        (("ai-edge-litert", "2.1.0"), {"ai-edge-litert": "2.3"}, None, "needs ai-edge-litert >= 2.3"),
        (("tensorflow.lite", "2.21.0"), {}, "int8", ""),
    ],
)
def test_runtime_must_be_able_to_load_the_ops(runtime, declared, expected, why):
    cand = Candidate("int8", "ptq_int8", "b" * 64, 3 * MB, metric=0.9, host_p95_ms=1.0, min_runtime_versions=declared)
    c = select(board("raspberry-pi-4", runtime=runtime), [cand])
    assert c.variant_id == expected
    if expected is None:
        assert why in c.reason and why in reasons(c)["int8"]


def test_a_variant_that_failed_on_the_class_is_excluded():
    measured = MeasuredTable([("raspberry-pi-4", FP32.sha256, Measurement(p50_ms=None, p95_ms=None, count=0, error_count=2, last_error="Didn't find op for builtin opcode 'FULLY_CONNECTED' version '12'"))])
    c = select(board("raspberry-pi-4"), MOBILENET, Constraints(), measured)
    assert c.variant_id == "fp16"
    assert reasons(c)["fp32"].startswith("fp32: failed on raspberry-pi-4 devices (2x): Didn't find op")


def test_metric_floor_for_accuracy_and_ceiling_for_mae():
    c = select(board("x86-gateway"), MOBILENET, Constraints(min_metric=0.905))
    assert c.variant_id == "fp32"
    assert reasons(c) == {"int8": "int8: accuracy 0.9 < 0.905 required"}
    reg = [
        Candidate("fp32", "baseline", "a" * 64, 150_000, metric_name="mae", metric=0.42, host_p95_ms=0.02),
        Candidate("int8", "ptq_int8", "b" * 64, 50_000, metric_name="mae", metric=0.61, host_p95_ms=0.01),
    ]
    c = select(board("x86-gateway"), reg, Constraints(max_metric=0.5))
    assert c.variant_id == "fp32"
    assert reasons(c) == {"int8": "int8: mae 0.61 > 0.5 allowed"}
    assert select(board("x86-gateway"), reg).variant_id == "int8"  # no ceiling: the faster one
    unmeasured = Candidate("x", "baseline", "a" * 64, 1000, metric=None, host_p95_ms=1.0)
    assert "no accuracy measured" in select(board("x86-gateway"), [unmeasured], Constraints(min_metric=0.5)).reason


def test_p95_budget_uses_the_best_estimate():
    # On the Pi 4 (factor 4): fp32 9.9 x 4 = 39.6 ms, int8 55.2, fp16 43.6; a 42 ms budget leaves fp32 only.
    c = select(board("raspberry-pi-4"), MOBILENET, Constraints(max_p95_ms=42))
    assert c.variant_id == "fp32"
    assert reasons(c)["int8"] == "int8: p95 ~55.2 ms > 42 ms budget (host 13.8 ms x 4, profile latency factor; nothing measured on raspberry-pi-4)"
    # a measurement replaces the estimate: fp32 measured at 50 ms misses the budget, int8 measured at 30 ms makes it
    measured = MeasuredTable([
        ("raspberry-pi-4", FP32.sha256, Measurement(p50_ms=48, p95_ms=50, host_p95_ms=9.9)),
        ("raspberry-pi-4", INT8.sha256, Measurement(p50_ms=28, p95_ms=30, host_p95_ms=13.8)),
    ])
    c = select(board("raspberry-pi-4"), MOBILENET, Constraints(max_p95_ms=42), measured)
    assert c.variant_id == "int8"
    # fp16 is estimated with the class factor (median of 50/9.9 and 30/13.8), not the profile's 4.0
    factor = sorted([50 / 9.9, 30 / 13.8])
    assert estimate_latency(board("raspberry-pi-4"), FP16, measured).p95_ms == pytest.approx(10.9 * (factor[0] + factor[1]) / 2)
    # no figure at all (a compiled Edge TPU model cannot run on the host): the trial on the device checks the budget
    c = select(board("coral-dev-board", delegates=("edgetpu",)), MOBILENET + [TPU], Constraints(max_p95_ms=42))
    assert c.variant_id == "int8-edgetpu"
    assert c.reason.endswith("the 42 ms p95 budget is left to the trial on the device")


def test_smallest_variant_when_no_latency_is_known():
    cands = [Candidate(v, v, s * 64, size, metric=0.9) for v, s, size in (("a", "1", 300_000), ("b", "2", 120_000), ("c", "3", 200_000))]
    c = select(board("x86-gateway"), cands)
    assert c.variant_id == "b"
    assert c.reason == "b: smallest of 3 that fit, 120 kB (no latency figures)"


def test_no_variant_fits_lists_every_reason():
    c = select(board("raspberry-pi-zero-2-w"), [BIG_FP32], Constraints(min_metric=0.99))
    assert c.variant is None
    assert c.reason == "no variant fits: fp32: 140 MB + 40 MB arena > 50% of 320 MB available"
    assert select(board("x86-gateway"), []).reason == "the model version has no usable variant"
    silent = DeviceFacts.from_hardware("d-new", "new", None)
    c = select(silent, MOBILENET)
    assert c.variant is None and "not reported its hardware" in c.reason and len(c.excluded) == 3


def test_plan_over_a_fleet_of_bundled_boards():
    devices = [board(n) for n in ("x86-gateway", "raspberry-pi-4", "raspberry-pi-zero-2-w", "coral-dev-board", "jetson-nano")]
    devices.append(board("raspberry-pi-4", runtime=("none", ""), device_id="d-bare", name="bare"))
    plans = plan(devices, [BIG_FP32, BIG_INT8], Constraints(max_p95_ms=150))
    got = {p.device.name: p.variant_id for p in plans}
    # host p95 fp32 31 ms, int8 36 ms, times each profile's factor: x86 1.2, Pi 4 4, Jetson 3.5, Zero 12, Coral 5
    assert got == {"x86-gateway": "fp32", "raspberry-pi-4": "fp32", "raspberry-pi-zero-2-w": None, "coral-dev-board": None, "jetson-nano": "fp32", "bare": None}
    by_name = {p.device.name: p for p in plans}
    assert by_name["x86-gateway"].variant_id == "fp32"
    assert by_name["raspberry-pi-4"].variant_id == "fp32"
    assert by_name["jetson-nano"].variant_id == "fp32"
    zero = by_name["raspberry-pi-zero-2-w"]
    assert zero.excluded and "fp32: 140 MB + 40 MB arena" in zero.reason and "int8: p95 ~432 ms > 150 ms budget" in zero.reason
    coral = by_name["coral-dev-board"]  # no Edge TPU variant, and on its CPU fp32 31 x 5 = 155 ms, int8 180 ms
    assert coral.excluded and "fp32: p95 ~155 ms > 150 ms budget" in coral.reason and "int8: p95 ~180 ms > 150 ms budget" in coral.reason
    assert by_name["bare"].excluded and "no inference runtime" in by_name["bare"].reason
    msg = by_name["raspberry-pi-4"].to_proto(wave=2)
    assert (msg.device_id, msg.device_name, msg.hardware_class, msg.variant_id, msg.excluded, msg.wave) == (
        "d-raspberry-pi-4", "raspberry-pi-4", "raspberry-pi-4", "fp32", False, 2)
    assert msg.reason == by_name["raspberry-pi-4"].reason


def test_candidate_from_a_variant_message():
    v = admin_pb2.Variant(id="int8", technique="ptq_int8", sha256="b" * 64, size_bytes=3_942_808, metric=0.9,
                          latency_p50_ms=13.0, latency_p95_ms=13.8, peak_memory_bytes=3_942_808 + 2 * MB, ops=["CONV_2D"],
                          input_dtype="int8", output_dtype="int8")
    v.edgetpu.status = "compatible"
    c = candidate_from_variant(v, "accuracy")
    assert (c.arena_bytes, c.edgetpu, c.host_p95_ms, c.metric, c.ops) == (2 * MB, "compatible", 13.8, 0.9, ("CONV_2D",))
    assert candidate_from_variant(admin_pb2.Variant(id="x", sha256="a" * 64, size_bytes=10), "mae").edgetpu == "not_applicable"


def test_figures_and_bad_constraints():
    assert [fmt_bytes(n) for n in (13_923_320, 6_000_000, 42_864, 999, 430_000_000)] == ["13.9 MB", "6 MB", "42.9 kB", "999 B", "430 MB"]
    with pytest.raises(ValueError, match="memory_fraction"):
        Constraints(memory_fraction=0)
    with pytest.raises(ValueError, match="edgetpu status"):
        Candidate("x", "t", "a" * 64, 1, edgetpu="maybe")

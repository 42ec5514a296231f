"""The whole demo story, small: `edgectl demo --once --json --devices 3` with no broker at the configured
address (the private mosquitto runs), asserting each step from the JSON line the demo prints for it."""
from __future__ import annotations

import json
import subprocess

import pytest

from tests.e2e.test_demo import _processes_mentioning
from tests.fleet import base_env, script
from tests.mosquitto import free_port

KINDS = {"raspberry-pi-4", "raspberry-pi-zero-2-w", "coral-dev-board"}


@pytest.fixture(scope="module")
def story(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("story")
    workdir, plot = tmp / "demo", tmp / "summary.png"
    res = subprocess.run(
        [script("edgectl"), "demo", "--once", "--json", "--devices", "3", "--broker", f"mqtt://127.0.0.1:{free_port()}",
         "--dir", str(workdir), "--plot", str(plot)],
        env=base_env(), capture_output=True, text=True, timeout=300,
    )
    steps = {}
    for line in res.stdout.splitlines():
        if line.startswith("{"):
            step = json.loads(line)
            steps[step["step"]] = step
    return res, steps, workdir, plot


def test_story_exits_zero_every_step_ok_and_leaves_no_process(story):
    res, steps, workdir, plot = story
    assert res.returncode == 0, res.stderr[-4000:]
    assert "started mosquitto" in res.stderr
    assert list(steps) == ["online", "train", "push", "rollout", "telemetry", "push_bad", "bad_rollout", "summary"], steps.keys()
    assert all(s["ok"] for s in steps.values())
    assert plot.is_file() and plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert _processes_mentioning(str(workdir)) == []


def test_enrolled_and_online_with_their_hardware(story):
    _, steps, _, _ = story
    devices = steps["online"]["devices"]
    assert len(devices) == 3 and all(d["state"] == "online" for d in devices), devices
    assert {d["hardware_class"] for d in devices} == KINDS
    for d in devices:  # each device reports the hardware of the profile it was started with
        assert d["name"].startswith(d["hardware_class"] + "-")
        assert ("edgetpu" in d["accelerators"]) == (d["hardware_class"] == "coral-dev-board"), d


def test_variants_follow_the_policy_and_the_canary_goes_first(story):
    _, steps, _, _ = story
    variants = {v["id"]: v for v in steps["push"]["variants"]}
    assert set(variants) == {"fp32", "int8"} and variants["int8"]["size_bytes"] < variants["fp32"]["size_bytes"]
    assert variants["int8"]["edgetpu"] == "compatible"
    rollout = steps["rollout"]
    assert rollout["state"] == "done"
    planned = {p["name"]: p for p in rollout["plan"]}
    for d in rollout["devices"]:
        assert d["state"] == "committed", d
        assert d["variant"] == planned[d["name"]]["variant"], (d, planned[d["name"]])  # what the plan said, per device
    coral = next(d for d in rollout["devices"] if d["hardware_class"] == "coral-dev-board")
    assert coral["variant"] == "int8" and "Edge TPU" in planned[coral["name"]]["reason"]  # the Edge TPU preference
    canary = [d for d in rollout["devices"] if d["wave"] == 0]
    rest = [d for d in rollout["devices"] if d["wave"] > 0]
    assert len(canary) == 1 and len(rest) == 2
    assert all(canary[0]["updated_at"] < d["updated_at"] for d in rest), rollout["devices"]


def test_telemetry_arrives_from_every_device(story):
    _, steps, _, _ = story
    rows = steps["telemetry"]["rows"]
    assert {r["device_name"] for r in rows} == {d["name"] for d in steps["online"]["devices"]}
    assert all(r["requests"] > 0 and r["version"] == steps["push"]["version"] and r["p95_ms"] > 0 for r in rows), rows
    summary = steps["summary"]["rows"]
    assert {r["hardware_class"] for r in summary} == KINDS
    assert all(r["p95_ms"] and r["accuracy"] is not None and r["accuracy"] > 0.8 for r in summary), summary


def test_the_bad_version_never_stays_active_and_the_rollout_aborts(story):
    _, steps, _, _ = story
    assert steps["train"]["bad_accuracy"] < 0.3 < steps["train"]["accuracy"]
    assert all(v["metric"] < 0.3 for v in steps["push_bad"]["variants"])
    bad = steps["bad_rollout"]
    assert "no variant of digits:" in bad["refused"]
    assert bad["state"] == "aborted" and bad["counts"].get("rolled_back", 0) >= 1, bad
    # The agent's trial monitor caught the collapse in the accuracy apps reported, not an operator.
    assert bad["acted_by"] == "agent", bad
    for name, last in bad["last_history"].items():
        assert not (last["version"] == bad["bad_version"] and last["state"] in ("trial", "committed")), (name, last)
        if last["version"] == bad["bad_version"]:
            assert last["state"] == "rolled_back"

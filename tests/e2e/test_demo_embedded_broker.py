"""The demo's last-resort broker: nothing answers at --broker and mosquitto is not on PATH, so the demo
runs the embedded amqtt broker and the whole fleet over MQTT 3.1.1 with plain subscriptions; the story
must still complete (the bad version rolled back by the canary's agent, its rollout aborted)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from tests.e2e.test_demo import _processes_mentioning
from tests.fleet import base_env, script
from tests.mosquitto import free_port


def _path_without_mosquitto() -> str:
    # Drop only the directories holding a mosquitto (/usr/sbin here): python and the venv's scripts stay.
    dirs = [d for d in os.environ.get("PATH", "").split(os.pathsep) if d and not os.access(os.path.join(d, "mosquitto"), os.X_OK)]
    return os.pathsep.join(dirs)


@pytest.mark.slow
def test_the_story_completes_over_the_embedded_broker(tmp_path):
    path = _path_without_mosquitto()
    assert shutil.which("mosquitto", path=path) is None
    workdir = tmp_path / "demo"
    brokers_before = set(_processes_mentioning("coordinator.embedded_broker"))
    res = subprocess.run(
        [script("edgectl"), "demo", "--once", "--json", "--devices", "2", "--broker", f"mqtt://127.0.0.1:{free_port()}",
         "--dir", str(workdir), "--plot", str(tmp_path / "summary.png")],
        env=base_env(PATH=path), capture_output=True, text=True, timeout=420,
    )
    steps = {s["step"]: s for s in (json.loads(l) for l in res.stdout.splitlines() if l.startswith("{"))}
    assert res.returncode == 0, res.stderr[-4000:]
    stderr = " ".join(res.stderr.split())  # rich wraps lines
    assert "started the embedded broker (amqtt)" in stderr and "started mosquitto" not in stderr, stderr[:2000]
    assert "online over MQTT 3.1.1" in stderr
    assert (steps["online"]["broker"], steps["online"]["mqtt_protocol"]) == ("embedded", "3.1.1"), steps["online"]
    assert 'share_group = ""' in (workdir / "coordinator.toml").read_text()
    assert list(steps) == ["online", "train", "push", "rollout", "telemetry", "push_bad", "bad_rollout", "summary"], list(steps)
    assert all(s["ok"] for s in steps.values())
    assert steps["rollout"]["state"] == "done" and all(d["state"] == "committed" for d in steps["rollout"]["devices"])
    assert {r["device_name"] for r in steps["telemetry"]["rows"]} == {d["name"] for d in steps["online"]["devices"]}
    bad = steps["bad_rollout"]
    assert bad["state"] == "aborted" and bad["counts"].get("rolled_back", 0) >= 1, bad
    assert bad["acted_by"] == "agent", bad
    assert not any(h["version"] == bad["bad_version"] and h["state"] in ("trial", "committed", "active") for h in bad["last_history"].values())
    # Every process it started is gone: the coordinator and the simulator name the workdir; the broker does not.
    assert _processes_mentioning(str(workdir)) == []
    assert set(_processes_mentioning("coordinator.embedded_broker")) <= brokers_before


def test_mqtt5_asked_for_where_only_the_embedded_broker_can_run_is_refused_before_anything_starts(tmp_path):
    workdir = tmp_path / "demo"
    res = subprocess.run(
        [script("edgectl"), "demo", "--once", "--mqtt-protocol", "5", "--broker", f"mqtt://127.0.0.1:{free_port()}", "--dir", str(workdir)],
        env=base_env(PATH=_path_without_mosquitto()), capture_output=True, text=True, timeout=60,
    )
    assert res.returncode != 0
    assert "speaks MQTT 3.1.1 only" in " ".join(res.stderr.split()), res.stderr
    assert sorted(p.name for p in workdir.iterdir()) == []  # no broker, coordinator or device was started

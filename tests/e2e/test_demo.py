"""The README's first command, small: `edgectl demo --once` brings a fleet online and leaves nothing behind."""
from __future__ import annotations

import os
import signal
import subprocess

import pytest

from tests.fleet import Process, base_env, script
from tests.mosquitto import free_port


def _processes_mentioning(text: str) -> list[str]:
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            cmd = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmd:
            out.append(cmd)
    return out


@pytest.mark.slow
def test_demo_once_with_a_private_broker(tmp_path):
    workdir = tmp_path / "demo"
    # Nothing listens on this port, so the demo must start its own broker.
    res = subprocess.run(
        [script("edgectl"), "demo", "--once", "--devices", "3", "--broker", f"mqtt://127.0.0.1:{free_port()}", "--dir", str(workdir), "--fleet-only"],
        env=base_env(),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert res.returncode == 0, res.stderr
    assert "started mosquitto" in res.stderr
    rows = [l for l in res.stdout.splitlines()[1:] if l.strip()]
    assert len(rows) == 3 and all(" online " in r for r in rows), res.stdout
    kinds = {r.split()[0].rsplit("-", 1)[0] for r in rows}
    assert kinds == {"raspberry-pi-4", "raspberry-pi-zero-2-w", "coral-dev-board"}
    assert "edgetpu" in next(r for r in rows if r.startswith("coral-dev-board"))
    assert _processes_mentioning(str(workdir)) == []


@pytest.mark.slow
def test_demo_interrupted_cleans_up(tmp_path):
    workdir = tmp_path / "demo"
    demo = Process([script("edgectl"), "demo", "--devices", "2", "--dir", str(workdir), "--broker", f"mqtt://127.0.0.1:{free_port()}",
                    "--plot", str(tmp_path / "demo.png")], base_env(), tmp_path / "demo.log")  # not into the checkout
    try:
        demo.wait_line(lambda l: "devices online" in l, 120)
        # Besides the demo: the broker (its config), the coordinator (its config), `edge-agent simulate` (the fleet dir).
        children = [c for c in _processes_mentioning(str(workdir)) if " demo " not in c]
        kinds = ("mosquitto", "edge-coordinator", "edge-agent simulate")
        assert sorted(next((k for k in kinds if k in c), c) for c in children) == [
            "edge-agent simulate", "edge-coordinator", "mosquitto"], children
        demo.signal(signal.SIGINT)
        assert demo.proc.wait(60) == 0
    finally:
        demo.stop()
    assert _processes_mentioning(str(workdir)) == []

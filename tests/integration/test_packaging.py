"""Packaging promises: the agent extra and the agent/edgectl code stay free of TensorFlow."""
from __future__ import annotations

import json
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAVY = {"tensorflow", "tensorflow-cpu", "tf-keras", "tf_keras", "keras", "tensorflow-model-optimization", "tensorflow-io-gcs-filesystem"}


@pytest.mark.slow
def test_agent_extra_in_a_clean_venv_pulls_no_tensorflow(tmp_path):
    """Resolve `pip install .[agent]` in a fresh venv (dry run: the full resolution, nothing installed)."""
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    report = tmp_path / "report.json"
    res = subprocess.run(
        [str(env_dir / "bin" / "python"), "-m", "pip", "install", "-q", "--dry-run", "--ignore-installed", "--report", str(report), f"{ROOT}[agent]"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    names = {item["metadata"]["name"].lower().replace("_", "-") for item in json.loads(report.read_text())["install"]}
    assert {"ai-edge-litert", "paho-mqtt", "grpcio", "protobuf", "psutil", "cryptography"} <= names
    assert not names & HEAVY, f"the agent extra pulls {sorted(names & HEAVY)}"


def _modules_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys, json; print(json.dumps(sorted(sys.modules)))"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_agent_code_imports_no_tensorflow_or_coordinator():
    mods = _modules_after(
        "import agent.cli, agent.commands, agent.daemon, agent.link, agent.simulate, agent.enroll, agent.identity, agent.probe, agent.profile\n"
        "from agent.daemon import probe_hardware\n"
        "import tempfile; probe_hardware(tempfile.mkdtemp(), 'raspberry-pi-4')"
    )
    assert not {m for m in mods if m.split(".")[0] in ("tensorflow", "tf_keras", "keras", "coordinator")}


def test_edgectl_imports_no_tensorflow():
    mods = _modules_after("import coordinator.cli.app, coordinator.cli.devices")
    assert not {m for m in mods if m.split(".")[0] in ("tensorflow", "tf_keras", "keras", "tensorflow_model_optimization")}

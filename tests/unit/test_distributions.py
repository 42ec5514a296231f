"""agent.distributions answers as importlib.metadata.version does, without importing it."""
from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from agent import distributions

REPO = Path(__file__).resolve().parents[2]


def _reference(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


@pytest.mark.parametrize("name", ["ai-edge-litert", "AI_Edge.LiteRT", "numpy", "grpcio", "paho-mqtt", "protobuf",
                                  "edgefleet", "tflite-runtime", "no-such-distribution"])
def test_installed_distributions_match_importlib_metadata(name: str) -> None:
    assert distributions.version(name) == _reference(name)


def _dist(root: Path, dirname: str, text: str, filename: str = "METADATA") -> None:
    (root / dirname).mkdir(parents=True)
    (root / dirname / filename).write_text(text)


def test_layouts_on_sys_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    _dist(first, "Foo_Bar-1.0.dist-info", "Metadata-Version: 2.1\nName: foo-bar\nVersion: 1.0\n\nVersion: 9\n")
    _dist(second, "foo.bar-2.0.dist-info", "Name: foo.bar\nVersion: 2.0\n")       # later on sys.path: not seen
    _dist(second, "old-3.0.egg-info", "Name: old\nVersion: 3.0\n", "PKG-INFO")   # PKG-INFO when no METADATA
    (second / "flat-4.0.egg-info").write_text("Name: flat\nVersion: 4.0\n")      # an egg-info file
    _dist(second, "wrapped-5.0.dist-info", "Name: wrapped\nVersion: 5.0\n 5.1\n")  # a folded header: email's rules
    _dist(second, "noversion-1.dist-info", "Name: noversion\n")
    monkeypatch.setattr(sys, "path", [str(tmp_path / "missing"), str(first), str(second)])
    for name, expected in (("foo-bar", "1.0"), ("FOO.BAR", "1.0"), ("old", "3.0"), ("flat", "4.0"), ("wrapped", None),
                           ("noversion", None), ("absent", None)):
        assert distributions.version(name) == _reference(name), name
        if expected is not None:
            assert distributions.version(name) == expected


def test_a_zip_on_sys_path_is_left_to_importlib_metadata(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = tmp_path / "bundle.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("zipped-7.0.dist-info/METADATA", "Name: zipped\nVersion: 7.0\n")
    monkeypatch.setattr(sys, "path", [str(archive)])
    assert distributions.version("zipped") == "7.0" == _reference("zipped")


def test_the_agent_start_path_keeps_rare_path_modules_out() -> None:
    """What `edge-agent run` imports to start, resolve the runtime and probe the hardware must not
    include what only rare paths need (they stay resident in the daemon for its whole life)."""
    code = ("import sys, agent.cli, agent.daemon\n"
            "from agent.runtime import loader; loader.runtime()\n"
            "from agent.probe.runtime import detect_runtime; detect_runtime()\n"
            "from agent.version import AGENT_VERSION\n"
            "from agent.profile import probe_with_profile\n"
            "print(' '.join(sorted(sys.modules)))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120,
                            env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    loaded = set(result.stdout.split())
    assert "agent.daemon" in loaded and "agent.runtime.loader" in loaded  # the check ran the start path
    rare = {"importlib.metadata", "zipfile", "csv", "importlib.resources", "tomllib", "typer", "pydantic",
            "cryptography", "tensorflow", "coordinator"}
    assert not loaded & rare, sorted(loaded & rare)

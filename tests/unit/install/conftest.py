"""Fixtures for the install path: test models, a signing key, and a rig that runs an Installer
against an in-process blob server (no broker), with a fake clock and crash points that raise."""
from __future__ import annotations

from pathlib import Path

import pytest

from agent.install.crash import CrashPoints
from agent.install.machine import Installer
from edgefleet import envelope
from edgefleet.v1 import events_pb2, transfer_pb2
from tests.unit.install import harness
from tests.unit.install.harness import BlobServer, FakeClock, Signer


@pytest.fixture(scope="session")
def models(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    cache = getattr(request.config, "cache", None)
    root = Path(cache.mkdir("edgefleet-runtime-models")) if cache is not None else tmp_path_factory.mktemp("models")
    return harness.build_models(root)


@pytest.fixture(scope="session")
def signer() -> Signer:
    return Signer()


class Crashed(Exception):
    """Stands in for os._exit at a crash point: the installer stops dead, nothing is cleaned up."""


class RaisingCrashPoints(CrashPoints):
    @staticmethod
    def _die(point: str) -> None:
        raise Crashed(point)


class Rig:
    """One device's state directory, restartable: `start()` builds a new Installer on it."""

    def __init__(self, state_dir: Path, signer: Signer, **installer_kw) -> None:
        self.state_dir = state_dir
        self.signer = signer
        self.ident = harness.identity(signer)
        self.clock = FakeClock()
        self.server = BlobServer()
        self.events: list[events_pb2.Event] = []
        self.requests: list[transfer_pb2.BlobRequest] = []
        self.kw = {"acceptance_runs": 5, **installer_kw}
        self.installer: Installer | None = None

    def publish(self, topic: str, payload: bytes, qos: int) -> None:
        env = envelope.decode(payload, expect="blob_request")
        assert topic.endswith("/blob/req")
        self.requests.append(env.blob_request)

    def start(self, crash_at: str = "", resume: bool = True, **kw) -> Installer:
        if self.installer is not None:
            for d in self.installer._downloads.values():
                d.close()
        self.requests.clear()
        self.installer = Installer(self.state_dir, self.ident, self.publish, self.events.append, clock=self.clock,
                                   crash_points=RaisingCrashPoints(crash_at), **{**self.kw, **kw})
        if resume:
            self.installer.resume()
        return self.installer

    def deploy(self, signed, command_id: str) -> None:
        self.installer.handle_command(harness.deploy_command(signed, command_id))

    def serve(self, chunk_filter=None, max_chunks: int | None = None) -> int:
        """Answer pending requests (and the ones they trigger) until none is left; returns chunks sent."""
        sent = 0
        while self.requests:
            request = self.requests.pop(0)
            for chunk in self.server.answer(request):
                for out in (chunk_filter(chunk) if chunk_filter else [chunk]):
                    if max_chunks is not None and sent >= max_chunks:
                        return sent
                    sent += 1
                    self.installer.handle_chunk(out)
        return sent

    def states(self) -> list[str]:
        return harness.state_names(self.events)

    def last(self) -> events_pb2.InstallProgress:
        return harness.install_events(self.events)[-1]


@pytest.fixture
def rig(tmp_path: Path, signer: Signer) -> Rig:
    return Rig(tmp_path / "state", signer)

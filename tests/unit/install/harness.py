"""Test side of the install protocol: a signing key, signed manifests and rollback orders, a blob
server that answers BlobRequests the way the coordinator does, golden sets, and the tiny .tflite
models of tests/unit/runtime_models.py (built once in a subprocess, cached like the runtime tests)."""
from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.identity import Identity, MqttIdentity
from agent.manifest import key_id
from edgefleet import envelope
from edgefleet.v1 import commands_pb2, events_pb2, manifest_pb2, transfer_pb2

BUILDER = Path(__file__).resolve().parents[1] / "runtime_models.py"
DEVICE_ID = "dev-install-1"


def build_models(cache_root: Path) -> Path:
    """The runtime tests' models (float32, int8, custom_op...), built once per builder version."""
    digest = hashlib.sha256(BUILDER.read_bytes()).hexdigest()[:16]
    target = cache_root / digest
    if (target / "reference.npz").is_file():
        return target
    staging = cache_root / f"{digest}.tmp-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    result = subprocess.run([sys.executable, str(BUILDER), str(staging)], capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, f"building test models failed:\n{result.stderr[-4000:]}"
    try:
        staging.rename(target)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Signer:
    def __init__(self) -> None:
        self.key = Ed25519PrivateKey.generate()
        self.public_raw = self.key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self.key_id = key_id(self.public_raw)

    def manifest(self, m: manifest_pb2.ModelManifest, *, key_id: str | None = None) -> manifest_pb2.SignedManifest:
        data = m.SerializeToString()
        return manifest_pb2.SignedManifest(manifest=data, signature=self.key.sign(data), key_id=key_id or self.key_id)

    def rollback(self, order: commands_pb2.RollbackOrder) -> commands_pb2.Rollback:
        data = order.SerializeToString()
        return commands_pb2.Rollback(order=data, signature=self.key.sign(data), key_id=self.key_id)


def identity(signer: Signer, device_id: str = DEVICE_ID, url: str = "mqtt://127.0.0.1:1") -> Identity:
    return Identity(device_id=device_id, device_name=device_id, coordinator="127.0.0.1:1",
                    mqtt=MqttIdentity(url=url, client_id=device_id, username="", password="", keepalive_s=5),
                    public_key_hex=signer.public_raw.hex(), key_id=signer.key_id)


def golden_npz(models: Path, *, count: int = 32, wrong: bool = False, seed: int = 3) -> bytes:
    """x in [-1, 1]^4 and the labels the reference linear model gives them (or wrong ones)."""
    ref = np.load(models / "reference.npz")
    x = np.random.default_rng(seed).uniform(-1, 1, size=(count, 4)).astype(np.float32)
    y = np.argmax(x @ ref["w"] + ref["b"], axis=1)
    if wrong:
        y = (y + 1) % 3
    buf = io.BytesIO()
    np.savez(buf, x=x, y=y)
    return buf.getvalue()


def manifest(model: bytes, *, version: str, sequence: int, golden: bytes | None = None, device_id: str = DEVICE_ID,
             chunk_size: int = 256, rollout_id: str = "r1", variant_id: str | None = None, min_metric: float = 0.0,
             max_p95_ms: float = 0.0, trial_seconds: int = 0, trial_inferences: int = 0, max_restarts: int = 0,
             model_name: str = "digits") -> manifest_pb2.ModelManifest:
    m = manifest_pb2.ModelManifest(
        device_id=device_id, model=model_name, version=version, variant_id=variant_id or f"{model_name}-{version}",
        technique="fp32", sha256=sha256(model), size_bytes=len(model), chunk_size=chunk_size, sequence=sequence,
        task="classification", rollout_id=rollout_id)
    if golden is not None:
        m.golden.sha256 = sha256(golden)
        m.golden.size_bytes = len(golden)
        m.golden.count = 32
    m.acceptance.min_metric = min_metric
    m.acceptance.max_p95_ms = max_p95_ms
    m.trial.seconds = trial_seconds
    m.trial.inferences = trial_inferences
    m.trial.max_restarts = max_restarts
    return m


def deploy_command(signed: manifest_pb2.SignedManifest, command_id: str) -> commands_pb2.Command:
    return commands_pb2.Command(command_id=command_id, deploy=commands_pb2.Deploy(manifest=signed))


def command_env(device_id: str, command: commands_pb2.Command) -> bytes:
    return envelope.encode(device_id, command=command)


@dataclass
class BlobServer:
    """The coordinator's side of the transfer: answers every requested offset with its chunk."""
    blobs: dict[str, bytes] = field(default_factory=dict)
    served: list[tuple[str, int]] = field(default_factory=list)

    def add(self, data: bytes) -> str:
        digest = sha256(data)
        self.blobs[digest] = data
        return digest

    def answer(self, request: transfer_pb2.BlobRequest) -> list[transfer_pb2.BlobChunk]:
        data = self.blobs.get(request.sha256)
        if data is None:
            return [transfer_pb2.BlobChunk(sha256=request.sha256, offset=o, error="unknown blob") for o in request.offsets]
        chunks = []
        for offset in request.offsets:
            self.served.append((request.sha256, offset))
            chunks.append(transfer_pb2.BlobChunk(sha256=request.sha256, offset=offset, total_size=len(data),
                                                 data=data[offset:offset + request.chunk_size]))
        return chunks


def install_events(events: list[events_pb2.Event]) -> list[events_pb2.InstallProgress]:
    return [e.install for e in events if e.WhichOneof("kind") == "install"]


def state_names(events: list[events_pb2.Event]) -> list[str]:
    return [events_pb2.InstallState.Name(p.state).removeprefix("INSTALL_STATE_").lower() for p in install_events(events)]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


ChunkFilter = Callable[[transfer_pb2.BlobChunk], list[transfer_pb2.BlobChunk]]

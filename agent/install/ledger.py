"""The install path's persisted memory: `<state_dir>/install/ledger.json`, rewritten atomically.

It holds the highest sequence accepted (no downgrade by replay, across restarts), the install in
progress with its state and counters (Mender style: the state is written before the agent acts on
it, and every entry into a state is counted so a crash loop ends in a failure instead of forever),
the outcome of the last install (re-reported after a restart), the (rollout, model, version, variant)
tuples rolled back (never installed again by the same rollout), and recent command ids (QoS 1
redeliveries are ignored).
"""
from __future__ import annotations

import base64
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path

from agent.install.durable import write_atomic
from edgefleet.v1 import manifest_pb2

log = logging.getLogger(__name__)

LEDGER_FILE = "ledger.json"
RECENT_COMMANDS = 64

# States of an install in progress (persisted names) and the terminal outcomes.
DOWNLOADING = "downloading"
VERIFYING = "verifying"
STAGED = "staged"
TRIAL = "trial"
ROLLING_BACK = "rolling_back"    # intent: the pointer is being restored; finished again after a crash
COMMITTED = "committed"
ROLLED_BACK = "rolled_back"
FAILED = "failed"
IN_PROGRESS = (DOWNLOADING, VERIFYING, STAGED, TRIAL, ROLLING_BACK)
OUTCOMES = (COMMITTED, ROLLED_BACK, FAILED)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@dataclass
class Job:
    command_id: str
    signed: bytes                      # SignedManifest bytes as received
    state: str
    slot: str                          # the slot this model goes into
    attempts: dict[str, int] = field(default_factory=dict)
    verify_failures: int = 0
    restarts: int = 0                  # agent restarts during the trial
    clean_stop: bool = False           # the agent stopped cleanly during the trial: not a crash
    reason: str = ""                   # for rolling_back: why
    figures: dict[str, float] = field(default_factory=dict)
    rollback_order: bool = False       # rolling back because the coordinator said so

    @cached_property
    def signed_manifest(self) -> manifest_pb2.SignedManifest:
        return manifest_pb2.SignedManifest.FromString(self.signed)

    @cached_property
    def manifest(self) -> manifest_pb2.ModelManifest:
        return manifest_pb2.ModelManifest.FromString(self.signed_manifest.manifest)

    def to_json(self) -> dict:
        data = {k: v for k, v in asdict(self).items() if k != "signed"}
        data["signed"] = _b64(self.signed)
        return data

    @classmethod
    def from_json(cls, data: dict) -> Job:
        data = dict(data)
        data["signed"] = base64.b64decode(data["signed"])
        return cls(**data)


@dataclass
class Outcome:
    command_id: str
    signed: bytes
    state: str                         # committed | rolled_back | failed
    reason: str = ""
    figures: dict[str, float] = field(default_factory=dict)

    @property
    def manifest(self) -> manifest_pb2.ModelManifest:
        signed = manifest_pb2.SignedManifest.FromString(self.signed)
        return manifest_pb2.ModelManifest.FromString(signed.manifest)

    def to_json(self) -> dict:
        data = asdict(self)
        data["signed"] = _b64(self.signed)
        return data

    @classmethod
    def from_json(cls, data: dict) -> Outcome:
        data = dict(data)
        data["signed"] = base64.b64decode(data["signed"])
        return cls(**data)


class Ledger:
    def __init__(self, directory: Path) -> None:
        self.path = Path(directory) / LEDGER_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.last_sequence: int
        self.job: Job | None
        self.last_outcome: Outcome | None
        self.rolled_back: set[tuple[str, str, str, str]]
        self.recent_commands: list[str]
        self._reset_fields()
        self.recovered: str | None = None   # why the file was moved aside, when it was
        self._load()

    def _load(self) -> None:
        try:
            raw = json.loads(self.path.read_text())
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            self._move_aside(exc)
            return
        try:
            self.last_sequence = int(raw.get("last_sequence", 0))
            self.job = Job.from_json(raw["job"]) if raw.get("job") else None
            self.last_outcome = Outcome.from_json(raw["last_outcome"]) if raw.get("last_outcome") else None
            self.rolled_back = {tuple(item) for item in raw.get("rolled_back", [])}
            self.recent_commands = list(raw.get("recent_commands", []))
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            self._reset_fields()
            self._move_aside(exc)

    def _reset_fields(self) -> None:
        self.last_sequence = 0
        self.job = None
        self.last_outcome = None
        self.rolled_back = set()
        self.recent_commands = []

    def _move_aside(self, exc: BaseException) -> None:
        """Only a damaged disk does this (writes are atomic). The pointer still says what runs; the
        caller restores the sequence floor from the manifests in the slots (`recovered`)."""
        target = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
        try:
            self.path.replace(target)
        except OSError:
            target = self.path
        self.recovered = f"install ledger {self.path} was unreadable ({exc}); moved to {target.name}"
        log.error("%s", self.recovered)

    def save(self) -> None:
        data = {
            "last_sequence": self.last_sequence,
            "job": self.job.to_json() if self.job else None,
            "last_outcome": self.last_outcome.to_json() if self.last_outcome else None,
            "rolled_back": sorted(list(item) for item in self.rolled_back),
            "recent_commands": self.recent_commands[-RECENT_COMMANDS:],
        }
        write_atomic(self.path, json.dumps(data, indent=1).encode())

    def remember_command(self, command_id: str) -> None:
        if command_id and command_id not in self.recent_commands:
            self.recent_commands.append(command_id)
            del self.recent_commands[:-RECENT_COMMANDS]

    def seen(self, command_id: str) -> bool:
        return bool(command_id) and command_id in self.recent_commands

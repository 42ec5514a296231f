"""The install path's persisted memory: `<state_dir>/install/ledger.0` and `ledger.1`, written alternately.

It holds the highest sequence accepted (no downgrade by replay, across restarts), the install in
progress with its state and counters (Mender style: the state is written before the agent acts on
it, and every entry into a state is counted so a crash loop ends in a failure instead of forever),
the outcome of the last install (re-reported after a restart), the (rollout, model, version, variant)
tuples rolled back (never installed again by the same rollout), and recent command ids (QoS 1
redeliveries are ignored).

On disk: two record files, each `EFL1 | generation (u64) | length (u32) | crc32 (u32) | JSON`. A save
overwrites the older file in place and fdatasyncs it (one flush, no temporary file, rename or
directory fsync: the files exist from the first save on), so the other file always holds the
previous state whole. Loading takes the valid record with the highest generation. A save cut short
by a power cut fails its CRC and the previous state is used: the agent acts on a state only after
save() returned, so that previous state is one it had not left yet. When neither file holds a valid
record the ledger is damaged (a disk fault): the files are moved aside and the caller restores the
sequence floor (`recovered`). A `ledger.json` left by an older agent is read once and removed after
the first save.
"""
from __future__ import annotations

import base64
import functools
import json
import logging
import os
import struct
import time
import zlib
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from agent.install.durable import fsync_dir
from edgefleet.v1 import manifest_pb2

log = logging.getLogger(__name__)

LEDGER_FILES = ("ledger.0", "ledger.1")
LEGACY_FILE = "ledger.json"       # the single-file format of older agents (write + fsync + rename)
RECENT_COMMANDS = 64
_MAGIC = b"EFL1"
_HEADER = struct.Struct("<4sQII")  # magic, generation, payload length, crc32(generation + payload)
_fdatasync = getattr(os, "fdatasync", os.fsync)

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


@functools.lru_cache(maxsize=8)
def _b64(data: bytes) -> str:
    # The same signed manifest is written at every state change of an install: encode it once.
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
        return {"command_id": self.command_id, "signed": _b64(self.signed), "state": self.state, "slot": self.slot,
                "attempts": dict(self.attempts), "verify_failures": self.verify_failures, "restarts": self.restarts,
                "clean_stop": self.clean_stop, "reason": self.reason, "figures": dict(self.figures),
                "rollback_order": self.rollback_order}

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
        return {"command_id": self.command_id, "signed": _b64(self.signed), "state": self.state, "reason": self.reason,
                "figures": dict(self.figures)}

    @classmethod
    def from_json(cls, data: dict) -> Outcome:
        data = dict(data)
        data["signed"] = base64.b64decode(data["signed"])
        return cls(**data)


class Ledger:
    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.paths = tuple(self.directory / name for name in LEDGER_FILES)
        self.legacy_path = self.directory / LEGACY_FILE
        self.last_sequence: int
        self.job: Job | None
        self.last_outcome: Outcome | None
        self.rolled_back: set[tuple[str, str, str, str]]
        self.recent_commands: list[str]
        self._reset_fields()
        self.generation = 0                 # of the record loaded or last saved
        self.recovered: str | None = None   # why the files were moved aside, when they were
        self._legacy = False                # a ledger.json of an older agent was read
        self._load()

    # -- reading ------------------------------------------------------------------------------

    def _load(self) -> None:
        records: list[tuple[int, dict]] = []
        damaged: list[str] = []
        for path in self.paths:
            try:
                raw = path.read_bytes()
            except FileNotFoundError:
                continue
            except OSError as exc:
                damaged.append(f"{path.name}: {exc}")
                continue
            try:
                records.append(_decode(raw))
            except ValueError as exc:
                damaged.append(f"{path.name}: {exc}")
        if records:
            # The newest valid record; a damaged other file is the save a crash cut short.
            self.generation, raw_state = max(records, key=lambda r: r[0])
            if not self._apply(raw_state, "install ledger"):
                self._move_aside(self.paths, "; ".join(damaged) or "unreadable fields")
            return
        if damaged:
            self._move_aside(self.paths, "; ".join(damaged))
            return
        self._load_legacy()

    def _load_legacy(self) -> None:
        try:
            raw = json.loads(self.legacy_path.read_text())
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            self._move_aside((self.legacy_path,), str(exc))
            return
        if self._apply(raw, "legacy install ledger"):
            self._legacy = True
        else:
            self._move_aside((self.legacy_path,), "unreadable fields")

    def _apply(self, raw: dict, what: str) -> bool:
        try:
            self.last_sequence = int(raw.get("last_sequence", 0))
            self.job = Job.from_json(raw["job"]) if raw.get("job") else None
            self.last_outcome = Outcome.from_json(raw["last_outcome"]) if raw.get("last_outcome") else None
            self.rolled_back = {tuple(item) for item in raw.get("rolled_back", [])}
            self.recent_commands = list(raw.get("recent_commands", []))
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            log.error("%s has unreadable fields: %s", what, exc)
            self._reset_fields()
            return False
        return True

    def _reset_fields(self) -> None:
        self.last_sequence = 0
        self.job = None
        self.last_outcome = None
        self.rolled_back = set()
        self.recent_commands = []

    def _move_aside(self, paths, why: str) -> None:
        """Only a damaged disk does this (a torn save leaves the other record whole). The pointer still
        says what runs; the caller restores the sequence floor from the manifests in the slots (`recovered`)."""
        self._reset_fields()
        self.generation = 0
        moved = []
        stamp = int(time.time())
        for path in paths:
            if not path.exists():
                continue
            target = path.with_name(f"{path.name}.corrupt-{stamp}")
            try:
                path.replace(target)
                moved.append(target.name)
            except OSError:
                moved.append(f"{path.name} (could not be moved)")
        self.recovered = f"install ledger in {self.directory} was unreadable ({why}); moved to {', '.join(moved) or 'nowhere'}"
        log.error("%s", self.recovered)

    # -- writing ------------------------------------------------------------------------------

    def save(self) -> None:
        """Durable when it returns: the record is on disk (fdatasync) in the file not holding the last one."""
        data = {
            "last_sequence": self.last_sequence,
            "job": self.job.to_json() if self.job else None,
            "last_outcome": self.last_outcome.to_json() if self.last_outcome else None,
            "rolled_back": sorted(list(item) for item in self.rolled_back),
            "recent_commands": self.recent_commands[-RECENT_COMMANDS:],
        }
        generation = self.generation + 1
        record = _encode(generation, json.dumps(data, separators=(",", ":")).encode())
        path = self.paths[generation % 2]
        created = not path.exists()  # only the first saves of a device create a file
        # Opened per save, not kept open: the simulator runs hundreds of installers in one process.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            view = memoryview(record)
            position = 0
            while position < len(view):
                position += os.pwrite(fd, view[position:], position)
            _fdatasync(fd)
        finally:
            os.close(fd)
        if created:
            fsync_dir(self.directory)  # once per file: from then on it is only overwritten in place
        self.generation = generation
        if self._legacy:  # the new record is on disk: the old format's file can go
            self.legacy_path.unlink(missing_ok=True)
            self._legacy = False

    def remember_command(self, command_id: str) -> None:
        if command_id and command_id not in self.recent_commands:
            self.recent_commands.append(command_id)
            del self.recent_commands[:-RECENT_COMMANDS]

    def seen(self, command_id: str) -> bool:
        return bool(command_id) and command_id in self.recent_commands


def _encode(generation: int, payload: bytes) -> bytes:
    crc = zlib.crc32(payload, zlib.crc32(generation.to_bytes(8, "little")))
    return _HEADER.pack(_MAGIC, generation, len(payload), crc) + payload


def _decode(raw: bytes) -> tuple[int, dict]:
    """(generation, state) of one record file; ValueError naming what is wrong with it."""
    if len(raw) < _HEADER.size:
        raise ValueError(f"{len(raw)} bytes, shorter than a record header")
    magic, generation, length, crc = _HEADER.unpack_from(raw)
    if magic != _MAGIC:
        raise ValueError(f"not a ledger record (starts with {magic!r})")
    payload = raw[_HEADER.size:_HEADER.size + length]
    if len(payload) != length or zlib.crc32(payload, zlib.crc32(generation.to_bytes(8, "little"))) != crc:
        raise ValueError(f"record {generation} is incomplete or damaged (crc mismatch)")
    try:
        state = json.loads(payload)
    except ValueError as exc:
        raise ValueError(f"record {generation} is not JSON: {exc}") from None
    if not isinstance(state, dict):
        raise ValueError(f"record {generation} is not a JSON object")
    return generation, state

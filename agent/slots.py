"""The A/B model store: two slots on disk and a pointer naming the active and the previous one.

    <state_dir>/models/slot-a/   manifest.bin (SignedManifest bytes), <sha256>.tflite, <sha256>.npz (golden set)
    <state_dir>/models/slot-b/
    <state_dir>/models/pointer.json   {"active": "slot-a", "previous": "slot-b"}

A new model is installed into the slot that is not active; activation rewrites the pointer atomically
(write + fsync + rename + fsync(dir)), so after a crash the pointer names the old slot or the new one,
never something half-written. Files in a slot are named by their digest, so a slot's content can be
checked against its manifest at any time. Only the pointer says what runs; the slots only hold bytes.

Filling a slot: clear() it (the pointer forgets it first, durably, when it was the previous slot),
place() the verified files, seal() it with the manifest. seal() fsyncs the slot directory, which makes
everything done to the slot since the clear durable at once; until then nothing names the slot (not
the pointer; an install clears it again before placing anything, also after a restart), so clear()
and place() do not fsync it.

What a slot holds is read once and remembered (`content`); this store's own writes to a slot forget
it. Another process changing a slot meanwhile is not seen: the installer hashes a slot's files
(`content(slot, fresh=True)`) before it trusts them after a restart.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from google.protobuf.message import DecodeError

from agent.install.durable import replace_durably, write_atomic
from edgefleet.v1 import manifest_pb2

log = logging.getLogger(__name__)

SLOTS = ("slot-a", "slot-b")
POINTER_FILE = "pointer.json"
MANIFEST_FILE = "manifest.bin"
MODEL_SUFFIX = ".tflite"
GOLDEN_SUFFIX = ".npz"


class SlotError(RuntimeError):
    """The slot store cannot do what was asked; the message names the slot and why."""


@dataclass(frozen=True)
class Pointer:
    active: str | None = None
    previous: str | None = None


@dataclass(frozen=True)
class SlotContent:
    slot: str
    signed: manifest_pb2.SignedManifest
    manifest: manifest_pb2.ModelManifest
    model_path: Path
    golden_path: Path | None


class SlotStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        for slot in SLOTS:
            (self.root / slot).mkdir(parents=True, exist_ok=True, mode=0o700)
        self._pointer = self._read_pointer()
        self._contents: dict[str, SlotContent | None] = {}  # slot -> what content() read last

    # -- the pointer --------------------------------------------------------------------------

    @property
    def pointer(self) -> Pointer:
        return self._pointer

    def _read_pointer(self) -> Pointer:
        path = self.root / POINTER_FILE
        try:
            raw = json.loads(path.read_text())
            pointer = Pointer(raw.get("active"), raw.get("previous"))
        except FileNotFoundError:
            return Pointer()
        except (OSError, ValueError, AttributeError) as exc:
            # Cannot come from our own writes (atomic rename); a damaged disk. Run nothing rather than guess.
            log.error("model pointer %s is unreadable (%s): no model is active until the next install", path, exc)
            return Pointer()
        if pointer.active not in (None, *SLOTS) or pointer.previous not in (None, *SLOTS) or (
                pointer.active is not None and pointer.active == pointer.previous):
            log.error("model pointer %s names unknown slots %s: no model is active until the next install", path, raw)
            return Pointer()
        return pointer

    def _write_pointer(self, pointer: Pointer) -> Pointer:
        data = json.dumps({"active": pointer.active, "previous": pointer.previous}).encode()
        write_atomic(self.root / POINTER_FILE, data)
        self._pointer = pointer
        return pointer

    def inactive(self) -> str:
        """The slot a new model goes into: the one that is not active."""
        return SLOTS[1] if self._pointer.active == SLOTS[0] else SLOTS[0]

    def activate(self, slot: str) -> Pointer:
        """Make `slot` active and keep the one it replaces as previous (idempotent after a crash)."""
        self._check(slot)
        if self._pointer.active == slot:
            return self._pointer
        if self.content(slot) is None:
            raise SlotError(f"cannot activate {slot}: it holds no complete model")
        return self._write_pointer(Pointer(active=slot, previous=self._pointer.active))

    def restore_previous(self) -> Pointer:
        """Go back to the previous slot (or to no model when there was none). The slot left behind
        is not kept as `previous`: a later rollback must not bring it back."""
        return self._write_pointer(Pointer(active=self._pointer.previous, previous=None))

    def forget_previous(self) -> Pointer:
        """Called before the previous slot is overwritten: it can no longer be rolled back to."""
        if self._pointer.previous is None:
            return self._pointer
        return self._write_pointer(Pointer(active=self._pointer.active, previous=None))

    # -- slot contents ------------------------------------------------------------------------

    def path(self, slot: str) -> Path:
        self._check(slot)
        return self.root / slot

    def content(self, slot: str | None, *, fresh: bool = False) -> SlotContent | None:
        """What the slot holds, or None when it holds no complete, readable model. Remembered until this
        store writes to the slot (every progress report asks for the active model); fresh=True reads the
        disk again."""
        if slot is None:
            return None
        if not fresh and slot in self._contents:
            return self._contents[slot]
        content = self._read_content(slot)
        self._contents[slot] = content
        return content

    def _read_content(self, slot: str) -> SlotContent | None:
        directory = self.path(slot)
        try:
            data = (directory / MANIFEST_FILE).read_bytes()
        except OSError:
            return None
        signed = manifest_pb2.SignedManifest()
        manifest = manifest_pb2.ModelManifest()
        try:
            signed.ParseFromString(data)
            manifest.ParseFromString(signed.manifest)
        except DecodeError:
            return None
        model = directory / (manifest.sha256 + MODEL_SUFFIX)
        golden = directory / (manifest.golden.sha256 + GOLDEN_SUFFIX) if manifest.golden.sha256 else None
        if not model.is_file() or (golden is not None and not golden.is_file()):
            return None
        return SlotContent(slot, signed, manifest, model, golden)

    def active(self) -> SlotContent | None:
        return self.content(self._pointer.active)

    def clear(self, slot: str, keep: tuple[str, ...] = ()) -> None:
        """Empty a slot that is not active, except the file names in `keep` (a half-done staging)."""
        if slot == self._pointer.active:
            raise SlotError(f"refusing to clear {slot}: it is the active slot")
        if slot == self._pointer.previous:
            self.forget_previous()  # durable before the slot changes: a rollback never lands in it
        directory = self.path(slot)
        self._contents.pop(slot, None)
        # The manifest first: a slot without it holds no model, whatever else is left in it.
        (directory / MANIFEST_FILE).unlink(missing_ok=True)
        for entry in directory.iterdir():
            if entry.name in keep:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
        # No directory fsync here: nothing names this slot any more (the pointer forgot it above). After a
        # power cut it may show some of its old files again; the install that fills it clears it again
        # first (also when it resumes), and seal() makes the new content durable in one directory fsync.

    def place(self, slot: str, src: Path, name: str, *, sync: bool = True) -> Path:
        """Move a verified file (its data already fsynced) into a slot that is not active. sync=False leaves
        the slot's directory fsync to seal() (one for several files) and the source's to the caller."""
        if slot == self._pointer.active:
            raise SlotError(f"refusing to write into {slot}: it is the active slot")
        target = self.path(slot) / name
        self._contents.pop(slot, None)
        if sync:
            replace_durably(Path(src), target)
        else:
            os.replace(src, target)
        return target

    def seal(self, slot: str, signed: manifest_pb2.SignedManifest) -> None:
        """Write the manifest last: from here on the slot holds a complete model."""
        if slot == self._pointer.active:
            raise SlotError(f"refusing to write into {slot}: it is the active slot")
        self._contents.pop(slot, None)
        # fsyncs the manifest, then the slot directory: the files placed since the clear are durable with it.
        write_atomic(self.path(slot) / MANIFEST_FILE, signed.SerializeToString())

    def bytes_used(self, slot: str | None) -> int:
        if slot is None:
            return 0
        total = 0
        for entry in self.path(slot).iterdir():
            try:
                total += entry.stat().st_size if entry.is_file() else 0
            except OSError:
                pass
        return total

    @staticmethod
    def _check(slot: str) -> None:
        if slot not in SLOTS:
            raise SlotError(f"unknown slot {slot!r}; slots are {', '.join(SLOTS)}")


def file_names(manifest: manifest_pb2.ModelManifest) -> dict[str, str]:
    """sha256 -> the name that blob has in a slot."""
    names = {manifest.sha256: manifest.sha256 + MODEL_SUFFIX}
    if manifest.golden.sha256:
        names[manifest.golden.sha256] = manifest.golden.sha256 + GOLDEN_SUFFIX
    return names


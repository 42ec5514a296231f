"""agent.slots: two slots, an atomic pointer, the previous slot kept for a rollback."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from agent.slots import SlotError, SlotStore, file_names
from tests.unit.install import harness


def install(store: SlotStore, signer: harness.Signer, tmp: Path, version: str, sequence: int) -> str:
    model = f"model {version}".encode() * 20
    m = harness.manifest(model, version=version, sequence=sequence)
    slot = store.inactive()
    src = tmp / f"incoming-{version}"
    src.write_bytes(model)
    store.clear(slot)
    store.place(slot, src, file_names(m)[m.sha256])
    store.seal(slot, signer.manifest(m))
    store.activate(slot)
    return slot


def test_install_activate_and_keep_previous(tmp_path, signer):
    store = SlotStore(tmp_path / "models")
    assert store.pointer.active is None and store.active() is None and store.inactive() == "slot-a"
    first = install(store, signer, tmp_path, "1", 1)
    second = install(store, signer, tmp_path, "2", 2)
    assert (first, second) == ("slot-a", "slot-b")
    assert store.pointer.active == "slot-b" and store.pointer.previous == "slot-a"
    assert store.active().manifest.version == "2"
    assert store.content("slot-a").manifest.version == "1"          # the previous model is intact
    assert store.content("slot-a").model_path.read_bytes() == b"model 1" * 20
    # the pointer is on disk, read back by a new store (a restart)
    again = SlotStore(tmp_path / "models")
    assert again.pointer == store.pointer
    assert json.loads((tmp_path / "models" / "pointer.json").read_text()) == {"active": "slot-b", "previous": "slot-a"}


def test_restore_previous_does_not_keep_the_bad_slot(tmp_path, signer):
    store = SlotStore(tmp_path / "models")
    install(store, signer, tmp_path, "1", 1)
    install(store, signer, tmp_path, "2", 2)
    store.restore_previous()
    assert store.pointer.active == "slot-a" and store.pointer.previous is None
    assert store.active().manifest.version == "1"


def test_pointer_write_is_atomic(tmp_path, signer, monkeypatch):
    store = SlotStore(tmp_path / "models")
    install(store, signer, tmp_path, "1", 1)
    model = b"model 2" * 20
    m = harness.manifest(model, version="2", sequence=2)
    (tmp_path / "m2").write_bytes(model)
    store.place("slot-b", tmp_path / "m2", file_names(m)[m.sha256])
    store.seal("slot-b", signer.manifest(m))
    before = (tmp_path / "models" / "pointer.json").read_bytes()

    def power_cut(src, dst):
        raise OSError("power cut before the rename")

    monkeypatch.setattr(os, "replace", power_cut)
    with pytest.raises(OSError):
        store.activate("slot-b")
    monkeypatch.undo()
    # the pointer still names the old slot, in full; the half-done write is only a temporary file
    assert (tmp_path / "models" / "pointer.json").read_bytes() == before
    assert SlotStore(tmp_path / "models").active().manifest.version == "1"


def test_refuses_to_touch_the_active_slot_and_needs_a_complete_one(tmp_path, signer):
    store = SlotStore(tmp_path / "models")
    active = install(store, signer, tmp_path, "1", 1)
    with pytest.raises(SlotError, match="active slot"):
        store.clear(active)
    with pytest.raises(SlotError, match="holds no complete model"):
        store.activate("slot-b")


def test_clearing_the_previous_slot_forgets_it(tmp_path, signer):
    store = SlotStore(tmp_path / "models")
    install(store, signer, tmp_path, "1", 1)
    install(store, signer, tmp_path, "2", 2)
    store.clear("slot-a")
    assert store.pointer.previous is None
    assert store.content("slot-a") is None


def test_what_a_slot_holds_is_remembered_until_this_store_writes_to_it(tmp_path, signer):
    store = SlotStore(tmp_path / "models")
    slot = install(store, signer, tmp_path, "1", 1)
    assert store.content("slot-b") is None
    content = store.active()
    assert content.manifest.version == "1"
    content.model_path.unlink()                      # behind the store's back (another process, a damaged disk)
    assert store.active() is content                 # remembered: no disk read per progress report
    assert store.content(slot, fresh=True) is None   # read again: the installer hashes a slot this way before trusting it
    # The store's own writes are seen at once.
    install(store, signer, tmp_path, "2", 2)
    assert store.active().manifest.version == "2" and store.content("slot-b").manifest.version == "2"
    store.activate("slot-b")
    other = store.inactive()
    store.clear(other)
    assert store.content(other) is None

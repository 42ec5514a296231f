"""The fleet directory (which devices, which profiles) and the enrollment tickets file."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.simulate.enroll import Ticket, enroll_fleet, read_tickets
from agent.simulate.fleet_dir import FleetDirError, discover, write_profile
from agent.simulate.run import parse_profile_options


def device(root: Path, name: str, profile: str | None = None) -> Path:
    d = root / name
    d.mkdir(parents=True)
    (d / "identity.json").write_text("{}")
    if profile:
        write_profile(d, profile)
    return d


def test_profiles_come_from_the_option_then_the_file_then_the_default(tmp_path: Path) -> None:
    device(tmp_path, "b", "coral-dev-board")
    device(tmp_path, "a", "raspberry-pi-4")
    device(tmp_path, "c")
    (tmp_path / "not-a-device").mkdir()
    (tmp_path / "stray-file").write_text("x")
    specs = discover(tmp_path, {"a": "x86-gateway"}, default="jetson-nano")
    assert [(s.name, s.profile) for s in specs] == [("a", "x86-gateway"), ("b", "coral-dev-board"), ("c", "jetson-nano")]


def test_discover_names_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(FleetDirError, match="does not exist"):
        discover(tmp_path / "nope")
    with pytest.raises(FleetDirError, match="no enrolled device"):
        discover(tmp_path)
    device(tmp_path, "cam-1")
    with pytest.raises(FleetDirError, match="no profile for cam-1"):
        discover(tmp_path)
    with pytest.raises(FleetDirError, match="ghost"):
        discover(tmp_path, {"ghost": "x86-gateway"}, default="x86-gateway")


def test_profile_options() -> None:
    assert parse_profile_options(["cam-1=coral-dev-board", "x86-gateway"]) == ({"cam-1": "coral-dev-board"}, "x86-gateway")
    with pytest.raises(ValueError, match="twice"):
        parse_profile_options(["x86-gateway", "jetson-nano"])
    with pytest.raises(ValueError, match="NAME=PROFILE"):
        parse_profile_options(["=jetson-nano"])


def test_tickets_from_json_and_text(tmp_path: Path) -> None:
    js = tmp_path / "t.json"
    js.write_text(json.dumps([{"name": "a", "profile": "x86-gateway", "token": "t1"},
                              {"name": "b", "profile": "jetson-nano", "enrollment_token": "t2", "id": "ignored"}]))
    assert read_tickets(js) == [Ticket("a", "x86-gateway", "t1"), Ticket("b", "jetson-nano", "t2")]
    text = tmp_path / "t.txt"
    text.write_text("# name profile token\n\na x86-gateway t1   # first\nb jetson-nano t2\n")
    assert read_tickets(text) == [Ticket("a", "x86-gateway", "t1"), Ticket("b", "jetson-nano", "t2")]
    text.write_text("a x86-gateway\n")
    with pytest.raises(ValueError, match="line 1: expected NAME PROFILE TOKEN"):
        read_tickets(text)
    js.write_text('[{"name": "a", "profile": "x86-gateway"}]')
    with pytest.raises(ValueError, match="entry 0 needs name, profile and token"):
        read_tickets(js)


def test_enroll_fleet_refuses_bad_input_before_calling_anyone(tmp_path: Path) -> None:
    nowhere = "127.0.0.1:1"  # nothing is sent: these fail on the input
    with pytest.raises(ValueError, match="invalid device name"):
        enroll_fleet(nowhere, {("../x", "x86-gateway"): "t"}, tmp_path)
    with pytest.raises(ValueError, match="given twice: a"):
        enroll_fleet(nowhere, [Ticket("a", "x86-gateway", "t"), Ticket("a", "jetson-nano", "u")], tmp_path)
    with pytest.raises(ValueError, match="no bundled profile 'nonesuch'"):
        enroll_fleet(nowhere, {("a", "nonesuch"): "t"}, tmp_path)
    assert not (tmp_path / "a").exists()


def test_a_device_directory_is_run_by_one_simulator_at_a_time(tmp_path: Path) -> None:
    import os

    from agent.identity import StateDirError
    from agent.simulate.device import lock_state_dir

    fd = lock_state_dir(tmp_path)
    try:
        with pytest.raises(StateDirError, match="another edge-agent simulate"):
            lock_state_dir(tmp_path)
    finally:
        os.close(fd)
    os.close(lock_state_dir(tmp_path))  # free again once the holder closed it

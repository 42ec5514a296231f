"""edgectl: the real console script, run as a subprocess against a fake Admin gRPC service in this process."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cli_fake_server import FakeAdmin, sample_fleet, start_fake_coordinator  # noqa: E402

from coordinator.cli.app import hoist_global_options  # noqa: E402
from coordinator.cli.errors import CliError  # noqa: E402
from coordinator.cli.labels import parse_label_changes, parse_selector  # noqa: E402
from coordinator.cli.output import message_to_plain, relative_age  # noqa: E402
from coordinator.cli.settings import normalize_address, resolve_settings  # noqa: E402

TOKEN = "test-admin-token-0123"
EDGECTL = Path(sys.executable).parent / "edgectl"
HEAVY = ("tensorflow", "coordinator.service", "coordinator.store", "coordinator.optimize")


@pytest.fixture()
def fake() -> Iterator[FakeAdmin]:
    server, servicer, _ = start_fake_coordinator(TOKEN)
    yield servicer
    server.stop(grace=None)


@pytest.fixture()
def home(tmp_path: Path) -> Path:
    """An empty HOME, so that no real ~/.config/edgefleet/edgectl.toml leaks into a test."""
    path = tmp_path / "home"
    path.mkdir()
    return path


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEFLEET_")}
    env["HOME"] = str(home)
    env.update(extra)
    return env


def edgectl(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    assert EDGECTL.exists(), f"console script not installed at {EDGECTL}"
    return subprocess.run(
        [str(EDGECTL), *args], env=clean_env(home, **env), capture_output=True, text=True,
        stdin=subprocess.DEVNULL, timeout=60,
    )


def against(fake: FakeAdmin, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return edgectl(home, "--coordinator", fake.address, "--token", TOKEN, *args)


def assert_one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("edgectl: error: ")
    return lines[0]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---------------------------------------------------------------- device list


def test_list_json_has_the_documented_fields(fake: FakeAdmin, home: Path) -> None:
    result = against(fake, home, "device", "list", "-o", "json")
    assert result.returncode == 0, result.stderr
    devices = {d["name"]: d for d in json.loads(result.stdout)}
    assert set(devices) == {d.name for d in sample_fleet()}
    for d in devices.values():
        assert {"id", "name", "labels", "state", "last_seen", "hardware"} <= set(d)
        assert isinstance(d["labels"], dict)
        assert d["state"] in {"registered", "online", "offline", "stopped"}
        if d["last_seen"] is not None:
            assert datetime.fromisoformat(d["last_seen"].replace("Z", "+00:00")).tzinfo is not None

    cam = devices["cam-01"]
    assert cam["id"] == "d-rpi4-0001" and cam["state"] == "online"
    assert cam["labels"] == {"site": "lab", "class": "rpi4"}
    assert cam["hardware"]["cpu"]["arch"] == "aarch64"
    assert cam["hardware"]["hardware_class"] == "raspberry-pi-4"
    assert cam["hardware"]["memory"]["total_bytes"] == 8 * 1024**3
    assert devices["coral-07"]["hardware"]["accelerators"][0]["kind"] == "edgetpu"
    assert devices["coral-07"]["state"] == "offline"
    assert devices["gw-1"]["state"] == "stopped"
    # 64-bit integers stay exact JSON numbers (MessageToDict would give the string "9007199254740993").
    assert devices["gw-1"]["hardware"]["memory"]["total_bytes"] == 2**53 + 1
    assert devices["gw-1"]["hardware"]["accelerators"] == [
        {"kind": "gpu", "bus": "pcie", "id": "/dev/nvidia0", "name": "NVIDIA T4", "detail": ""}
    ]
    assert devices["new-1"]["state"] == "registered"
    # Not reported yet: still an object to index into, with empty values.
    assert devices["new-1"]["last_seen"] is None
    assert devices["new-1"]["hardware"]["cpu"]["arch"] == "" and devices["new-1"]["hardware"]["accelerators"] == []
    # Inside hardware every message is an object, even one the profile left unset.
    assert cam["hardware"]["power_model"] == {"idle_watts": 0.0, "active_watts": 0.0}
    # The admin token went in the metadata: the fake refuses anything else.
    assert len(fake.calls("ListDevices")) == 1


def test_list_sends_the_selector_as_given(fake: FakeAdmin, home: Path) -> None:
    result = against(fake, home, "device", "list", "--select", "site=lab,class=coral", "-o", "json")
    assert result.returncode == 0, result.stderr
    assert [r.selector for r in fake.calls("ListDevices")] == ["site=lab,class=coral"]
    assert [d["name"] for d in json.loads(result.stdout)] == ["coral-07"]


def test_list_table_shows_one_row_per_device(fake: FakeAdmin, home: Path) -> None:
    result = against(fake, home, "device", "list")
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.strip().splitlines()
    assert header.split() == ["NAME", "ID", "STATE", "LAST", "SEEN", "CLASS", "ARCH", "CORES", "MEM", "ACCEL", "RUNTIME", "LABELS"]
    by_name = {row.split()[0]: row for row in rows}
    assert set(by_name) == {"cam-01", "coral-07", "gw-1", "new-1"}
    assert "online" in by_name["cam-01"] and "s ago" in by_name["cam-01"] and "site=lab" in by_name["cam-01"]
    assert "edgetpu" in by_name["coral-07"]
    assert "never" in by_name["new-1"]


@pytest.mark.parametrize("selector", ["site", "site=lab,", "=lab", "site=", "si te=lab", "a=1,a=2"])
def test_malformed_select_fails_before_any_call(fake: FakeAdmin, home: Path, selector: str) -> None:
    line = assert_one_line_error(against(fake, home, "device", "list", "--select", selector))
    assert "--select" in line
    assert fake.requests == []


# ---------------------------------------------------------------- register, show, label, remove


def test_register_prints_the_enroll_command(fake: FakeAdmin, home: Path) -> None:
    result = against(fake, home, "device", "register", "cam-09", "--label", "site=lab", "-l", "class=rpi4", "--ttl", "600")
    assert result.returncode == 0, result.stderr
    (request,) = fake.calls("RegisterDevice")
    assert request.name == "cam-09" and dict(request.labels) == {"site": "lab", "class": "rpi4"} and request.token_ttl_s == 600
    registered = next(d for d in fake.devices if d.name == "cam-09")
    assert registered.id in result.stdout
    commands = [line.strip() for line in result.stdout.splitlines() if line.strip().startswith("edge-agent enroll")]
    assert len(commands) == 1
    assert commands[0].startswith(f"edge-agent enroll --coordinator {fake.address} --token enr-")


def test_register_json_is_the_whole_response(fake: FakeAdmin, home: Path) -> None:
    result = against(fake, home, "device", "register", "cam-10", "-o", "json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["device"]["name"] == "cam-10" and data["device"]["state"] == "registered"
    assert data["enroll_command"].endswith(data["enrollment_token"])
    expires = datetime.fromisoformat(data["token_expires_at"].replace("Z", "+00:00"))
    assert expires > datetime.now(timezone.utc)


def test_register_duplicate_shows_the_server_details(fake: FakeAdmin, home: Path) -> None:
    line = assert_one_line_error(against(fake, home, "device", "register", "cam-01"))
    assert "already exists" in line and "cam-01" in line


def test_register_rejects_a_bad_label_before_any_call(fake: FakeAdmin, home: Path) -> None:
    line = assert_one_line_error(against(fake, home, "device", "register", "cam-11", "--label", "bad key=1"))
    assert "bad key" in line
    assert fake.requests == []


def test_show_json_has_history_and_telemetry(fake: FakeAdmin, home: Path) -> None:
    result = against(fake, home, "device", "show", "cam-01", "-o", "json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["id"] == "d-rpi4-0001"
    assert [h["changed"] for h in data["hardware_history"]] == [[], ["memory.available_bytes"]]
    assert data["model_history"][0]["state"] == "committed"
    assert data["latest_telemetry"]["requests"] == 12000
    assert [r.ref for r in fake.calls("GetDevice")] == ["cam-01"]


def test_show_table_by_id(fake: FakeAdmin, home: Path) -> None:
    result = against(fake, home, "device", "show", "d-coral-0002")
    assert result.returncode == 0, result.stderr
    assert "coral-07" in result.stdout and "edgetpu" in result.stdout and "Hardware" in result.stdout


def test_show_unknown_device_gives_the_server_details(fake: FakeAdmin, home: Path) -> None:
    line = assert_one_line_error(against(fake, home, "device", "show", "nope"))
    assert line == "edgectl: error: no device named or with id 'nope'"


def test_label_sets_and_removes(fake: FakeAdmin, home: Path) -> None:
    result = against(fake, home, "device", "label", "cam-01", "tier=canary", "class-", "--remove", "site", "-o", "json")
    assert result.returncode == 0, result.stderr
    (request,) = fake.calls("LabelDevice")
    assert request.ref == "cam-01" and dict(request.set) == {"tier": "canary"} and list(request.remove) == ["class", "site"]
    assert json.loads(result.stdout)["labels"] == {"tier": "canary"}


def test_remove_needs_yes_without_a_terminal(fake: FakeAdmin, home: Path) -> None:
    line = assert_one_line_error(against(fake, home, "device", "remove", "gw-1"))
    assert "--yes" in line
    assert fake.requests == []
    result = against(fake, home, "device", "remove", "gw-1", "--yes")
    assert result.returncode == 0, result.stderr
    assert [r.ref for r in fake.calls("RemoveDevice")] == ["gw-1"]
    assert "gw-1" not in {d.name for d in fake.devices}


# ---------------------------------------------------------------- auth, reachability, configuration


def test_wrong_token_is_one_line_that_says_where_the_token_is(fake: FakeAdmin, home: Path) -> None:
    result = edgectl(home, "--coordinator", fake.address, "device", "list", EDGEFLEET_TOKEN="wrong")
    line = assert_one_line_error(result)
    assert "refused the admin token" in line and "EDGEFLEET_TOKEN" in line and "admin.token" in line
    assert len(fake.calls("ListDevices")) == 1


def test_missing_token_fails_before_any_call(fake: FakeAdmin, home: Path) -> None:
    line = assert_one_line_error(edgectl(home, "--coordinator", fake.address, "device", "list"))
    assert "no admin token" in line and "admin.token" in line
    assert fake.requests == []


def test_unreachable_coordinator_is_one_line(home: Path) -> None:
    port = free_port()
    line = assert_one_line_error(edgectl(home, "--coordinator", f"127.0.0.1:{port}", "--token", TOKEN, "device", "list"))
    assert f"cannot reach the coordinator at 127.0.0.1:{port}" in line


def test_silent_coordinator_hits_the_deadline(home: Path) -> None:
    # A socket that accepts connections (in the kernel backlog) but never speaks HTTP/2.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        address = f"127.0.0.1:{sock.getsockname()[1]}"
        line = assert_one_line_error(edgectl(home, "--coordinator", address, "--token", TOKEN, "--timeout", "0.5", "device", "list"))
    assert f"cannot reach the coordinator at {address}" in line and "0.5 s" in line


def test_config_file_gives_address_and_token_file(fake: FakeAdmin, home: Path, tmp_path: Path) -> None:
    (tmp_path / "admin.token").write_text(f"  {TOKEN}\n")
    config = tmp_path / "edgectl.toml"
    config.write_text(f'coordinator = "{fake.address}"\ntoken_file = "admin.token"\ntimeout = 5\n')
    result = edgectl(home, "device", "list", "-o", "json", EDGEFLEET_CONFIG=str(config))
    assert result.returncode == 0, result.stderr
    assert len(json.loads(result.stdout)) == 4


def test_default_config_file_is_read(fake: FakeAdmin, home: Path) -> None:
    config = home / ".config" / "edgefleet" / "edgectl.toml"
    config.parent.mkdir(parents=True)
    config.write_text(f'coordinator = "{fake.address}"\ntoken = "{TOKEN}"\n')
    result = edgectl(home, "device", "list", "-o", "json")
    assert result.returncode == 0, result.stderr


def test_flags_beat_environment_beat_config(fake: FakeAdmin, home: Path, tmp_path: Path) -> None:
    dead = f"127.0.0.1:{free_port()}"
    config = tmp_path / "edgectl.toml"
    config.write_text(f'coordinator = "{dead}"\ntoken = "from-config"\n')
    # The environment beats the config file ...
    result = edgectl(home, "--config", str(config), "device", "list", EDGEFLEET_COORDINATOR=fake.address, EDGEFLEET_TOKEN=TOKEN)
    assert result.returncode == 0, result.stderr
    # ... and flags beat the environment.
    result = edgectl(
        home, "--config", str(config), "--coordinator", fake.address, "--token", TOKEN, "device", "list",
        EDGEFLEET_COORDINATOR=dead, EDGEFLEET_TOKEN="from-env",
    )
    assert result.returncode == 0, result.stderr


def test_connection_options_may_follow_the_command(fake: FakeAdmin, home: Path) -> None:
    result = edgectl(home, "device", "list", "-o", "json", f"--coordinator={fake.address}", "--token", TOKEN, "--timeout", "5")
    assert result.returncode == 0, result.stderr
    assert len(json.loads(result.stdout)) == 4


def test_unknown_config_key_is_named(fake: FakeAdmin, home: Path, tmp_path: Path) -> None:
    config = tmp_path / "edgectl.toml"
    config.write_text(f'coordinator = "{fake.address}"\ncordinator_token = "x"\n')
    line = assert_one_line_error(edgectl(home, "--config", str(config), "--token", TOKEN, "device", "list"))
    assert "cordinator_token" in line and str(config) in line
    assert fake.requests == []


def test_config_with_a_wrong_type_is_named(home: Path, tmp_path: Path) -> None:
    config = tmp_path / "edgectl.toml"
    config.write_text('timeout = "soon"\n')
    line = assert_one_line_error(edgectl(home, "--config", str(config), "device", "list"))
    assert "'timeout'" in line and "number" in line


def test_missing_named_config_file(home: Path, tmp_path: Path) -> None:
    line = assert_one_line_error(edgectl(home, "device", "list", EDGEFLEET_CONFIG=str(tmp_path / "absent.toml")))
    assert "absent.toml" in line and "does not exist" in line


# ---------------------------------------------------------------- help and imports


@pytest.mark.parametrize(
    "command", [[], ["device"], ["device", "register"], ["device", "list"], ["device", "show"], ["device", "label"], ["device", "remove"]]
)
def test_help_everywhere(home: Path, command: list[str]) -> None:
    result = edgectl(home, *command, "--help")
    assert result.returncode == 0, result.stderr
    assert "Usage: edgectl" in result.stdout
    assert "Example" in result.stdout


# Runs edgectl's main() like the console script does, then reports which watched modules got imported.
_IMPORT_PROBE = """
import sys
sys.argv = ["edgectl", *sys.argv[1:]]
from coordinator.cli.app import main
try:
    main()
except SystemExit:
    pass
watched = {watched!r}
sys.stderr.write("IMPORTED=" + ",".join(m for m in watched if m in sys.modules) + "\\n")
"""


def imported_by(home: Path, *args: str, watched: tuple[str, ...]) -> set[str]:
    result = subprocess.run(
        [sys.executable, "-c", _IMPORT_PROBE.format(watched=watched), *args],
        env=clean_env(home), capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )
    line = [l for l in result.stderr.splitlines() if l.startswith("IMPORTED=")]
    assert line, result.stderr
    return set(filter(None, line[-1].removeprefix("IMPORTED=").split(",")))


def test_help_imports_neither_tensorflow_nor_grpc(home: Path) -> None:
    assert imported_by(home, "--help", watched=(*HEAVY, "grpc", "edgefleet.v1.admin_pb2")) == set()
    assert imported_by(home, "device", "list", "--help", watched=(*HEAVY, "grpc")) == set()


def test_device_list_never_imports_tensorflow(fake: FakeAdmin, home: Path) -> None:
    imported = imported_by(home, "--coordinator", fake.address, "--token", TOKEN, "device", "list", watched=(*HEAVY, "grpc"))
    # grpc is the positive control: the probe does see what the command imported.
    assert imported == {"grpc"}
    assert len(fake.calls("ListDevices")) == 1


# ---------------------------------------------------------------- pure functions (in process)


def test_parse_selector() -> None:
    assert parse_selector("site=lab,class=rpi4") == "site=lab,class=rpi4"
    assert parse_selector(" site=lab , class=rpi4 ") == "site=lab,class=rpi4"
    assert parse_selector("a.b/c-d_e=x:y") == "a.b/c-d_e=x:y"
    # one grammar with the coordinator (edgefleet.labels): '=' and spaces are not label values
    for bad in ("", " ", "a", "a=", "=b", "a=1,,b=2", "a b=1", "a=1,a=2", "a=x=y", "a=x y"):
        with pytest.raises(CliError):
            parse_selector(bad)


def test_parse_label_changes() -> None:
    assert parse_label_changes(["a=1", "b-", "c=x:y"], ["d"]) == ({"a": "1", "c": "x:y"}, ["b", "d"])
    for args, remove in ((["a=1", "a-"], []), ([], []), (["a=1", "a=2"], []), (["a"], []), ([], ["bad key"])):
        with pytest.raises(CliError):
            parse_label_changes(args, remove)


def test_message_to_plain_keeps_proto_names_numbers_and_nulls() -> None:
    device = sample_fleet(now=1_700_000_000.0)[0]
    plain = message_to_plain(device)
    assert plain["last_seen"] == "2023-11-14T22:13:08.000Z"
    assert plain["active_model"]["sequence"] == 7 and isinstance(plain["active_model"]["sequence"], int)
    assert plain["hardware"]["power_model"] is None
    assert plain["model_history"][0]["state"] == "committed"
    assert plain["latest_telemetry"]["accuracy"] is None
    assert json.loads(json.dumps(plain)) == plain


def test_relative_age() -> None:
    device = sample_fleet(now=1_700_000_000.0)[0]
    now = datetime.fromtimestamp(1_700_000_000.0, tz=timezone.utc)
    assert relative_age(device.last_seen, now) == "12s ago"
    assert relative_age(device.last_seen, now + timedelta(minutes=5)) == "5m ago"
    assert relative_age(device.last_seen, now - timedelta(hours=1)) == "in 59m"
    assert relative_age(Timestamp(), now) == "never"


def test_normalize_address() -> None:
    assert normalize_address("host") == "host:7400"
    assert normalize_address("10.0.0.5:7401") == "10.0.0.5:7401"
    assert normalize_address("[::1]:7400") == "[::1]:7400"
    assert normalize_address("[::1]") == "[::1]:7400"
    for bad in ("", "grpc://host:1", "host:0", "host:x", "::1", "host:70000"):
        with pytest.raises(CliError):
            normalize_address(bad)


def test_hoist_global_options() -> None:
    assert hoist_global_options(["device", "list", "--coordinator", "h:1", "-o", "json", "--token=t"]) == [
        "--coordinator", "h:1", "--token=t", "device", "list", "-o", "json",
    ]
    assert hoist_global_options(["device", "label", "x", "--", "--token"]) == ["device", "label", "x", "--", "--token"]
    with pytest.raises(CliError, match="--timeout needs a value"):
        hoist_global_options(["device", "list", "--timeout"])


def test_resolve_settings_precedence(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('coordinator = "cfg:1"\ntoken = "cfg-token"\ntimeout = 3\n')
    env = {"EDGEFLEET_CONFIG": str(config)}
    s = resolve_settings(environ=env)
    assert (s.address, s.token, s.timeout_s, s.config_path) == ("cfg:1", "cfg-token", 3.0, config)
    s = resolve_settings(environ={**env, "EDGEFLEET_COORDINATOR": "env:2", "EDGEFLEET_TOKEN": "env-token"})
    assert (s.address, s.token, s.token_source) == ("env:2", "env-token", "EDGEFLEET_TOKEN")
    s = resolve_settings(coordinator="flag:3", token="flag-token", timeout_s=1.5, environ={**env, "EDGEFLEET_TOKEN": "env-token"})
    assert (s.address, s.token, s.token_source, s.timeout_s) == ("flag:3", "flag-token", "--token", 1.5)
    with pytest.raises(CliError, match="does not exist"):
        resolve_settings(config=tmp_path / "absent.toml", environ={})

"""deploy/: the systemd units, the compose stack and the example configs say what the code accepts.

Docker cannot run here (no engine), so the compose file is checked by structure: services, builds,
volumes, the files it mounts, and the EDGEFLEET_* variables it sets, loaded through the real
coordinator.config.load_config. Its broker's entrypoint and health check do run, against a real
mosquitto with the shipped deploy/mosquitto/mosquitto.conf. The systemd units go through
`systemd-analyze verify` when it is installed, and a parser check always.
"""
from __future__ import annotations

import configparser
import importlib.util
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import threading
import time
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from coordinator.config import ConfigError, load_config
from edgefleet import envelope, topics
from tests.mosquitto import free_port, mosquitto_binary

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
SYSTEMD = DEPLOY / "systemd"
COMPOSE_DIR = DEPLOY / "compose"
COMPOSE_FILE = COMPOSE_DIR / "compose.yaml"
SHIPPED_CONF = DEPLOY / "mosquitto" / "mosquitto.conf"
UNITS = ("edge-agent.service", "edge-coordinator.service")
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
SCRIPTS = PYPROJECT["project"]["scripts"]
EXTRAS = PYPROJECT["project"]["optional-dependencies"]
PLUGIN = next(
    (p for p in ("/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so", "/usr/lib/aarch64-linux-gnu/mosquitto_dynamic_security.so", "/usr/lib/mosquitto_dynamic_security.so") if os.path.exists(p)),
    None,
)
WAIT = 10.0

pytestmark = pytest.mark.timeout(60)


def _load_config_reference():
    spec = importlib.util.spec_from_file_location("deploy_config_reference", DEPLOY / "config_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


config_reference = _load_config_reference()
COORDINATOR_ENV = config_reference.env_names()


# -- helpers --------------------------------------------------------------------------------------


def read_unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",), comment_prefixes=("#", ";"), empty_lines_in_values=False)
    parser.optionxform = str  # systemd keys are case-sensitive
    parser.read_string((SYSTEMD / name).read_text(), source=name)
    return parser


def unit_values(name: str, section: str, key: str) -> list[str]:
    """Every value a (possibly repeated) key has, in order; configparser keeps only the last."""
    values, current = [], None
    for raw in (SYSTEMD / name).read_text().splitlines():
        line = raw.strip()
        if line.startswith("[") and line.endswith("]"):
            current = line[1:-1]
        elif current == section and not line.startswith(("#", ";")) and "=" in line:
            k, _, v = line.partition("=")
            if k.strip() == key:
                values.append(v.strip())
    return values


def cli_accepts(script: str, args: list[str]) -> int:
    """Exit code of `script args --help` parsed by the real CLI: 0 when every option exists."""
    from typer.testing import CliRunner

    if script == "edge-agent":
        from agent.cli import app
    elif script == "edge-coordinator":
        from coordinator.service.cli import app
    else:
        raise AssertionError(f"no CLI check for {script}")
    return CliRunner().invoke(app, [*args, "--help"]).exit_code


def env_file(path: Path, *, include_commented: bool = False) -> dict[str, str]:
    """KEY=VALUE lines; with include_commented, also `#KEY=VALUE` (examples to uncomment)."""
    out = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if include_commented and re.match(r"^#[A-Z][A-Z0-9_]*=", line):
            line = line[1:]
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: not KEY=VALUE: {raw!r}"
        out[key.strip()] = value.strip()
    return out


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)((?::?[-?])([^}]*))?\}|\$\$")


def interpolate(value: str, variables: dict[str, str]) -> str:
    """Compose's interpolation, the subset compose.yaml uses: ${X}, ${X:?msg}, ${X:-default}, $$."""

    def sub(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        name, op = m.group(1), m.group(2) or ""
        if name in variables and (variables[name] or not op.startswith(":")):
            return variables[name]
        if op.startswith((":-", "-")):
            return m.group(3)
        raise AssertionError(f"${{{name}}} is not set in env.example and has no default")

    return _VAR.sub(sub, value)


def compose_vars_used(text: str) -> dict[str, bool]:
    """Variables compose.yaml interpolates -> whether one of their uses has a default."""
    used: dict[str, bool] = {}
    for m in _VAR.finditer(text):
        if m.group(0) != "$$":
            used[m.group(1)] = used.get(m.group(1), False) or (m.group(2) or "").lstrip(":").startswith("-")
    return used


def service_env(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    out, pending = [], ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line.startswith("#") or not line:
            continue
        pending += (" " if pending else "") + line.rstrip("\\").strip()
        if not line.endswith("\\"):
            word, _, rest = pending.partition(" ")
            out.append((word.upper(), rest.strip()))
            pending = ""
    return out


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def compose_variables() -> dict[str, str]:
    return env_file(COMPOSE_DIR / "env.example")


# -- systemd --------------------------------------------------------------------------------------


@pytest.mark.parametrize("unit", UNITS)
def test_unit_has_restart_policy_state_dir_user_and_hardening(unit):
    u = read_unit(unit)
    assert {"Unit", "Service", "Install"} <= set(u.sections())
    svc = u["Service"]
    assert svc.get("Restart") == "on-failure"
    assert int(svc.get("RestartSec", "0")) > 0
    assert int(u["Unit"].get("StartLimitBurst", "0")) > 0 and int(u["Unit"].get("StartLimitIntervalSec", "0")) > 0
    assert svc.get("KillSignal") == "SIGTERM"
    user = svc.get("User", "")
    assert user and user != "root" and svc.get("DynamicUser", "no") == "no"
    state_dir = svc.get("StateDirectory", "")
    assert state_dir.startswith("edgefleet-")
    assert f"/var/lib/{state_dir}" in unit_values(unit, "Service", "ReadWritePaths")
    for key, value in {"ProtectSystem": "strict", "NoNewPrivileges": "yes", "PrivateTmp": "yes", "ProtectHome": "yes"}.items():
        assert svc.get(key) == value, key
    assert u["Install"].get("WantedBy") == "multi-user.target"


@pytest.mark.parametrize("unit", UNITS)
def test_unit_execstart_is_a_declared_console_script_with_options_it_accepts(unit):
    argv = shlex.split(read_unit(unit)["Service"]["ExecStart"])
    script = Path(argv[0]).name
    assert Path(argv[0]).is_absolute()
    assert script in SCRIPTS, f"{unit}: ExecStart runs {script}, not a console script of pyproject.toml ({', '.join(SCRIPTS)})"
    assert cli_accepts(script, argv[1:]) == 0, f"{unit}: {script} rejects {argv[1:]}"
    # The check can fail: the same CLI refuses an option it does not have.
    assert cli_accepts(script, [argv[1], "--no-such-option"]) != 0


def test_agent_unit_runs_in_its_state_directory_with_the_accelerator_groups():
    u = read_unit("edge-agent.service")
    argv = shlex.split(u["Service"]["ExecStart"])
    assert argv[1] == "run"
    state_dir = argv[argv.index("--state-dir") + 1]
    assert state_dir == f"/var/lib/{u['Service']['StateDirectory']}"
    assert u["Unit"]["ConditionPathExists"] == f"{state_dir}/identity.json"
    groups = u["Service"]["SupplementaryGroups"].split()
    assert {"apex", "plugdev"} <= set(groups)
    # Devices must stay visible: these would hide /dev/apex_* and /dev/bus/usb (ProtectClock
    # implies DeviceAllow=char-rtc on systemd < 252, and any DeviceAllow closes the rest).
    assert u["Service"].get("PrivateDevices", "no") == "no"
    assert u["Service"].get("DevicePolicy", "auto") == "auto"
    assert "DeviceAllow" not in u["Service"] and u["Service"].get("ProtectClock", "no") == "no"


def test_coordinator_unit_reads_the_config_and_env_file_after_broker_and_database():
    u = read_unit("edge-coordinator.service")
    argv = shlex.split(u["Service"]["ExecStart"])
    assert argv[1:] == ["run", "--config", "/etc/edgefleet/coordinator.toml"]
    assert u["Service"]["EnvironmentFile"] == "-/etc/edgefleet/coordinator.env"
    after = u["Unit"]["After"].split()
    assert {"network-online.target", "mosquitto.service", "postgresql.service"} <= set(after)
    assert "network-online.target" in u["Unit"]["Wants"].split()
    # The example config's data_dir is the unit's state directory.
    cfg = load_config(SYSTEMD / "coordinator.toml", environ={})
    assert str(cfg.data_path) == f"/var/lib/{u['Service']['StateDirectory']}"


def test_sysusers_creates_every_user_and_group_the_units_name(tmp_path):
    lines = [line.split() for line in (SYSTEMD / "edgefleet.sysusers.conf").read_text().splitlines() if line.strip() and not line.startswith("#")]
    users = {fields[1]: fields for fields in lines if fields[0] == "u"}
    groups = {fields[1] for fields in lines if fields[0] in ("g", "u")}
    for unit in UNITS:
        svc = read_unit(unit)["Service"]
        assert svc["User"] in users, f"{unit}: User={svc['User']} has no sysusers line"
        # Its home is the state directory: caches (Keras, matplotlib) land somewhere writable.
        assert shlex.split(" ".join(users[svc["User"]]))[4] == f"/var/lib/{svc['StateDirectory']}"
        assert svc.get("Group", svc["User"]) in groups
        for group in svc.get("SupplementaryGroups", "").split():
            assert group in groups, f"{unit}: SupplementaryGroups names {group}, which sysusers does not ensure"
    sysusers = shutil.which("systemd-sysusers")
    if sysusers is None:
        return
    (tmp_path / "etc").mkdir()
    res = subprocess.run(
        [sysusers, "--dry-run", f"--root={tmp_path}", str(SYSTEMD / "edgefleet.sysusers.conf")], capture_output=True, text=True, timeout=30
    )
    assert res.returncode == 0, res.stderr
    for user in users:
        assert f"Creating user '{user}'" in res.stderr + res.stdout


def _units_with_local_binaries(tmp_path: Path) -> list[Path]:
    """Copies of the units whose ExecStart points at this venv's scripts (verify checks it exists)."""
    out = []
    for unit in UNITS:
        text = (SYSTEMD / unit).read_text()
        script = Path(shlex.split(read_unit(unit)["Service"]["ExecStart"])[0])
        local = Path(sys.executable).parent / script.name
        if not local.exists():
            pytest.skip(f"{script.name} is not installed next to {sys.executable}")
        text, n = re.subn(rf"^ExecStart={re.escape(str(script))} ", f"ExecStart={local} ", text, flags=re.MULTILINE)
        assert n == 1
        (tmp_path / unit).write_text(text)
        out.append(tmp_path / unit)
    return out


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed (the parser checks above still ran)")
def test_units_pass_systemd_analyze_verify(tmp_path):
    files = _units_with_local_binaries(tmp_path)
    res = subprocess.run(["systemd-analyze", "verify", *map(str, files)], capture_output=True, text=True, timeout=60)
    complaints = [line for line in (res.stdout + res.stderr).splitlines() if any(u in line for u in UNITS)]
    assert res.returncode == 0 and not complaints, res.stdout + res.stderr

    # The same check rejects a unit with a mistake in it.
    bad = tmp_path / "bad" / "edge-agent.service"
    bad.parent.mkdir()
    bad.write_text(files[0].read_text().replace("Restart=on-failure", "Restart=on-failure\nRestartSecs=5"))
    res = subprocess.run(["systemd-analyze", "verify", str(bad)], capture_output=True, text=True, timeout=60)
    assert "RestartSecs" in res.stdout + res.stderr


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
@pytest.mark.parametrize("unit", UNITS)
def test_units_are_hardened_by_systemd_s_own_measure(tmp_path, unit):
    path = SYSTEMD / unit
    res = subprocess.run(["systemd-analyze", "security", "--offline=yes", "--no-pager", str(path)], capture_output=True, text=True, timeout=60)
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", res.stdout + res.stderr)
    if m is None:
        pytest.skip(f"this systemd-analyze cannot score unit files offline: {(res.stderr or res.stdout).strip()[:200]}")
    # systemd rates 0-10; a unit without any hardening scores 9.6 ("UNSAFE"), below 4 is "OK".
    assert float(m.group(1)) < 4.0, res.stdout[-3000:]


# -- example configuration files ------------------------------------------------------------------


@pytest.mark.parametrize("toml", [SYSTEMD / "coordinator.toml", COMPOSE_DIR / "coordinator.toml"], ids=["systemd", "compose"])
def test_example_coordinator_toml_is_valid(toml):
    cfg = load_config(toml, environ={})
    assert cfg.broker_auth.mode == "dynsec" and cfg.broker_auth.admin_username
    assert cfg.mqtt.username
    # load_config really checks: the same file with a misspelt key is refused, naming it.
    with pytest.raises(ConfigError, match="mqtt.usrname"):
        load_config(toml, environ={"EDGEFLEET_MQTT__USRNAME": "x"})


def test_systemd_env_example_sets_only_keys_the_coordinator_reads():
    env = env_file(SYSTEMD / "coordinator.env.example", include_commented=True)
    assert {"EDGEFLEET_MQTT__PASSWORD", "EDGEFLEET_BROKER_AUTH__ADMIN_PASSWORD"} <= set(env)
    assert set(env) <= COORDINATOR_ENV, set(env) - COORDINATOR_ENV
    cfg = load_config(SYSTEMD / "coordinator.toml", environ=env)
    assert cfg.mqtt.password == env["EDGEFLEET_MQTT__PASSWORD"]
    assert cfg.store_url.startswith("postgresql")
    from coordinator.broker import make_broker_auth

    # With the env file the dynsec backend can be built (it refuses without an admin password).
    assert "dynsec" in make_broker_auth(cfg.broker_auth, cfg.mqtt).describe()


def test_agent_env_example_names_variables_the_agent_reads():
    import typer.main

    from agent.cli import app

    envvars = set()
    for command in typer.main.get_command(app).commands.values():
        for param in command.params:
            envvars.update([param.envvar] if isinstance(param.envvar, str) else param.envvar or [])
    env = env_file(SYSTEMD / "agent.env.example", include_commented=True)
    assert env and set(env) <= envvars, set(env) - envvars


# -- compose ----------------------------------------------------------------------------------------


def test_compose_has_the_services_with_builds_images_and_healthchecks(compose):
    services = compose["services"]
    assert {"coordinator", "mosquitto", "postgres"} <= set(services)
    assert services["postgres"]["image"].startswith("postgres:15")
    for name, svc in services.items():
        assert "image" in svc or "build" in svc, name
        if not svc.get("profiles"):
            assert svc.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
        for dep, spec in (svc.get("depends_on") or {}).items():
            assert dep in services, f"{name} depends on unknown service {dep}"
            if spec.get("condition") == "service_healthy":
                assert services[dep].get("healthcheck"), f"{name} waits for {dep} to be healthy, but {dep} has no healthcheck"
    assert services["coordinator"]["depends_on"].keys() >= {"postgres", "mosquitto"}


def test_compose_volumes_and_mounted_files_exist(compose):
    declared = set(compose.get("volumes") or {})
    used = set()
    for name, svc in compose["services"].items():
        for spec in svc.get("volumes") or []:
            source, target = spec.split(":")[:2]
            if source.startswith((".", "/")):
                assert (COMPOSE_DIR / source).exists(), f"{name} mounts {source}, which is not in the repository"
            else:
                assert source in declared, f"{name} uses volume {source}, not declared under volumes:"
                used.add(source)
    assert used == declared, f"declared but unused volumes: {declared - used}"
    mounts = {spec.split(":")[1]: spec.split(":")[0] for spec in compose["services"]["mosquitto"]["volumes"]}
    assert (COMPOSE_DIR / mounts["/etc/mosquitto/mosquitto.conf"]).resolve() == SHIPPED_CONF


def test_compose_interpolates_only_variables_that_env_example_defines(compose_variables):
    used = compose_vars_used(COMPOSE_FILE.read_text())
    missing = {name for name, has_default in used.items() if not has_default and name not in compose_variables}
    assert not missing, f"compose.yaml needs {missing}, which env.example does not set"
    assert set(compose_variables) <= set(used), f"env.example sets unused {set(compose_variables) - set(used)}"


def _dockerfile(svc: dict) -> tuple[Path, Path]:
    context = (COMPOSE_DIR / svc["build"]["context"]).resolve()
    return context, context / svc["build"].get("dockerfile", "Dockerfile")


@pytest.mark.parametrize("service", ["coordinator", "agent", "mosquitto"])
def test_compose_builds_copy_files_that_exist_and_install_declared_extras(compose, service):
    context, dockerfile = _dockerfile(compose["services"][service])
    assert context.is_dir() and dockerfile.is_file()
    steps = dockerfile_instructions(dockerfile)
    ignore_file = dockerfile.with_name(dockerfile.name + ".dockerignore")
    allowed = None
    if ignore_file.exists():
        lines = [line.strip() for line in ignore_file.read_text().splitlines() if line.strip() and not line.startswith("#")]
        assert lines[0] == "*", "the dockerignore is an allow-list"
        allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    for word, args in steps:
        if word != "COPY":
            continue
        parts = [p for p in shlex.split(args) if not p.startswith("--")]
        for source in parts[:-1]:
            assert (context / source).exists(), f"{dockerfile.name}: COPY {source} is not in {context}"
            if allowed is not None:
                assert source.rstrip("/") in allowed, f"{dockerfile.name}: COPY {source} is excluded by {ignore_file.name}"
    extras = [m for _, args in steps for m in re.findall(r'pip install "/src\[([a-z,]+)\]"', args)]
    for extra in ",".join(extras).split(",") if extras else []:
        assert extra in EXTRAS, f"{dockerfile.name} installs the extra [{extra}], which pyproject.toml does not declare"
    entrypoint = next((yaml.safe_load(args) for word, args in steps if word == "ENTRYPOINT"), None)
    assert entrypoint, f"{dockerfile.name} has no ENTRYPOINT"
    if service in ("coordinator", "agent"):
        assert extras == [service]
        script = entrypoint[0]
        assert script in SCRIPTS
        command = compose["services"][service].get("command") or yaml.safe_load(next(a for w, a in steps if w == "CMD"))
        assert cli_accepts(script, list(command)) == 0, f"{script} rejects {command}"


def test_compose_coordinator_environment_is_accepted_by_load_config(compose, compose_variables):
    services = compose["services"]
    coordinator = services["coordinator"]
    raw_env = service_env(coordinator)
    assert raw_env and set(raw_env) <= COORDINATOR_ENV, f"not coordinator settings: {set(raw_env) - COORDINATOR_ENV}"
    env = {k: interpolate(v, compose_variables) for k, v in raw_env.items()}
    mounts = {spec.split(":")[1]: spec.split(":")[0] for spec in coordinator["volumes"]}
    command = coordinator["command"]
    config_in_container = command[command.index("--config") + 1]
    cfg = load_config(COMPOSE_DIR / mounts[config_in_container], environ=env)

    # Every address in it names a service of this file, on the port that service listens on.
    store = urlsplit(cfg.store_url)
    assert store.scheme.startswith("postgresql") and store.hostname == "postgres"
    pg_env = service_env(services["postgres"])
    assert store.username == pg_env["POSTGRES_USER"] and store.path == "/" + pg_env["POSTGRES_DB"]
    assert store.password == interpolate(pg_env["POSTGRES_PASSWORD"], compose_variables)
    broker = urlsplit(cfg.mqtt.url)
    assert broker.hostname == "mosquitto" and f"{broker.port}:{broker.port}" in services["mosquitto"]["ports"]
    assert cfg.broker_auth.admin_password == compose_variables["DYNSEC_ADMIN_PASSWORD"]
    assert cfg.mqtt.device_url.startswith(f"mqtt://{compose_variables['PUBLIC_HOST']}:")
    # data_dir is a named volume, or admin.token and signing.key die with the container.
    assert mounts[str(cfg.data_path)] in compose["volumes"]
    grpc_port = cfg.server.grpc_address.rsplit(":", 1)[1]
    assert f"{grpc_port}:{grpc_port}" in coordinator["ports"]
    metrics_port = cfg.server.metrics_address.rsplit(":", 1)[1]
    assert f":{metrics_port}/metrics" in " ".join(coordinator["healthcheck"]["test"])
    assert cfg.server.metrics_address.startswith("0.0.0.0:"), "the healthcheck runs inside the container, but publishing needs 0.0.0.0"


def test_compose_agent_service_sets_only_variables_the_agent_reads(compose):
    import typer.main

    from agent.cli import app

    envvars = {p.envvar for c in typer.main.get_command(app).commands.values() for p in c.params if isinstance(p.envvar, str)}
    assert set(service_env(compose["services"]["agent"])) <= envvars


# -- the compose broker's entrypoint and health check, against a real mosquitto --------------------


def shipped_conf_here(tmp_path: Path, port: int) -> str:
    """The shipped config with only its paths and port moved into tmp_path (each rewrite applies once)."""
    text = SHIPPED_CONF.read_text()
    rewrites = [
        (r"^listener 1883$", f"listener {port} 127.0.0.1"),
        (r"^persistence_location .*$", f"persistence_location {tmp_path}/data/"),
        (r"^plugin_opt_config_file .*$", f"plugin_opt_config_file {tmp_path}/data/dynamic-security.json"),
        (r"^plugin .*$", f"plugin {PLUGIN}"),
        (r"^pid_file .*$", f"pid_file {tmp_path}/run/mosquitto.pid"),
        # Root in a 0700 temporary directory: dropping to `mosquitto` could not reach it.
        (r"^user mosquitto$", "user root" if os.geteuid() == 0 else "user mosquitto"),
    ]
    for pattern, replacement in rewrites:
        text, n = re.subn(pattern, lambda m: replacement, text, flags=re.MULTILINE)
        assert n == 1, f"expected one line matching {pattern!r} in {SHIPPED_CONF}"
    return text


def wait_listening(port: int, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + WAIT
    pause = threading.Event()
    while True:
        assert proc.poll() is None, f"the entrypoint exited with {proc.returncode}:\n{log.read_text()[-2000:]}"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            assert time.monotonic() < deadline, f"mosquitto did not listen on {port}:\n{log.read_text()[-2000:]}"
            pause.wait(0.05)


def run_healthcheck(compose: dict, variables: dict[str, str], port: int, env: dict[str, str]) -> subprocess.CompletedProcess:
    kind, command = compose["services"]["mosquitto"]["healthcheck"]["test"]
    assert kind == "CMD-SHELL"
    command = interpolate(command, variables)
    command, n = re.subn(r"-p 1883\b", f"-p {port}", command)
    assert n == 1
    return subprocess.run(["sh", "-c", command], env=env, capture_output=True, text=True, timeout=WAIT + 5)


@pytest.mark.skipif(
    mosquitto_binary() is None or PLUGIN is None or not all(shutil.which(t) for t in ("mosquitto_ctrl", "mosquitto_sub", "sh")),
    reason="needs mosquitto with the dynamic security plugin, mosquitto_ctrl and mosquitto_sub",
)
def test_compose_broker_entrypoint_initialises_dynsec_and_passes_its_healthcheck(tmp_path, compose, compose_variables):
    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(shipped_conf_here(tmp_path, port))
    log = tmp_path / "entrypoint.log"
    env = {
        "PATH": os.environ["PATH"] + ":/usr/sbin",
        "MOSQUITTO_CONF": str(conf),
        **{k: interpolate(v, compose_variables) for k, v in service_env(compose["services"]["mosquitto"]).items()},
    }
    entrypoint = COMPOSE_DIR / "mosquitto-entrypoint.sh"

    def start(extra_env: dict[str, str]) -> subprocess.Popen:
        with open(log, "ab") as out:
            proc = subprocess.Popen(["sh", str(entrypoint)], env={**env, **extra_env}, stdout=out, stderr=subprocess.STDOUT)
        wait_listening(port, proc, log)
        return proc

    def stop(proc: subprocess.Popen) -> None:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(WAIT)

    # First start: the plugin's file is created with the admin from DYNSEC_ADMIN_PASSWORD.
    proc = start({})
    try:
        assert (tmp_path / "data" / "dynamic-security.json").exists()
        res = run_healthcheck(compose, compose_variables, port, env)
        assert res.returncode == 0, res.stderr
        # The health check can fail: a wrong password is refused.
        res = run_healthcheck(compose, {**compose_variables, "DYNSEC_ADMIN_PASSWORD": "wrong"}, port, {**env, "DYNSEC_ADMIN_PASSWORD": "wrong"})
        assert res.returncode != 0
        # The coordinator's dynsec account management works through this broker.
        from coordinator.broker import DynsecBrokerAuth

        auth = DynsecBrokerAuth("127.0.0.1", port, "edgefleet-admin", compose_variables["DYNSEC_ADMIN_PASSWORD"], timeout=WAIT)
        try:
            auth.ensure_coordinator_account("edgefleet-coordinator", compose_variables["COORDINATOR_MQTT_PASSWORD"])
            auth.provision("d-0123456789ab", "device-secret")
        finally:
            auth.close()
    finally:
        stop(proc)

    # Later starts keep the file: the admin password of the first start still holds.
    proc = start({"DYNSEC_ADMIN_PASSWORD": "a-different-one"})
    try:
        res = run_healthcheck(compose, compose_variables, port, env)
        assert res.returncode == 0, res.stderr
        assert (tmp_path / "data" / "mosquitto.db").exists(), "persistence is not where the shipped config says"
    finally:
        stop(proc)


def test_compose_broker_entrypoint_refuses_to_start_without_the_admin_password(tmp_path):
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(f"plugin_opt_config_file {tmp_path}/dynamic-security.json\nuser nobody\n")
    res = subprocess.run(
        ["sh", str(COMPOSE_DIR / "mosquitto-entrypoint.sh")], env={"PATH": os.environ["PATH"], "MOSQUITTO_CONF": str(conf)}, capture_output=True, text=True, timeout=WAIT
    )
    assert res.returncode != 0 and "DYNSEC_ADMIN_PASSWORD" in res.stderr


# -- docs -------------------------------------------------------------------------------------------


def test_operations_doc_lists_every_config_key_as_the_model_defines_it():
    text = (REPO / "docs" / "operations.md").read_text()
    expected = config_reference.embed(text, config_reference.markdown_table())
    assert text == expected, "docs/operations.md's key table is stale: run `.venv/bin/python deploy/config_reference.py --write docs/operations.md`"


def doc_blocks(text: str, name: str) -> list[str]:
    """Where docs/protocol.md describes message `name`: a table row starting with it, or a line
    naming it together with the table that follows that line."""
    lines = text.splitlines()
    blocks = []
    for i, line in enumerate(lines):
        if f"`{name}`" not in line:
            continue
        if line.startswith(f"| `{name}` |"):
            blocks.append(line)
            continue
        j = i + 1
        while j < len(lines) and not lines[j].startswith(("|", "#")):
            j += 1
        k = j
        while k < len(lines) and lines[k].startswith("|"):
            k += 1
        blocks.append("\n".join([line, *lines[j:k]]))
    return blocks


def test_protocol_doc_covers_every_topic_and_envelope_body():
    from edgefleet.v1 import admin_pb2, device_pb2, envelope_pb2, hardware_pb2

    text = (REPO / "docs" / "protocol.md").read_text()
    for kind in topics.AGENT_PUBLISHES + topics.COORDINATOR_PUBLISHES:
        assert f"`ef/v1/dev/{{device_id}}/{kind}`" in text, kind
    for field in envelope_pb2.Envelope.DESCRIPTOR.oneofs_by_name["body"].fields:
        assert f"`{field.message_type.name}`" in text, field.message_type.name
    # The built part of the wire, field by field: an agent in another language needs all of it.
    built = [envelope_pb2.Envelope, device_pb2.Status, device_pb2.Hello, device_pb2.ActiveModel, admin_pb2.EnrollRequest, admin_pb2.EnrollResponse, admin_pb2.MqttSettings]
    built += [getattr(hardware_pb2, name) for name in hardware_pb2.DESCRIPTOR.message_types_by_name]
    for message in built:
        name = message.DESCRIPTOR.name
        fields = [f.name for f in message.DESCRIPTOR.fields]
        blocks = doc_blocks(text, name)
        assert blocks, f"docs/protocol.md does not describe {name}"
        best = min(blocks, key=lambda b: sum(f"`{f}`" not in b for f in fields))
        missing = [f for f in fields if f"`{f}`" not in best]
        assert not missing, f"docs/protocol.md: {name} fields not described: {missing}"
    assert f"`protocol_version` = {envelope.PROTOCOL_VERSION}" in text

"""Per-device broker credentials against a real mosquitto: each device reaches only its own topics.

Every broker here is private (free port, temporary directory) and stopped by a finalizer even when
the test fails. Negative checks never rely on a timeout alone: after the forbidden message the
same client sends an allowed one on the same connection, and MQTT keeps one sender's order, so
"the first message to arrive is the allowed one" proves the forbidden one was dropped.
"""
from __future__ import annotations

import os
import queue
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from coordinator.broker import BrokerAuthError, DynsecBrokerAuth, PasswordFileBrokerAuth, acl, make_broker_auth
from edgefleet import topics
from tests.mosquitto import MosquittoProcess, mosquitto_binary

REPO = Path(__file__).resolve().parents[2]
SHIPPED_CONF = REPO / "deploy" / "mosquitto" / "mosquitto.conf"
ACL_EXAMPLE = REPO / "deploy" / "mosquitto" / "acl.example"
PLUGIN_CANDIDATES = (
    "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so",
    "/usr/lib/aarch64-linux-gnu/mosquitto_dynamic_security.so",
    "/usr/lib/mosquitto_dynamic_security.so",
    "/usr/local/lib/mosquitto_dynamic_security.so",
)
PLUGIN = next((p for p in PLUGIN_CANDIDATES if os.path.exists(p)), None)
ADMIN, ADMIN_PW = "edgefleet-admin", "admin-secret"
COORD, COORD_PW = acl.COORDINATOR_USERNAME, "coordinator-secret"
WAIT = 5.0  # upper bound for anything that should happen at once
QUIET = 0.3  # how long "nothing else arrives" is watched, after ordering already proved the point

pytestmark = [
    pytest.mark.skipif(mosquitto_binary() is None, reason="mosquitto is not installed"),
    pytest.mark.timeout(120),
]
needs_dynsec = pytest.mark.skipif(PLUGIN is None or shutil.which("mosquitto_ctrl") is None, reason="mosquitto dynamic security plugin or mosquitto_ctrl missing")

PROTOCOLS = {"v5": mqtt.MQTTv5, "v311": mqtt.MQTTv311}


class Peer:
    """A paho client that records what the broker answered, for assertions."""

    def __init__(self, broker: MosquittoProcess, username: str, password: str, client_id: str, protocol: int = mqtt.MQTTv5) -> None:
        self.broker = broker
        # Test peers never reconnect: a lost or refused connection ends paho's loop at once.
        self.client = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol, reconnect_on_failure=False
        )
        self.client.username_pw_set(username, password)
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.connack: mqtt.ReasonCode | None = None
        self.disconnect_rc: mqtt.ReasonCode | None = None
        self.connected = threading.Event()
        self.disconnected = threading.Event()
        self._acks: dict[int, object] = {}
        self._acked = threading.Condition()
        c = self.client
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = lambda cl, ud, msg: self.messages.put(msg)
        c.on_subscribe = lambda cl, ud, mid, rcs, props: self._ack(mid, rcs[0])
        c.on_publish = lambda cl, ud, mid, rc, props: self._ack(mid, rc)

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:  # noqa: ANN001
        self.connack = reason_code
        self.connected.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:  # noqa: ANN001
        self.disconnect_rc = reason_code
        self.disconnected.set()

    def _ack(self, mid: int, rc: object) -> None:
        with self._acked:
            self._acks[mid] = rc
            self._acked.notify_all()

    def _wait_ack(self, mid: int) -> mqtt.ReasonCode:
        with self._acked:
            assert self._acked.wait_for(lambda: mid in self._acks, timeout=WAIT), f"no acknowledgement for mid {mid}"
            return self._acks.pop(mid)

    def connect(self) -> mqtt.ReasonCode:
        """CONNECT and wait for CONNACK; a refused client is stopped (paho would keep retrying)."""
        self.client.connect(self.broker.host, self.broker.port, keepalive=30)
        self.client.loop_start()
        assert self.connected.wait(WAIT), "no CONNACK"
        return self.connack

    def subscribe(self, topic: str) -> mqtt.ReasonCode:
        rc, mid = self.client.subscribe(topic, qos=1)
        assert rc == mqtt.MQTT_ERR_SUCCESS
        return self._wait_ack(mid)

    def publish(self, topic: str, payload: bytes) -> mqtt.ReasonCode:
        """QoS 1 publish; returns the PUBACK reason (always Success on MQTT 3.1.1, which has none)."""
        info = self.client.publish(topic, payload, qos=1)
        assert info.rc == mqtt.MQTT_ERR_SUCCESS
        return self._wait_ack(info.mid)

    def next_message(self, timeout: float = WAIT) -> mqtt.MQTTMessage | None:
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            return None

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def peers():
    made: list[Peer] = []

    def make(broker: MosquittoProcess, username: str, password: str, client_id: str | None = None, protocol: int = mqtt.MQTTv5) -> Peer:
        p = Peer(broker, username, password, client_id or username, protocol)
        made.append(p)
        return p

    yield make
    for p in made:
        p.close()


def start_broker(request, tmp_path: Path, conf_text: str) -> MosquittoProcess:
    broker = MosquittoProcess(conf_text, tmp_path)
    request.addfinalizer(broker.stop)  # registered before start: a half-started broker is stopped too
    return broker.start()


def init_dynsec(path: Path) -> None:
    subprocess.run(["mosquitto_ctrl", "dynsec", "init", str(path), ADMIN, ADMIN_PW], check=True, capture_output=True, text=True)


@pytest.fixture
def dynsec_broker(request, tmp_path) -> MosquittoProcess:
    init_dynsec(tmp_path / "dynsec.json")
    conf = f"""
per_listener_settings false
allow_anonymous false
persistence false
plugin {PLUGIN}
plugin_opt_config_file {{dir}}/dynsec.json
"""
    return start_broker(request, tmp_path, conf)


@pytest.fixture
def auth(request, dynsec_broker) -> DynsecBrokerAuth:
    a = DynsecBrokerAuth(dynsec_broker.host, dynsec_broker.port, ADMIN, ADMIN_PW, timeout=WAIT)
    request.addfinalizer(a.close)
    a.ensure_coordinator_account(COORD, COORD_PW)
    a.provision("dev-a", "pw-a")
    a.provision("dev-b", "pw-b")
    return a


def connected(peer: Peer) -> Peer:
    rc = peer.connect()
    assert not rc.is_failure, f"connect refused: {rc}"
    return peer


# -- dynsec -----------------------------------------------------------------------------------


@needs_dynsec
def test_device_publishes_own_topics_and_receives_own_commands(auth, dynsec_broker, peers):
    coord = connected(peers(dynsec_broker, COORD, COORD_PW, "coord-1"))
    # The coordinator's real subscriptions: shared, so several replicas can ingest.
    for kind in topics.AGENT_PUBLISHES:
        assert not coord.subscribe(topics.shared(topics.all_devices(kind))).is_failure
    a = connected(peers(dynsec_broker, "dev-a", "pw-a"))
    assert not a.subscribe(topics.cmd("dev-a")).is_failure
    assert not a.subscribe(topics.blob("dev-a")).is_failure

    for kind in topics.AGENT_PUBLISHES:
        topic = topics.device_topic("dev-a", kind)
        assert not a.publish(topic, kind.encode()).is_failure, topic
        msg = coord.next_message()
        assert msg is not None and (msg.topic, msg.payload) == (topic, kind.encode())

    assert not coord.publish(topics.cmd("dev-a"), b"deploy").is_failure
    msg = a.next_message()
    assert msg is not None and (msg.topic, msg.payload) == (topics.cmd("dev-a"), b"deploy")
    assert not coord.publish(topics.blob("dev-a"), b"chunk").is_failure
    msg = a.next_message()
    assert msg is not None and (msg.topic, msg.payload) == (topics.blob("dev-a"), b"chunk")


@needs_dynsec
@pytest.mark.parametrize("protocol", ["v5", "v311"])
def test_devices_read_broadcast_topics_only_the_coordinator_writes_them(auth, dynsec_broker, peers, protocol):
    coord = connected(peers(dynsec_broker, COORD, COORD_PW, "coord-1"))
    a = connected(peers(dynsec_broker, "dev-a", "pw-a", protocol=PROTOCOLS[protocol]))
    topic = topics.broadcast("ab" * 16)
    assert not a.subscribe(topic).is_failure
    assert a.subscribe("ef/v1/#").is_failure  # the broadcast grant opens nothing else
    assert not coord.publish(topic, b"sealed chunk").is_failure
    msg = a.next_message()
    assert msg is not None and (msg.topic, msg.payload) == (topic, b"sealed chunk")
    rc = a.publish(topic, b"forged chunk")
    if protocol == "v5":
        assert rc.is_failure and rc.getName() == "Not authorized"
    assert a.next_message(QUIET) is None  # the forged chunk never reached a subscriber


@needs_dynsec
@pytest.mark.parametrize("protocol", ["v5", "v311"])
def test_device_cannot_publish_to_another_devices_topics(auth, dynsec_broker, peers, protocol):
    coord = connected(peers(dynsec_broker, COORD, COORD_PW, "coord-1"))
    assert not coord.subscribe(f"{topics.ROOT}/#").is_failure  # sees any device topic
    a = connected(peers(dynsec_broker, "dev-a", "pw-a", protocol=PROTOCOLS[protocol]))

    forged = [(topics.telemetry("dev-b"), b"forged"), (topics.status("dev-b"), b"offline"), (topics.cmd("dev-a"), b"self-command"), ("elsewhere/x", b"stray")]
    for topic, payload in forged:
        rc = a.publish(topic, payload)
        if protocol == "v5":  # MQTT 3.1.1 has no negative PUBACK: the broker drops silently
            assert rc.is_failure and rc.getName() == "Not authorized", (topic, rc)
    assert not a.publish(topics.telemetry("dev-a"), b"valid").is_failure

    first = coord.next_message()
    assert first is not None, "the valid message never arrived"
    assert (first.topic, first.payload) == (topics.telemetry("dev-a"), b"valid")
    assert coord.next_message(QUIET) is None


@needs_dynsec
@pytest.mark.parametrize("protocol", ["v5", "v311"])
def test_device_cannot_subscribe_to_another_devices_topics(auth, dynsec_broker, peers, protocol):
    coord = connected(peers(dynsec_broker, COORD, COORD_PW, "coord-1"))
    a = connected(peers(dynsec_broker, "dev-a", "pw-a", protocol=PROTOCOLS[protocol]))
    for topic in (topics.cmd("dev-b"), topics.blob("dev-b"), topics.all_devices(topics.CMD), "ef/v1/dev/#", "#", topics.telemetry("dev-b")):
        rc = a.subscribe(topic)
        assert rc.is_failure, (topic, rc)
    assert not a.subscribe(topics.cmd("dev-a")).is_failure

    assert not coord.publish(topics.cmd("dev-b"), b"for-b").is_failure
    assert not coord.publish(topics.cmd("dev-a"), b"for-a").is_failure
    first = a.next_message()
    assert first is not None and (first.topic, first.payload) == (topics.cmd("dev-a"), b"for-a")
    assert a.next_message(QUIET) is None


@needs_dynsec
@pytest.mark.parametrize("protocol", ["v5", "v311"])
def test_wrong_password_or_foreign_client_id_is_refused_at_connect(auth, dynsec_broker, peers, protocol):
    proto = PROTOCOLS[protocol]
    rc = peers(dynsec_broker, "dev-a", "wrong", protocol=proto).connect()
    assert rc.is_failure and rc.getName() == "Not authorized", rc
    # The credentials are bound to the device's client id: no taking over another device's session.
    rc = peers(dynsec_broker, "dev-a", "pw-a", client_id="dev-b", protocol=proto).connect()
    assert rc.is_failure and rc.getName() == "Not authorized", rc
    rc = peers(dynsec_broker, "nobody", "pw-a", protocol=proto).connect()
    assert rc.is_failure, rc
    assert not peers(dynsec_broker, "dev-a", "pw-a", protocol=proto).connect().is_failure


@needs_dynsec
def test_revoke_disconnects_and_refuses_the_device(auth, dynsec_broker, peers):
    a = connected(peers(dynsec_broker, "dev-a", "pw-a"))
    auth.revoke("dev-a")
    assert a.disconnected.wait(WAIT), "a revoked device stays connected"
    rc = peers(dynsec_broker, "dev-a", "pw-a").connect()
    assert rc.is_failure and rc.getName() == "Not authorized", rc
    assert not peers(dynsec_broker, "dev-b", "pw-b").connect().is_failure, "revoking A touched B"
    auth.revoke("dev-a")  # idempotent: removing a device twice is not an error
    assert "edgefleet-device-dev-a" not in str(auth.run([{"command": "listRoles"}]))


@needs_dynsec
def test_provisioning_again_replaces_the_password(auth, dynsec_broker, peers):
    old = connected(peers(dynsec_broker, "dev-a", "pw-a"))
    auth.provision("dev-a", "pw-a2")
    assert old.disconnected.wait(WAIT), "the session with the old password survived re-provisioning"
    assert peers(dynsec_broker, "dev-a", "pw-a").connect().is_failure
    a = connected(peers(dynsec_broker, "dev-a", "pw-a2"))
    assert not a.publish(topics.telemetry("dev-a"), b"x").is_failure
    assert a.publish(topics.telemetry("dev-b"), b"x").is_failure


@needs_dynsec
def test_plugin_and_connection_errors_raise_broker_auth_error(auth, dynsec_broker):
    with pytest.raises(BrokerAuthError, match="Role not found"):
        auth.run([{"command": "deleteRole", "rolename": "no-such-role"}])
    with pytest.raises(BrokerAuthError, match="Unknown command"):
        auth.run([{"command": "noSuchCommand"}])
    with pytest.raises(ValueError, match="invalid device id"):
        auth.provision("a/+", "pw")

    wrong_admin = DynsecBrokerAuth(dynsec_broker.host, dynsec_broker.port, ADMIN, "not-the-password", timeout=WAIT)
    try:
        with pytest.raises(BrokerAuthError, match="refused the dynamic security admin.*Not authorized"):
            wrong_admin.provision("dev-c", "pw")
    finally:
        wrong_admin.close()
    # A device account may not drive the plugin: the broker refuses the command publish.
    as_device = DynsecBrokerAuth(dynsec_broker.host, dynsec_broker.port, "dev-a", "pw-a", timeout=WAIT)
    try:
        with pytest.raises(BrokerAuthError):
            as_device.provision("dev-c", "pw")
    finally:
        as_device.close()


@needs_dynsec
def test_admin_session_survives_a_broker_restart(auth, dynsec_broker, peers):
    """The coordinator keeps one admin connection; paho reconnects it after the broker comes back."""
    dynsec_broker.restart()
    auth.provision("dev-c", "pw-c")  # waits for paho's reconnect (backoff starts at 1 s)
    assert not peers(dynsec_broker, "dev-c", "pw-c").connect().is_failure
    assert not peers(dynsec_broker, "dev-a", "pw-a").connect().is_failure, "the plugin forgot accounts across a restart"


def test_unreachable_broker_raises_broker_auth_error():
    from tests.mosquitto import free_port

    a = DynsecBrokerAuth("127.0.0.1", free_port(), ADMIN, ADMIN_PW, timeout=2)
    try:
        with pytest.raises(BrokerAuthError, match="cannot reach the broker"):
            a.provision("dev-a", "pw")
    finally:
        a.close()


@needs_dynsec
def test_concurrent_provisioning_from_many_threads(auth, dynsec_broker, peers):
    ids = [f"dev-t{i}" for i in range(12)]
    errors: list[BaseException] = []

    def work(device_id: str) -> None:
        try:
            auth.provision(device_id, "pw-" + device_id)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT * 2)
    assert not errors
    for device_id in ids[:3]:
        assert not peers(dynsec_broker, device_id, "pw-" + device_id).connect().is_failure


def test_make_broker_auth_selects_by_mode(tmp_path):
    from coordinator.broker import BrokerAuthConfigError, NoBrokerAuth
    from coordinator.config import BrokerAuthConfig, MqttConfig

    mqtt_cfg = MqttConfig(url="mqtt://broker.example:1999")
    assert isinstance(make_broker_auth(BrokerAuthConfig(mode="none"), mqtt_cfg), NoBrokerAuth)
    d = make_broker_auth(BrokerAuthConfig(mode="dynsec", admin_username="adm", admin_password="pw"), mqtt_cfg)
    assert isinstance(d, DynsecBrokerAuth) and "broker.example:1999" in d.describe()
    with pytest.raises(BrokerAuthConfigError, match="admin_password"):
        make_broker_auth(BrokerAuthConfig(mode="dynsec", admin_username="adm"), mqtt_cfg)

    class Cfg:  # password_file keys are not in the config model yet: duck-typed
        mode = "password_file"
        admin_username = admin_password = ""
        password_file = str(tmp_path / "passwd")
        reload_pid_file = ""
        reload_command = ""

    assert isinstance(make_broker_auth(Cfg(), mqtt_cfg), PasswordFileBrokerAuth)
    Cfg.mode = "ldap"
    with pytest.raises(BrokerAuthConfigError, match="unknown broker_auth.mode 'ldap'"):
        make_broker_auth(Cfg(), mqtt_cfg)


# -- the shipped configuration ----------------------------------------------------------------


def shipped_conf_for_test(text: str, plugin: str) -> str:
    """Point the shipped config's paths and port into the test's directory; keep every other line.

    Each rewrite must apply exactly once, so a reshaped config fails here instead of silently
    testing something else.
    """
    rewrites = [
        (r"^listener 1883$", "listener {port} 127.0.0.1"),
        (r"^persistence_location .*$", "persistence_location {dir}/"),
        (r"^plugin_opt_config_file .*$", "plugin_opt_config_file {dir}/dynamic-security.json"),
        (r"^plugin .*$", f"plugin {plugin}"),
        (r"^pid_file .*$", "pid_file {dir}/mosquitto.pid"),
        (r"^user mosquitto$", "user root" if os.geteuid() == 0 else "user mosquitto"),
    ]
    for pattern, replacement in rewrites:
        text, n = re.subn(pattern, lambda m: replacement, text, flags=re.MULTILINE)
        assert n == 1, f"expected one line matching {pattern!r} in {SHIPPED_CONF}, found {n}"
    return text


@needs_dynsec
def test_shipped_mosquitto_conf_starts_and_a_provisioned_device_connects(request, tmp_path, peers):
    text = SHIPPED_CONF.read_text()
    for setting in ("persistence true", "allow_anonymous false", "max_queued_messages", "max_inflight_messages", "persistent_client_expiration", "autosave_interval"):
        assert re.search(rf"^{setting}", text, re.MULTILINE), setting
    assert int(re.search(r"^max_queued_messages (\d+)$", text, re.MULTILINE).group(1)) > 1000
    init_dynsec(tmp_path / "dynamic-security.json")
    broker = start_broker(request, tmp_path, shipped_conf_for_test(text, PLUGIN))

    auth = DynsecBrokerAuth(broker.host, broker.port, ADMIN, ADMIN_PW, timeout=WAIT)
    request.addfinalizer(auth.close)
    auth.ensure_coordinator_account(COORD, COORD_PW)
    auth.provision("dev-a", "pw-a")
    assert peers(broker, "anonymous-nobody", "").connect().is_failure
    coord = connected(peers(broker, COORD, COORD_PW, "coord-1"))
    assert not coord.subscribe(topics.shared(topics.all_devices(topics.TELEMETRY))).is_failure
    a = connected(peers(broker, "dev-a", "pw-a"))
    assert not a.publish(topics.telemetry("dev-a"), b"t1").is_failure
    msg = coord.next_message()
    assert msg is not None and msg.payload == b"t1"

    # Persistence and the plugin's file live where the config says: the account survives a restart.
    auth.close()
    a.close()
    coord.close()
    broker.restart()
    assert (tmp_path / "mosquitto.db").exists()
    assert not peers(broker, "dev-a", "pw-a", client_id="dev-a").connect().is_failure


def test_acl_example_is_the_text_the_code_generates():
    assert ACL_EXAMPLE.read_text() == acl.acl_file_text()


# -- password_file route ----------------------------------------------------------------------


def wait_connect_result(broker: MosquittoProcess, peers, username: str, password: str, *, refused: bool) -> None:
    """mosquitto reloads asynchronously after SIGHUP: retry CONNECT until it answers as expected."""
    deadline = time.monotonic() + WAIT
    pause = threading.Event()
    while True:
        peer = peers(broker, username, password)
        rc = peer.connect()
        peer.close()
        if rc.is_failure == refused:
            return
        assert time.monotonic() < deadline, f"{username}: CONNECT still {'accepted' if not refused else 'refused'} ({rc}) after reload"
        pause.wait(0.05)


def test_password_file_route_with_acl_example(request, tmp_path, peers):
    passwd = tmp_path / "passwd"
    auth = PasswordFileBrokerAuth(passwd)
    auth.ensure_coordinator_account(COORD, COORD_PW)
    auth.provision("dev-a", "pw-a")
    auth.provision("dev-b", "pw-b")
    assert sum(1 for _ in passwd.read_text().splitlines()) == 3
    assert f"{COORD}:$7$101$" in passwd.read_text()
    (tmp_path / "acl").write_text(ACL_EXAMPLE.read_text())
    conf = """
per_listener_settings false
allow_anonymous false
password_file {dir}/passwd
acl_file {dir}/acl
"""
    broker = start_broker(request, tmp_path, conf)
    auth = PasswordFileBrokerAuth(passwd, reload=broker.reload)

    coord = connected(peers(broker, COORD, COORD_PW, "coord-1"))
    assert not coord.subscribe(topics.shared(topics.all_devices(topics.TELEMETRY))).is_failure
    a = connected(peers(broker, "dev-a", "pw-a"))
    assert not a.subscribe(topics.cmd("dev-a")).is_failure
    # mosquitto's acl_file grants the SUBACK but never delivers what the ACL does not allow.
    a.subscribe(topics.cmd("dev-b"))
    assert a.publish(topics.telemetry("dev-b"), b"forged").is_failure
    assert not a.publish(topics.telemetry("dev-a"), b"valid").is_failure
    first = coord.next_message()
    assert first is not None and (first.topic, first.payload) == (topics.telemetry("dev-a"), b"valid")
    assert not coord.publish(topics.cmd("dev-b"), b"for-b").is_failure
    assert not coord.publish(topics.cmd("dev-a"), b"for-a").is_failure
    first = a.next_message()
    assert first is not None and (first.topic, first.payload) == (topics.cmd("dev-a"), b"for-a")
    assert a.next_message(QUIET) is None and coord.next_message(QUIET) is None

    auth.provision("dev-c", "pw-c")
    wait_connect_result(broker, peers, "dev-c", "pw-c", refused=False)
    auth.revoke("dev-a")
    assert a.disconnected.wait(WAIT), "mosquitto kept a device whose password line is gone"
    wait_connect_result(broker, peers, "dev-a", "pw-a", refused=True)
    assert "dev-a:" not in passwd.read_text() and "dev-b:" in passwd.read_text()


def test_password_hash_matches_mosquitto_passwd(tmp_path):
    """Our $7$ lines are what mosquitto_passwd writes: same salt and password, same hash."""
    import base64

    from coordinator.broker.password_file import hash_password

    if shutil.which("mosquitto_passwd") is None:
        pytest.skip("mosquitto_passwd missing")
    f = tmp_path / "pw"
    f.touch()
    subprocess.run(["mosquitto_passwd", "-b", str(f), "someone", "pässword:with$chars"], check=True)
    _, _, iterations, salt, _ = f.read_text().strip().split(":", 1)[1].split("$")
    assert f.read_text().strip() == "someone:" + hash_password("pässword:with$chars", salt=base64.b64decode(salt), iterations=int(iterations))

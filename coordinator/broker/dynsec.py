"""Device credentials through mosquitto's dynamic security plugin.

Commands are JSON published to $CONTROL/dynamic-security/v1; the plugin answers on .../response,
echoing each command's correlationData. mosquitto 2.0.x substitutes no %c/%u in dynsec ACLs (that
arrives in 2.1, eclipse-mosquitto/mosquitto#3191; a %u ACL simply denies on 2.0.11), so each device
gets its own role, edgefleet-device-{id}, listing its own topics.
"""
from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from typing import Any

import paho.mqtt.client as mqtt

from coordinator.broker import acl
from coordinator.broker.auth import BrokerAuthError, check_device_id
from edgefleet import topics

log = logging.getLogger(__name__)

CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC = CONTROL_TOPIC + "/response"

DEVICE_ROLE_PREFIX = "edgefleet-device-"
COORDINATOR_ROLE = "edgefleet-coordinator"

# Allows are checked before the fence (higher priority first).
_ALLOW_PRIORITY = 10
_FENCE_PRIORITY = 0


def device_role_name(device_id: str) -> str:
    return DEVICE_ROLE_PREFIX + device_id


def _acl(acltype: str, topic: str, allow: bool = True, priority: int = _ALLOW_PRIORITY) -> dict[str, Any]:
    return {"acltype": acltype, "topic": topic, "priority": priority, "allow": allow}


def device_role_acls(device_id: str) -> list[dict[str, Any]]:
    acls = [_acl("publishClientSend", t) for t in acl.device_publish_topics(device_id)]
    for t in acl.device_subscribe_topics(device_id):
        # Literal: a device never needs a wildcard, so it is never granted one.
        acls += [_acl("subscribeLiteral", t), _acl("publishClientReceive", t), _acl("unsubscribeLiteral", t)]
    # Broadcast transfers: one topic per transfer id, so a pattern (the chunks are encrypted per transfer).
    b = acl.device_broadcast_filter()
    acls += [_acl("subscribePattern", b), _acl("publishClientReceive", b), _acl("unsubscribePattern", b)]
    # A fence inside the role, so a device stays on its own topics whatever the broker-wide
    # default access says ('#' does not match $-topics; those stay at the default, deny for publish
    # and subscribe).
    acls += [_acl(kind, "#", allow=False, priority=_FENCE_PRIORITY) for kind in ("publishClientSend", "publishClientReceive", "subscribePattern")]
    return acls


def coordinator_role_acls(share_group: str = topics.SHARE_GROUP) -> list[dict[str, Any]]:
    everything, shared = acl.coordinator_filters(share_group)
    acls = [_acl("publishClientSend", everything), _acl("publishClientReceive", everything),
            _acl("publishClientSend", acl.coordinator_broadcast_filter())]
    for f in (everything, shared):
        acls += [_acl("subscribePattern", f), _acl("unsubscribePattern", f)]
    return acls


def _is(error: str, phrase: str) -> bool:
    return phrase in error.lower()


class DynsecSession:
    """One admin connection to the plugin, opened on first use and kept; paho reconnects it.

    Requests are matched to responses by correlation id, so several threads may send at once.
    """

    def __init__(
        self,
        host: str,
        port: int,
        username: str,
        password: str,
        *,
        tls: bool = False,
        tls_ca_file: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.host = host
        self.port = port
        self.username = username
        self._password = password
        self._tls = tls or bool(tls_ca_file)
        self._tls_ca_file = tls_ca_file
        self.timeout = timeout
        self._client: mqtt.Client | None = None
        self._open_lock = threading.Lock()
        # Guards everything below; never held while calling into paho (paho holds its own locks
        # while running our callbacks).
        self._cond = threading.Condition()
        self._ready = False
        self._refused: str | None = None
        self._sub_mid: int | None = None
        self._waiting: set[str] = set()
        self._results: dict[str, list[dict[str, Any]] | str] = {}
        self._refused_mids: dict[int, str] = {}

    # -- public -------------------------------------------------------------------------------

    def request(self, commands: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Send commands in one message; return the plugin's responses in the same order.

        Raises BrokerAuthError when the broker cannot be reached, refuses the admin, or the plugin
        does not answer in time. Errors inside individual responses are left to the caller.
        """
        deadline = time.monotonic() + self.timeout
        client = self._ready_client(deadline)
        req = uuid.uuid4().hex
        payload = {"commands": [dict(c, correlationData=f"{req}:{i}") for i, c in enumerate(commands)]}
        with self._cond:
            self._waiting.add(req)
        try:
            info = client.publish(CONTROL_TOPIC, json.dumps(payload), qos=1)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                raise BrokerAuthError(f"could not send a dynamic security command to {self._where()}: {mqtt.error_string(info.rc)}")
            mid = info.mid
            with self._cond:
                self._cond.wait_for(lambda: req in self._results or mid in self._refused_mids, timeout=max(0.0, deadline - time.monotonic()))
                result = self._results.pop(req, None)
                refused = self._refused_mids.pop(mid, None)
        finally:
            with self._cond:
                self._waiting.discard(req)
                self._results.pop(req, None)
        if refused is not None:
            raise BrokerAuthError(
                f"{self._where()} refused the dynamic security command from {self.username!r} ({refused}): "
                "is this the dynsec admin account?"
            )
        if result is None:
            raise BrokerAuthError(
                f"no answer from the dynamic security plugin at {self._where()} within {self.timeout:g} s: "
                "is the plugin loaded (plugin .../mosquitto_dynamic_security.so in mosquitto.conf)?"
            )
        if isinstance(result, str):
            raise BrokerAuthError(result)
        if len(result) != len(commands):
            raise BrokerAuthError(f"the dynamic security plugin answered {len(result)} of {len(commands)} commands")
        return result

    def close(self) -> None:
        with self._open_lock:
            client, self._client = self._client, None
        if client is not None:
            client.disconnect()
            client.loop_stop()
        with self._cond:
            self._ready = False

    # -- connection ---------------------------------------------------------------------------

    def _where(self) -> str:
        return f"{self.host}:{self.port}"

    def _ready_client(self, deadline: float) -> mqtt.Client:
        with self._open_lock:
            if self._client is None:
                self._client = self._open()
            client = self._client
        with self._cond:
            self._cond.wait_for(lambda: self._ready or self._refused is not None, timeout=max(0.0, deadline - time.monotonic()))
            ready, refused = self._ready, self._refused
        if refused is not None:
            self.close()
            raise BrokerAuthError(f"{self._where()} refused the dynamic security admin {self.username!r}: {refused}")
        if not ready:
            raise BrokerAuthError(f"not connected to the broker at {self._where()} after {self.timeout:g} s (paho keeps retrying)")
        return client

    def _open(self) -> mqtt.Client:
        client = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"edgefleet-dynsec-{uuid.uuid4().hex[:12]}",
            protocol=mqtt.MQTTv5,
        )
        client.username_pw_set(self.username, self._password)
        if self._tls:
            client.tls_set(ca_certs=self._tls_ca_file)
        client.reconnect_delay_set(min_delay=1, max_delay=10)
        client.connect_timeout = min(self.timeout, 5.0)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        client.on_disconnect = self._on_disconnect
        with self._cond:
            self._ready, self._refused, self._sub_mid = False, None, None
        try:
            client.connect(self.host, self.port, keepalive=60, clean_start=True)
        except OSError as exc:
            raise BrokerAuthError(f"cannot reach the broker at {self._where()} for dynamic security: {exc}") from None
        client.loop_start()
        return client

    # -- paho callbacks: they log and never raise (an exception would stop paho's thread) --------

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:  # noqa: ANN001
        try:
            if reason_code.is_failure:
                # Retrying refused admin credentials is pointless: stop paho's loop now.
                client.disconnect()
                with self._cond:
                    self._refused = str(reason_code)
                    self._cond.notify_all()
                return
            # Subscribe on every connect: the session is clean, a reconnect starts deaf.
            _, mid = client.subscribe(RESPONSE_TOPIC, qos=1)
            with self._cond:
                self._sub_mid = mid
        except Exception:  # noqa: BLE001
            log.exception("dynsec on_connect failed")

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:  # noqa: ANN001
        try:
            with self._cond:
                if mid != self._sub_mid:
                    return
                if reason_codes and reason_codes[0].is_failure:
                    self._refused = f"subscription to {RESPONSE_TOPIC} refused: {reason_codes[0]}"
                else:
                    self._ready = True
                self._cond.notify_all()
        except Exception:  # noqa: BLE001
            log.exception("dynsec on_subscribe failed")

    def _on_message(self, client, userdata, message) -> None:  # noqa: ANN001
        try:
            responses = json.loads(message.payload).get("responses") or []
            corr = str(responses[0].get("correlationData", "")) if responses else ""
            req = corr.partition(":")[0]
            with self._cond:
                if req in self._waiting:
                    self._results[req] = responses
                    self._cond.notify_all()
        except Exception:  # noqa: BLE001
            log.exception("unreadable dynamic security response on %s", message.topic)

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:  # noqa: ANN001
        try:
            if reason_code.is_failure:
                with self._cond:
                    self._refused_mids[mid] = str(reason_code)
                    self._cond.notify_all()
        except Exception:  # noqa: BLE001
            log.exception("dynsec on_publish failed")

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:  # noqa: ANN001
        try:
            with self._cond:
                self._ready = False
                for req in self._waiting:
                    self._results.setdefault(req, f"connection to the broker at {self._where()} lost ({reason_code}) before the plugin answered")
                self._cond.notify_all()
        except Exception:  # noqa: BLE001
            log.exception("dynsec on_disconnect failed")


def _check(commands: list[dict[str, Any]], responses: list[dict[str, Any]], tolerated: dict[int, str]) -> list[dict[str, Any]]:
    """Raise for the first error not tolerated; tolerated maps a command index to a phrase."""
    for i, (cmd, resp) in enumerate(zip(commands, responses)):
        error = resp.get("error")
        if not error:
            continue
        if i in tolerated and _is(str(error), tolerated[i]):
            continue
        what = " ".join(filter(None, (cmd["command"], cmd.get("username") or cmd.get("rolename"))))
        raise BrokerAuthError(f"dynamic security plugin: {what}: {error}")
    return responses


class DynsecBrokerAuth:
    """Per-device clients and roles in mosquitto's dynamic security plugin."""

    def __init__(
        self,
        host: str,
        port: int,
        admin_username: str,
        admin_password: str,
        *,
        tls: bool = False,
        tls_ca_file: str | None = None,
        timeout: float = 10.0,
        share_group: str = topics.SHARE_GROUP,
    ) -> None:
        self.session = DynsecSession(host, port, admin_username, admin_password, tls=tls, tls_ca_file=tls_ca_file, timeout=timeout)
        self.share_group = share_group

    def run(self, commands: list[dict[str, Any]], tolerated: dict[int, str] | None = None) -> list[dict[str, Any]]:
        """Send raw dynsec commands; raise BrokerAuthError carrying the plugin's message on an error."""
        return _check(commands, self.session.request(commands), tolerated or {})

    def provision(self, device_id: str, password: str) -> None:
        check_device_id(device_id)
        role = device_role_name(device_id)
        # Delete then create, in one message: idempotent, and a re-enrolled device's old password
        # (and any session using it) is gone. The plugin runs the commands in order.
        commands = [
            {"command": "deleteClient", "username": device_id},
            {"command": "deleteRole", "rolename": role},
            {"command": "createRole", "rolename": role, "textdescription": f"edgefleet device {device_id}: its own topics only", "acls": device_role_acls(device_id)},
            {
                "command": "createClient",
                "username": device_id,
                "password": password,
                # Bound client id: these credentials cannot take over another device's session.
                "clientid": device_id,
                "textdescription": "edgefleet device",
                "roles": [{"rolename": role, "priority": 0}],
            },
        ]
        self.run(commands, tolerated={0: "not found", 1: "not found"})
        log.info("dynsec: provisioned device %s", device_id)

    def revoke(self, device_id: str) -> None:
        check_device_id(device_id)
        # Deleting the client also disconnects a device connected with it.
        commands = [
            {"command": "deleteClient", "username": device_id},
            {"command": "deleteRole", "rolename": device_role_name(device_id)},
        ]
        self.run(commands, tolerated={0: "not found", 1: "not found"})
        log.info("dynsec: revoked device %s", device_id)

    def ensure_coordinator_account(self, username: str, password: str) -> None:
        """Create the coordinator's account with rights over ef/v1/dev/# if it does not exist.

        An existing account keeps its password (changing it would disconnect running replicas);
        its role's ACLs are brought up to date. Rotate the password with mosquitto_ctrl.
        """
        if not username or any(c in username for c in "+#/"):
            raise ValueError(f"invalid coordinator broker username: {username!r}")
        commands = [
            {"command": "createRole", "rolename": COORDINATOR_ROLE, "textdescription": "edgefleet coordinator: all device topics"},
            {"command": "modifyRole", "rolename": COORDINATOR_ROLE, "acls": coordinator_role_acls(self.share_group)},
            {"command": "createClient", "username": username, "password": password, "textdescription": "edgefleet coordinator", "roles": [{"rolename": COORDINATOR_ROLE, "priority": 0}]},
            {"command": "getClient", "username": username},
        ]
        responses = self.run(commands, tolerated={0: "already exists", 2: "already exists"})
        roles = {r.get("rolename") for r in responses[3].get("data", {}).get("client", {}).get("roles", [])}
        if COORDINATOR_ROLE not in roles:
            self.run([{"command": "addClientRole", "username": username, "rolename": COORDINATOR_ROLE, "priority": 0}])

    def describe(self) -> str:
        s = self.session
        return f"dynsec (mosquitto dynamic security plugin at {s.host}:{s.port}, admin {s.username!r})"

    def close(self) -> None:
        self.session.close()

"""Pick the BrokerAuth implementation named by the coordinator's broker_auth.mode."""
from __future__ import annotations

from typing import Any

from coordinator.broker.auth import BrokerAuth, BrokerAuthConfigError, NoBrokerAuth
from edgefleet import topics

MODES = ("none", "dynsec", "password_file")


def make_broker_auth(auth: Any, mqtt: Any) -> BrokerAuth:
    """Build the backend from the broker_auth and mqtt config sections.

    Reads auth.mode, auth.admin_username, auth.admin_password, and when present auth.timeout_s,
    auth.password_file, auth.reload_pid_file, auth.reload_command; mqtt.url and mqtt.share_group.
    Nothing connects here: the dynsec session opens on the first provision/revoke.
    """
    mode = auth.mode
    if mode == "none":
        return NoBrokerAuth()
    if mode == "dynsec":
        from edgefleet.session import parse_broker_url

        from coordinator.broker.dynsec import DynsecBrokerAuth

        if not auth.admin_username or not auth.admin_password:
            raise BrokerAuthConfigError(
                "broker_auth.mode = 'dynsec' needs broker_auth.admin_username and broker_auth.admin_password "
                "(EDGEFLEET_BROKER_AUTH__ADMIN_PASSWORD): the account created by `mosquitto_ctrl dynsec init`"
            )
        try:
            address = parse_broker_url(mqtt.url)
        except ValueError as exc:
            raise BrokerAuthConfigError(f"mqtt.url: {exc}") from None
        return DynsecBrokerAuth(
            address.host,
            address.port,
            auth.admin_username,
            auth.admin_password,
            tls=address.tls,
            timeout=float(getattr(auth, "timeout_s", 10.0)),
            share_group=getattr(mqtt, "share_group", topics.SHARE_GROUP) or topics.SHARE_GROUP,
        )
    if mode == "password_file":
        from coordinator.broker.password_file import PasswordFileBrokerAuth, command_reload, signal_reload

        path = str(getattr(auth, "password_file", "") or "")
        if not path:
            raise BrokerAuthConfigError("broker_auth.mode = 'password_file' needs broker_auth.password_file (mosquitto's password_file)")
        pid_file = str(getattr(auth, "reload_pid_file", "") or "")
        command = str(getattr(auth, "reload_command", "") or "")
        if pid_file and command:
            raise BrokerAuthConfigError("set one of broker_auth.reload_pid_file and broker_auth.reload_command, not both")
        reload = signal_reload(pid_file) if pid_file else command_reload(command) if command else None
        return PasswordFileBrokerAuth(path, reload=reload)
    raise BrokerAuthConfigError(f"unknown broker_auth.mode {mode!r}: use one of {', '.join(MODES)}")

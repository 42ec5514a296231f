"""Per-device MQTT credentials on the broker: installed at enrollment, removed with the device.

Every device gets username = client id = its device id and a random password, and may only use its
own topics (coordinator/broker/acl.py). Backends, chosen by broker_auth.mode:

- none: nothing is installed (anonymous broker, or accounts managed elsewhere);
- dynsec: mosquitto's dynamic security plugin, driven over MQTT (dynsec.py);
- password_file: a mosquitto password_file plus a broker reload (password_file.py).
"""
from __future__ import annotations

from coordinator.broker.auth import BrokerAuth, BrokerAuthConfigError, BrokerAuthError, NoBrokerAuth
from coordinator.broker.modes import MODES, make_broker_auth

__all__ = [
    "MODES",
    "BrokerAuth",
    "BrokerAuthConfigError",
    "BrokerAuthError",
    "DynsecBrokerAuth",
    "NoBrokerAuth",
    "PasswordFileBrokerAuth",
    "make_broker_auth",
]


def __getattr__(name: str):  # noqa: ANN202
    # The backends load on demand: paho is only needed when dynsec is in use.
    if name == "DynsecBrokerAuth":
        from coordinator.broker.dynsec import DynsecBrokerAuth

        return DynsecBrokerAuth
    if name == "PasswordFileBrokerAuth":
        from coordinator.broker.password_file import PasswordFileBrokerAuth

        return PasswordFileBrokerAuth
    raise AttributeError(f"module 'coordinator.broker' has no attribute {name!r}")

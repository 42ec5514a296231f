"""What the coordinator asks of the broker when a device enrolls or is removed, and the no-op answer."""
from __future__ import annotations

from typing import Protocol, runtime_checkable

from edgefleet import topics


class BrokerAuthError(RuntimeError):
    """The broker refused, or could not be asked, to change a device's credentials; the message says why."""


class BrokerAuthConfigError(BrokerAuthError):
    """The broker_auth configuration cannot work; the message names the key."""


@runtime_checkable
class BrokerAuth(Protocol):
    """Installs and removes per-device MQTT credentials (username = client id = device id)."""

    def provision(self, device_id: str, password: str) -> None:
        """Let the device connect with this password and reach only its own topics.

        Idempotent: provisioning a device again replaces its password and disconnects a session
        that used the old one.
        """

    def revoke(self, device_id: str) -> None:
        """Remove the device's credentials and disconnect it. Revoking an unknown device is not an error."""

    def describe(self) -> str:
        """One line for logs: which mode, which broker."""

    def close(self) -> None:
        """Release any connection to the broker. Idempotent."""


def check_device_id(device_id: str) -> None:
    # The id becomes a username, a client id and a topic level: '+', '#' or '/' would widen an ACL.
    if not topics.valid_device_id(device_id):
        raise ValueError(f"invalid device id for broker credentials: {device_id!r}")


class NoBrokerAuth:
    """Credentials are issued to devices but not installed anywhere.

    For a broker that allows anonymous clients (development, the demo) or whose accounts are
    managed outside edgefleet.
    """

    def provision(self, device_id: str, password: str) -> None:
        check_device_id(device_id)

    def revoke(self, device_id: str) -> None:
        check_device_id(device_id)

    def describe(self) -> str:
        return "none (device credentials are not installed on the broker)"

    def close(self) -> None:
        pass

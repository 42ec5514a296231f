"""paho's client module, imported without the HTTP and email stack it cannot use.

paho.mqtt.client imports urllib.request, and with it http.client and the email package (1.7 MB of a
device agent's resident memory, bench/agent.py), for one purpose: reading an `mqtt_proxy` setting from
the environment, which it does only when PySocks is installed (Client._get_proxy returns at once when
its `import socks` failed). So when PySocks is not installed, paho is imported with a stand-in for
urllib.request that loads the real module on first use (paho never uses it) and leaves sys.modules as
soon as paho is in: any other importer gets the real module. With PySocks installed, or urllib.request
already imported, paho is imported as it is.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
import types

_NAME = "urllib.request"


class _OnFirstUse(types.ModuleType):
    """urllib.request until something reads an attribute of it; then the real module's attribute."""

    def __getattr__(self, name: str):
        if sys.modules.get(_NAME) is self:  # read while paho was being imported (another thread)
            del sys.modules[_NAME]
        return getattr(importlib.import_module(_NAME), name)


def _import_client() -> types.ModuleType:
    if "paho.mqtt.client" in sys.modules or _NAME in sys.modules or importlib.util.find_spec("socks") is not None:
        import paho.mqtt.client

        return paho.mqtt.client
    import urllib

    stand_in = _OnFirstUse(_NAME)
    sys.modules[_NAME] = stand_in
    try:
        import paho.mqtt.client
    finally:
        if sys.modules.get(_NAME) is stand_in:
            del sys.modules[_NAME]
    if not hasattr(urllib, "request"):  # paho reaches it as urllib.request; a real import replaces it
        urllib.request = stand_in
    return paho.mqtt.client


mqtt = _import_client()

"""The agent's version, as installed."""
from __future__ import annotations

from importlib import metadata

try:
    AGENT_VERSION = metadata.version("edgefleet")
except metadata.PackageNotFoundError:  # running from a source tree
    AGENT_VERSION = "0.0.0+source"

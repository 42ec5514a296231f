"""The agent's version, as installed."""
from __future__ import annotations

from agent.distributions import version  # not importlib.metadata: it would stay resident (agent.distributions)

AGENT_VERSION = version("edgefleet") or "0.0.0+source"  # None: running from a source tree

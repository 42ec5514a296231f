"""What the agent measures about itself and its models, aggregated for the wire (never raw inputs)."""

from __future__ import annotations

"""The one exception edgectl turns into `edgectl: error: ...` on stderr and exit status 1."""
from __future__ import annotations


class CliError(Exception):
    """A failure the user can act on: bad input, bad configuration, or a refusal from the coordinator.

    The message is shown as one line, without a traceback, so it must say what was wrong on its own.
    """

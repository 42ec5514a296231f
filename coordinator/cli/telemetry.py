"""edgectl telemetry: fleet telemetry from the coordinator (a root command, not a group)."""
from __future__ import annotations

import typer


def telemetry(ctx: typer.Context) -> None:
    """Fleet telemetry (not built yet)."""
    from coordinator.cli.errors import CliError

    raise CliError("edgectl telemetry is not built yet")

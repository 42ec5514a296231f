"""What the root command hands to every group: the connection options, resolved only when a command connects.

Resolution is deferred so that `edgectl ... --help` works even with a broken config file, and so that
grpc is imported only by commands that call the coordinator.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from coordinator.cli.connection import AdminClient
    from coordinator.cli.settings import ClientSettings


@dataclass(frozen=True)
class GlobalOptions:
    coordinator: str | None = None
    token: str | None = None
    config: Path | None = None
    timeout_s: float | None = None


def global_options(ctx: typer.Context) -> GlobalOptions:
    obj = ctx.find_object(GlobalOptions)
    return obj if obj is not None else GlobalOptions()


def client_settings(ctx: typer.Context) -> ClientSettings:
    from coordinator.cli.settings import resolve_settings

    opts = global_options(ctx)
    return resolve_settings(coordinator=opts.coordinator, token=opts.token, config=opts.config, timeout_s=opts.timeout_s)


def admin_client(ctx: typer.Context) -> AdminClient:
    """A connected AdminClient; use it as a context manager so the channel is closed."""
    from coordinator.cli.connection import AdminClient

    return AdminClient(client_settings(ctx))

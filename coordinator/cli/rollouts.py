"""edgectl rollout ...: see the module docstring of coordinator/cli/app.py for how groups are built."""
from __future__ import annotations

import typer

app = typer.Typer(help="Rollouts.", no_args_is_help=True)

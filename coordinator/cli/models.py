"""edgectl model ...: see the module docstring of coordinator/cli/app.py for how groups are built."""
from __future__ import annotations

import typer

app = typer.Typer(help="Models.", no_args_is_help=True)

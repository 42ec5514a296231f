"""edgectl, the admin CLI: a thin gRPC client of the coordinator's Admin service.

Each command group lives in its own module with a `typer.Typer` named `app`, and is added in GROUPS below.
To add a group (model, rollout, telemetry): write coordinator/cli/<group>s.py like devices.py and add one
line to GROUPS. Keep grpc, the *_pb2 modules and anything heavy inside the command functions: this module
and the group modules are loaded for `--help`, which must start fast. TensorFlow is never imported.

Connection options live on the root callback only; main() also accepts them after the command (see
GLOBAL_VALUE_OPTIONS), so group modules must not define options with those names.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from coordinator.cli import demo, devices, models, rollouts, telemetry
from coordinator.cli.context import GlobalOptions
from coordinator.cli.errors import CliError

# (name, group app): the order is the order in `edgectl --help`.
GROUPS: list[tuple[str, typer.Typer]] = [
    ("device", devices.app),
    ("model", models.app),
    ("rollout", rollouts.app),
]

app = typer.Typer(
    name="edgectl",
    epilog=(
        "Connection options may go before or after the command: "
        "edgectl device list --coordinator 10.0.0.5:7400. "
        "The coordinator writes its admin token to <data_dir>/admin.token on first start."
    ),
    no_args_is_help=True,
    add_completion=False,
    # Errors are reported as one line by main(); a rich traceback (with locals: the token) must never show.
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
for _name, _group in GROUPS:
    app.add_typer(_group, name=_name)
app.command("telemetry")(telemetry.telemetry)
app.command("demo")(demo.demo)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            sys.stdout.write(f"edgectl {version('edgefleet')}\n")
        except PackageNotFoundError:
            sys.stdout.write("edgectl (edgefleet not installed as a distribution)\n")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    coordinator: Annotated[
        Optional[str],
        typer.Option(
            "--coordinator", metavar="HOST:PORT", show_default=False,
            help="Coordinator admin API address. \\[env: EDGEFLEET_COORDINATOR; config key: coordinator; default: 127.0.0.1:7400]",
        ),
    ] = None,
    token: Annotated[
        Optional[str],
        typer.Option(
            "--token", metavar="TOKEN", show_default=False,
            help="Admin token. \\[env: EDGEFLEET_TOKEN; config key: token or token_file]",
        ),
    ] = None,
    config: Annotated[
        Optional[Path],
        typer.Option(
            "--config", metavar="FILE", show_default=False,
            help="edgectl config file (TOML). \\[env: EDGEFLEET_CONFIG; default: ~/.config/edgefleet/edgectl.toml]",
        ),
    ] = None,
    timeout: Annotated[
        Optional[float],
        typer.Option("--timeout", metavar="SECONDS", min=0.001, show_default=False, help="Deadline of each call. \\[default: 10]"),
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Manage an edgefleet (devices, models, rollouts, telemetry) through the coordinator's admin API.

    Examples:
      $ edgectl device register cam-01 --label site=lab
      $ edgectl device list --select site=lab -o json
      $ edgectl --coordinator 10.0.0.5:7400 --token "$(cat admin.token)" device show cam-01
    """
    ctx.obj = GlobalOptions(coordinator=coordinator, token=token, config=config, timeout_s=timeout)


# Root options that take a value and may also be written after the command, as with kubectl's global flags.
# Group modules must not define options with these names.
GLOBAL_VALUE_OPTIONS = ("--coordinator", "--token", "--config", "--timeout")


def hoist_global_options(argv: list[str]) -> list[str]:
    """Move the root's connection options to the front: `edgectl device list --coordinator X` works too.

    click only accepts a group's options before its subcommand; operators used to kubectl put them anywhere.
    Arguments after `--` are left alone.
    """
    hoisted: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            rest.extend(argv[i:])
            break
        name = arg.split("=", 1)[0]
        if name in GLOBAL_VALUE_OPTIONS:
            if "=" in arg:
                hoisted.append(arg)
            elif i + 1 < len(argv):
                hoisted.extend(argv[i : i + 2])
                i += 1
            else:
                raise CliError(f"{name} needs a value")
        else:
            rest.append(arg)
        i += 1
    return hoisted + rest


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: run edgectl, and turn CliError into one line on stderr and exit 1."""
    try:
        app(args=hoist_global_options(sys.argv[1:] if argv is None else argv), prog_name="edgectl")
    except CliError as exc:
        sys.stderr.write(f"edgectl: error: {' '.join(str(exc).split())}\n")
        sys.exit(1)
    except KeyboardInterrupt:
        sys.stderr.write("edgectl: interrupted\n")
        sys.exit(130)


if __name__ == "__main__":
    main()

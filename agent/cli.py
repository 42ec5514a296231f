"""edge-agent: the console script's entry point, and `edge-agent run` itself.

`run` is parsed here with argparse and never imports typer: typer coerces parameters through pydantic,
which would stay resident in the daemon for its whole life (about 10 MB of a device's memory, measured
with bench/agent.py). Every other subcommand, and `edge-agent --help`, is the typer app in
agent.commands; its `run` command is built from the same RUN_OPTIONS, so both parse the same flags
and environment variables (tests/unit/test_agent_cli.py holds them to it).

`edge-agent run` started as a command re-executes itself (same process id) under `python -OO -X
no_debug_ranges`: the daemon never reads the docstrings of the ~9,000 functions it loads (numpy, gRPC,
protobuf, its own), nor needs column positions in tracebacks, and keeping them costs about 2.5 MB of
resident memory (bench/agent.py). -OO also drops `assert` statements; none of the daemon's checks is
an assert. EDGEFLEET_AGENT_OPTIMIZE=0 keeps the interpreter as started.
"""
from __future__ import annotations

import argparse
import logging
import os
import re
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from agent.identity import DEFAULT_STATE_DIR

RUN_HELP = "Connect to the broker, report the hardware, and stay connected (SIGTERM stops cleanly)."


@dataclass(frozen=True)
class RunOption:
    """One option of `edge-agent run`, for both parsers."""

    dest: str
    flags: tuple[str, ...]
    help: str
    type: Callable[[str], Any] = str
    default: Any = None
    envvar: str | None = None
    minimum: float | None = None
    metavar: str = "TEXT"


STATE_DIR_HELP = "Where the identity and models live."
PROFILE_HELP = "Bundled profile name (e.g. raspberry-pi-4) or a YAML/TOML file overriding probed fields."

RUN_OPTIONS: tuple[RunOption, ...] = (
    RunOption("state_dir", ("--state-dir", "-s"), STATE_DIR_HELP, Path, DEFAULT_STATE_DIR, "EDGEFLEET_AGENT_STATE_DIR", metavar="PATH"),
    RunOption("profile", ("--profile", "-p"), PROFILE_HELP, str, None, "EDGEFLEET_AGENT_PROFILE"),
    RunOption("mqtt_protocol", ("--mqtt-protocol",), "Override the MQTT protocol from enrollment: 5 or 3.1.1."),
    RunOption("keepalive", ("--keepalive",), "Override the MQTT keepalive (seconds).", int, metavar="INTEGER"),
    RunOption("socket", ("--socket",), "Unix socket of the local inference API (default: <state dir>/inference.sock).", Path, None,
              "EDGEFLEET_AGENT_SOCKET", metavar="PATH"),
    RunOption("telemetry_interval", ("--telemetry-interval",), "Seconds per telemetry window (default 10).", float, minimum=0.1,
              metavar="FLOAT"),
    RunOption("storage_budget", ("--storage-budget",), "Most bytes the model slots may use (default: free space).", int, minimum=1,
              metavar="INTEGER"),
    RunOption("log_level", ("--log-level",), "Log level: debug, info, warning or error.", str, "info"),
)


def fail(message: str) -> None:
    """The CLI's error line, exit code 1 (what typer.Exit(1) gave)."""
    print(f"edge-agent: error: {message}", file=sys.stderr)
    raise SystemExit(1)


def setup_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)


# -- argparse: `edge-agent run` -------------------------------------------------------------------


def _checked(option: RunOption) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = option.type(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a valid {option.metavar.lower()}") from None
        if option.minimum is not None and value < option.minimum:
            raise argparse.ArgumentTypeError(f"{text} is not in the range x>={option.minimum:g}")
        return value

    parse.__name__ = option.metavar.lower()
    return parse


def run_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edge-agent run", description=RUN_HELP)
    for option in RUN_OPTIONS:
        notes = []
        if option.envvar:
            notes.append(f"env var: {option.envvar}")
        if option.default is not None:
            notes.append(f"default: {option.default}")
        text = option.help + (f" [{'; '.join(notes)}]" if notes else "")
        parser.add_argument(*option.flags, dest=option.dest, type=_checked(option), default=None, metavar=option.metavar, help=text)
    return parser


def parse_run(argv: Sequence[str], environ: dict[str, str] | None = None) -> dict[str, Any]:
    """Flags, then environment variables, then defaults (typer's order)."""
    environ = os.environ if environ is None else environ
    parser = run_parser()
    namespace = parser.parse_args(list(argv))
    values = {}
    for option in RUN_OPTIONS:
        value = getattr(namespace, option.dest)
        if value is None and option.envvar and environ.get(option.envvar):
            text = environ[option.envvar]
            try:
                value = _checked(option)(text)
            except argparse.ArgumentTypeError as exc:
                parser.error(f"environment variable {option.envvar}: {exc}")
        values[option.dest] = option.default if value is None else value
    return values


# glibc malloc arenas for the daemon (agent.runtime.memory.limit_malloc_arenas); MALLOC_ARENA_MAX overrides.
RUN_MALLOC_ARENAS = 1


def run_agent(*, state_dir: Path, profile: str | None, mqtt_protocol: str | None, keepalive: int | None, socket: Path | None,
              telemetry_interval: float | None, storage_budget: int | None, log_level: str) -> None:
    """The agent daemon until SIGTERM/SIGINT; errors exit 1 with a line naming what was wrong."""
    setup_logging(log_level)
    logging.getLogger(__name__).debug("python optimize level %d, %s", sys.flags.optimize, sorted(sys._xoptions))
    # Before numpy loads: OpenBLAS would start a thread per core with its own buffers, resident for the
    # daemon's life, for matrix products the agent never asks numpy for (LiteRT has its own kernels).
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    if "MALLOC_ARENA_MAX" not in os.environ:  # before the daemon's threads start allocating
        from agent.runtime.memory import limit_malloc_arenas

        limit_malloc_arenas(RUN_MALLOC_ARENAS)
    from agent.daemon import AgentDaemon
    from agent.identity import StateDirError
    from agent.profile import ProfileError

    if mqtt_protocol not in (None, "5", "3.1.1"):
        fail(f"--mqtt-protocol must be 5 or 3.1.1, not {mqtt_protocol!r}")
    try:
        daemon = AgentDaemon(
            state_dir,
            profile=profile,
            protocol=mqtt_protocol,
            keepalive_s=keepalive,
            socket_path=socket,
            telemetry_interval_s=telemetry_interval,
            storage_budget_bytes=storage_budget,
        )
    except (StateDirError, ProfileError, ValueError) as exc:
        fail(str(exc))

    def on_signal(signum, frame):  # noqa: ANN001
        daemon.stop_requested.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    from agent.serve.server import SocketInUse

    try:
        daemon.run()
    except (SocketInUse, ValueError, OSError) as exc:
        fail(str(exc))


OPTIMIZE_ENV = "EDGEFLEET_AGENT_OPTIMIZE"


def optimized_command(args: Sequence[str], *, environ: dict[str, str] | None = None) -> list[str] | None:
    """The command line re-running this process under -OO -X no_debug_ranges (the module docstring
    says why), or None when it already runs so or EDGEFLEET_AGENT_OPTIMIZE=0. The interpreter's other
    flags are kept, and the program is started the way it was: as a script (the console script) or as
    `-m` module (never a module file run as a script: that would put agent/ first on sys.path)."""
    environ = os.environ if environ is None else environ
    ranges = sys.version_info >= (3, 11)  # -X no_debug_ranges is 3.11's
    if environ.get(OPTIMIZE_ENV, "1") == "0":
        return None
    if sys.flags.optimize >= 2 and (not ranges or "no_debug_ranges" in sys._xoptions):
        return None
    import subprocess  # only here: for its list of the running interpreter's flags

    flags = [f for f in subprocess._args_from_interpreter_flags() if not re.fullmatch(r"-O+", f)]
    flags += ["-OO"] + (["-X", "no_debug_ranges"] if ranges and "no_debug_ranges" not in sys._xoptions else [])
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is not None and spec.name:  # python -m agent.cli
        return [sys.executable, *flags, "-m", spec.name.removesuffix(".__main__"), *args]
    if not sys.argv or not sys.argv[0] or sys.argv[0] == "-c" or not os.path.isfile(sys.argv[0]):
        return None  # python -c, or embedded: no command to repeat
    return [sys.executable, *flags, sys.argv[0], *args]


def main(argv: Sequence[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else list(argv)
    if args[:1] == ["run"]:
        command = optimized_command(args) if argv is None else None  # a caller's own argv: never exec
        if command is not None:
            sys.stdout.flush()
            sys.stderr.flush()
            os.execv(command[0], command)
        run_agent(**parse_run(args[1:]))
        return
    from agent.commands import app

    app(args=args, prog_name="edge-agent")


def __getattr__(name: str) -> Any:
    # `from agent.cli import app` (tests, tools) still finds the typer app, without loading it for `run`.
    if name == "app":
        from agent.commands import app

        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if __name__ == "__main__":
    main()
